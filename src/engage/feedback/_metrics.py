"""The feedback loop's Prometheus metrics: the live figures ``engage feedback`` pushes, and the event
store's failure counter on the drift detector's ``/metrics``.

Their specs live in the catalogue (:data:`engage.telemetry.CATALOGUE`: source ``feedback`` for the
pushed ``engage_live_*`` gauges, ``engage_event_store_failures`` under the drift detector) and so in
``docs/metrics.md``, the alert rules and the dashboards; this module sets and pushes them.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any

from engage.telemetry import CATALOGUE, MetricSpec

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

#: the pushed ``engage_live_*`` gauges: the catalogue's ``feedback`` source, name -> spec
LIVE_METRICS: dict[str, MetricSpec] = {
    name: spec for name, spec in CATALOGUE.items() if spec.source == "feedback"
}

#: the event store's failure counter (exported as ``engage_event_store_failures_total{model}``)
STORE_FAILURES: MetricSpec = CATALOGUE["engage_event_store_failures"]


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
