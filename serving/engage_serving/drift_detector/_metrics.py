"""Prometheus metrics of the drift detector, beside the shared ``engage_request_*`` ones on ``/metrics``.

Every gauge is the outcome of the latest *window* test (a direct ``:predict`` test of given rows leaves
them alone): alert on ``engage_drift_detected == 1`` or on one feature's ``engage_drift_feature_detected``.

=======================================  ======================  =========================================
metric                                   labels                  meaning
=======================================  ======================  =========================================
engage_drift_feature_statistic           model, feature          KS statistic (numeric) or chi-square
engage_drift_feature_p_value             model, feature          p-value of that test
engage_drift_feature_detected            model, feature          1 when below the corrected threshold
engage_drift_detected                    model                   1 when any feature drifted
engage_prediction_drift_statistic        model, head             KS statistic of the window's predictions
engage_prediction_drift_p_value          model, head             its p-value
engage_drift_outlier_score               model                   mean isolation-forest anomaly score
engage_drift_outlier_share               model                   share of window rows above the reference cut
engage_drift_window_rows                 model                   rows in the window now
engage_drift_last_test_timestamp_seconds model                   Unix time of the latest window test
engage_drift_test_duration_seconds       model                   histogram: wall time of a window test
engage_drift_events_total                model, type             events taken: request, response, rows
=======================================  ======================  =========================================
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge, Histogram

__all__ = ["drift_metrics"]


class _DriftMetrics:
    def __init__(self) -> None:
        from engage.telemetry import metric

        self.feature_statistic: Gauge = metric("engage_drift_feature_statistic").create()
        self.feature_p_value: Gauge = metric("engage_drift_feature_p_value").create()
        self.feature_detected: Gauge = metric("engage_drift_feature_detected").create()
        self.detected: Gauge = metric("engage_drift_detected").create()
        self.prediction_statistic: Gauge = metric("engage_prediction_drift_statistic").create()
        self.prediction_p_value: Gauge = metric("engage_prediction_drift_p_value").create()
        self.outlier_score: Gauge = metric("engage_drift_outlier_score").create()
        self.outlier_share: Gauge = metric("engage_drift_outlier_share").create()
        self.window_rows: Gauge = metric("engage_drift_window_rows").create()
        self.last_test: Gauge = metric("engage_drift_last_test_timestamp_seconds").create()
        self.duration: Histogram = metric("engage_drift_test_duration_seconds").create()
        self.events: Counter = metric("engage_drift_events").create()

    def publish(self, model: str, result: Mapping[str, Any]) -> None:
        """Set the gauges from a window test's result (``{"data", "meta"}``)."""
        data = result["data"]
        for feature, p in data["p_val"].items():
            self.feature_p_value.labels(model, feature).set(p)
            test = data["test"][feature]
            self.feature_statistic.labels(model, feature, test).set(data["distance"][feature])
            self.feature_detected.labels(model, feature).set(data["feature_drift"][feature])
        self.detected.labels(model).set(data["is_drift"])
        for head, test in data["prediction_drift"].items():
            self.prediction_statistic.labels(model, head).set(test["distance"])
            self.prediction_p_value.labels(model, head).set(test["p_val"])
        self.outlier_score.labels(model).set(data["outlier_score"])
        self.outlier_share.labels(model).set(data["outlier_share"])
        self.last_test.labels(model).set(time.time())
        self.duration.labels(model).observe(result["meta"]["duration_seconds"])


@functools.cache
def drift_metrics() -> _DriftMetrics:
    """The drift detector's metrics, registered once per process in the default registry."""
    return _DriftMetrics()
