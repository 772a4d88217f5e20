"""The feedback loop's Prometheus metrics: the live figures ``engage feedback`` pushes, and the event
store's failure counter on the drift detector's ``/metrics``.

They follow the catalogue's conventions (:class:`engage.telemetry.MetricSpec`, ``engage_`` prefix,
``_total`` counters) and are listed in ``docs/feedback.md``; they are defined here, beside the code that
sets them, until the catalogue (``engage.telemetry._catalogue``) takes them over.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any

from engage.telemetry import MetricSpec

if TYPE_CHECKING:
    from ._report import LiveReport

__all__ = [
    "FEEDBACK_JOB",
    "LIVE_METRICS",
    "STORE_FAILURES",
    "live_registry",
    "push_live_metrics",
    "store_failures",
]

#: the Pushgateway job ``engage feedback`` pushes under (instance: the model name)
FEEDBACK_JOB = "engage_feedback"
_SOURCE = "feedback"


def _g(name: str, labels: tuple[str, ...], help: str) -> MetricSpec:
    return MetricSpec(name, "gauge", help, labels, _SOURCE)


LIVE_METRICS: dict[str, MetricSpec] = {
    s.name: s
    for s in (
        _g("engage_live_metric", ("model", "head", "metric"), "A head's live accuracy figure on predictions "
           "joined with their outcomes (the offline metric functions)"),
        _g("engage_live_labelled_rows", ("model", "head"), "Predictions of a head joined with an outcome"),
        _g("engage_live_coverage", ("model",), "Share of logged predictions that have an outcome"),
        _g("engage_live_predictions", ("model",), "Logged predictions (rows) the report read"),
        _g("engage_live_fairness", ("model", "head", "attribute", "metric"),
           "A live fairness gap figure by protected group (the offline gate's metrics)"),
        _g("engage_live_rule_passed", ("model", "section", "head", "rule"),
           "1 when a live rule (live_accuracy, live_fairness, prediction_drift) holds, 0 when crossed"),
        _g("engage_live_prediction_psi", ("model", "head"),
           "Population stability index of a head's predictions against the reference"),
        _g("engage_live_prediction_ks", ("model", "head"), "KS statistic of a head's predictions against the reference"),
        _g("engage_live_predicted_mean", ("model", "head"),
           "Mean prediction over the labelled rows (churn: predicted churn rate; ltv: mean predicted LTV)"),
        _g("engage_live_realised_mean", ("model", "head"),
           "Mean outcome over the same rows (churn: realised churn rate; ltv: mean realised LTV)"),
        _g("engage_live_verdict_passed", ("model",), "1 when the live report's verdict is not fail"),
        _g("engage_live_last_report_timestamp_seconds", ("model",), "Unix time of the latest live report"),
    )
}  # fmt: skip

STORE_FAILURES = MetricSpec(
    "engage_event_store_failures",
    "counter",
    "Request/response pairs or flushes the drift detector's event store could not write (ingestion goes on)",
    ("model",),
    _SOURCE,
)


@functools.cache
def store_failures() -> Any:
    """The event store's failure counter, registered once per process in the default registry."""
    return STORE_FAILURES.create()


def live_registry(report: LiveReport, model: str) -> Any:
    """A fresh registry holding the report's figures as ``engage_live_*`` gauges."""
    import time

    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    g = {name: spec.create(registry) for name, spec in LIVE_METRICS.items()}

    def put(name: str, value: float | None, *labels: str) -> None:
        if value is not None and math.isfinite(value):
            g[name].labels(model, *labels).set(value)

    put("engage_live_coverage", report.coverage)
    put("engage_live_predictions", float(report.predictions))
    for head in report.heads.values():
        put("engage_live_labelled_rows", float(head.labelled), head.head)
        for metric, value in head.metrics.items():
            put("engage_live_metric", value, head.head, metric)
        for attribute, figures in head.fairness.items():
            for metric, figure in figures.items():
                put("engage_live_fairness", figure, head.head, attribute, metric)
        if head.drift is not None:
            put("engage_live_prediction_psi", head.drift.psi, head.head)
            put("engage_live_prediction_ks", head.drift.ks, head.head)
        put("engage_live_predicted_mean", head.business.get("predicted_mean"), head.head)
        put("engage_live_realised_mean", head.business.get("realised_mean"), head.head)
    for rule in report.rules:
        g["engage_live_rule_passed"].labels(model, rule.section, rule.head, rule.rule).set(float(rule.passed))
    put("engage_live_verdict_passed", 0.0 if report.verdict == "fail" else 1.0)
    put("engage_live_last_report_timestamp_seconds", time.time())
    return registry


def push_live_metrics(report: LiveReport, gateway: str, *, model: str) -> None:
    """Replace this model's group (``job="engage_feedback"``, ``instance=<model>``) on the Pushgateway."""
    from prometheus_client import push_to_gateway

    from engage.errors import ConfigError

    try:
        push_to_gateway(
            gateway,
            job=FEEDBACK_JOB,
            registry=live_registry(report, model),
            grouping_key={"instance": model},
            timeout=10,
        )
    except OSError as e:
        raise ConfigError(f"cannot push metrics to the Pushgateway at {gateway}: {e}") from e
