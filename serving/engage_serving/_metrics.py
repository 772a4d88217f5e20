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

#: 0.2 s sits between 0.1 and 0.25, where KServe's default buckets jump
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
UNIT_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))
LTV_BUCKETS = (10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 25000.0)
ROW_BUCKETS = (1, 2, 5, 10, 50, 100, 500, 1000, 5000, 10000)


class _Metrics:
    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.duration: Histogram = Histogram(
            "engage_request_duration_seconds",
            "Wall time of a request to an Engage server, from the body read to the answer",
            ["model", "route", "code"],
            buckets=LATENCY_BUCKETS,
        )
        self.rows: Histogram = Histogram(
            "engage_request_rows", "Rows per accepted request", ["model", "route"], buckets=ROW_BUCKETS
        )
        self.rejected: Counter = Counter(
            "engage_request_rejected",
            "Requests refused with a 4xx status, by reason",
            ["model", "route", "reason"],
        )
        self.prediction: Histogram = Histogram(
            "engage_prediction",
            "Predicted values of the heads whose output lies in 0..1 (churn probability, engagement score)",
            ["model", "head"],
            buckets=UNIT_BUCKETS,
        )
        self.prediction_ltv: Histogram = Histogram(
            "engage_prediction_ltv",
            "Predicted lifetime values",
            ["model", "head"],
            buckets=LTV_BUCKETS,
        )
        self.model_info: Gauge = Gauge(
            "engage_model_info",
            "1 for the model version a server serves",
            ["model", "server", "version", "learner", "heads"],
        )
        self.model_ready: Gauge = Gauge(
            "engage_model_ready", "1 when the model passed its checks and serves", ["model", "server"]
        )


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
