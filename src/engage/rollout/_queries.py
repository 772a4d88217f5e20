"""The PromQL a rollout asks, built from the metric catalogue (docs/metrics.md) for one target: a revision
picked out by one label (``job="engage-canary"``, ``revision="engage-predictor-00002"``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from engage.errors import ConfigError

from ._policy import RolloutPolicy, promql_duration

__all__ = ["PREDICTION_METRICS", "Target", "parse_target", "target_queries"]

#: the prediction routes, as the recording rules select them
_ROUTES = 'route=~"predict|infer"'
#: the per-head prediction histograms of the predictor
PREDICTION_METRICS = ("engage_prediction", "engage_prediction_ltv")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


@dataclass(frozen=True)
class Target:
    """One revision's series: those whose ``label`` equals ``value``."""

    label: str
    value: str

    @property
    def matcher(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.label}="{escaped}"'

    def __str__(self) -> str:
        return f"{self.label}={self.value}"


def parse_target(text: str, option: str) -> Target:
    """``LABEL=VALUE`` (``job=engage-canary``)."""
    label, sep, value = text.partition("=")
    label, value = label.strip(), value.strip()
    if not sep or not value or _LABEL.fullmatch(label) is None or label.startswith("__"):
        raise ConfigError(f"{option} {text!r}: give LABEL=VALUE, such as job=engage-canary")
    return Target(label, value)


def target_queries(target: Target, policy: RolloutPolicy) -> dict[str, str]:
    """Every query of one target, by name. Counters are ``increase`` over the policy's window."""
    m, w = target.matcher, promql_duration(policy.window_seconds)
    duration = "engage_request_duration_seconds"
    queries = {
        "requests": f"sum(increase({duration}_count{{{m},{_ROUTES}}}[{w}]))",
        "errors": f'sum(increase({duration}_count{{{m},{_ROUTES},code=~"5.."}}[{w}]))',
        "p95": (
            f"histogram_quantile(0.95, sum by (le) "
            f'(rate({duration}_bucket{{{m},{_ROUTES},code!~"5.."}}[{w}])))'
        ),
        "versions": f"max by (version) (engage_model_info{{{m}}})",
        "drift": f"max by (head) (engage_prediction_drift_statistic{{{m}}})",
        "fairness": f"min({policy.fairness_metric}{{{m}}})",
    }
    for metric in PREDICTION_METRICS:
        queries[f"{metric}:buckets"] = f"sum by (head, le) (increase({metric}_bucket{{{m}}}[{w}]))"
        queries[f"{metric}:sum"] = f"sum by (head) (increase({metric}_sum{{{m}}}[{w}]))"
        queries[f"{metric}:count"] = f"sum by (head) (increase({metric}_count{{{m}}}[{w}]))"
    return queries
