"""Engage's telemetry: the catalogue of every Prometheus metric it emits (``CATALOGUE``).

See ``docs/metrics.md`` (generated from the catalogue) and ``docs/monitoring.md``.
"""

from __future__ import annotations

from ._catalogue import (
    CATALOGUE,
    LATENCY_BUCKETS,
    LTV_BUCKETS,
    ROW_BUCKETS,
    SOURCES,
    UNIT_BUCKETS,
    MetricSpec,
    metric,
    series_names,
)

__all__ = [
    "CATALOGUE",
    "LATENCY_BUCKETS",
    "LTV_BUCKETS",
    "ROW_BUCKETS",
    "SOURCES",
    "UNIT_BUCKETS",
    "MetricSpec",
    "metric",
    "series_names",
]
