"""Prometheus metrics the Engage servers export beside KServe's own histograms.

KServe registers ``request_preprocess_seconds``, ``request_predict_seconds``,
``request_postprocess_seconds`` and ``request_explain_seconds`` in the default registry; these sit next
to them, on the same ``/metrics``. docs/metrics.md lists them all; alert rules use these names.

=====================================  ======================  =============================================
metric                                 labels                  meaning
=====================================  ======================  =============================================
engage_request_duration_seconds        model, route, code      wall time of a request, body read to answer
engage_request_rows                    model, route            rows per accepted request
engage_request_rejected_total          model, route, reason    requests refused (4xx), by reason
engage_prediction                      model, head             predicted values of the unit-interval heads
engage_prediction_ltv                  model, head             predicted lifetime values
engage_model_info                      model, version, ...     1 for the version being served
engage_model_ready                     model                   1 when the model passed its checks and serves
=====================================  ======================  =============================================
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge, Histogram

__all__ = ["LATENCY_BUCKETS", "observe_many", "serving_metrics"]

from engage.telemetry import LATENCY_BUCKETS, metric


class _Metrics:
    def __init__(self) -> None:
        self.duration: Histogram = metric("engage_request_duration_seconds").create()
        self.rows: Histogram = metric("engage_request_rows").create()
        self.rejected: Counter = metric("engage_request_rejected").create()
        self.prediction: Histogram = metric("engage_prediction").create()
        self.prediction_ltv: Histogram = metric("engage_prediction_ltv").create()
        self.model_info: Gauge = metric("engage_model_info").create()
        self.model_ready: Gauge = metric("engage_model_ready").create()


@functools.cache
def serving_metrics() -> _Metrics:
    """The servers' metrics, registered once per process in the default registry."""
    return _Metrics()


def observe_many(child: Any, values: Any) -> None:
    """``child.observe(v)`` for every value, in one pass for large batches.

    ``Histogram.observe`` costs about 1 µs a value, 3 ms for the three heads of a 1,000-row request. For
    more than a few values this counts them into the buckets with numpy and adds each bucket's count at
    once, which gives the same series; it reads the histogram's bucket bounds and values, which
    prometheus_client has kept unchanged since 0.4, and falls back to one call a value without them.
    """
    import numpy as np

    bounds = getattr(child, "_upper_bounds", None)
    buckets = getattr(child, "_buckets", None)
    total = getattr(child, "_sum", None)
    if len(values) < 16 or bounds is None or buckets is None or total is None:
        for v in values:
            child.observe(v)
        return
    array = np.asarray(values, dtype=np.float64)
    # observe() puts a value in the first bucket whose bound is >= it (the last bound is +Inf)
    counts = np.bincount(
        np.searchsorted(np.asarray(bounds, dtype=np.float64), array, side="left"), minlength=len(bounds)
    )
    for bucket, count in zip(buckets, counts.tolist(), strict=False):
        if count:
            bucket.inc(count)
    total.inc(float(array.sum()))
