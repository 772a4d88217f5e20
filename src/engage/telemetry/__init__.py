"""Engage's telemetry: the catalogue of every Prometheus metric it emits (``CATALOGUE``), and tracing
(:mod:`engage.telemetry.tracing`, imported when first used: it needs pydantic, and the SDK when on).

See ``docs/metrics.md`` (generated from the catalogue), ``docs/monitoring.md`` and ``docs/tracing.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from .tracing import Tracing, TracingSettings, start_tracing

__all__ = [
    "CATALOGUE",
    "LATENCY_BUCKETS",
    "LTV_BUCKETS",
    "ROW_BUCKETS",
    "SOURCES",
    "UNIT_BUCKETS",
    "MetricSpec",
    "Tracing",
    "TracingSettings",
    "metric",
    "series_names",
    "start_tracing",
]


def __getattr__(name: str) -> Any:
    if name in ("Tracing", "TracingSettings", "start_tracing"):
        from . import tracing

        return getattr(tracing, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
