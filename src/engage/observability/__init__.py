"""Prometheus metrics of every Engage part (names documented in docs/metrics.md)."""

from ._data_quality import DATA_QUALITY_JOB, data_quality_registry, push_metrics

__all__ = ["DATA_QUALITY_JOB", "data_quality_registry", "push_metrics"]
