"""The PromQL a rollout asks, built from the metric catalogue (docs/metrics.md) for one target: a revision
picked out by one label (``job="engage-canary"``, ``revision="engage-predictor-00002"``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from engage.errors import ConfigError

from ._policy import RolloutPolicy, promql_duration

__all__ = ["GROUP_COUNTER", "PREDICTION_METRICS", "Target", "parity_query", "parse_target", "target_queries"]

#: the prediction routes, as the recording rules select them
_ROUTES = 'route=~"predict|infer"'
#: the per-head prediction histograms of the predictor
PREDICTION_METRICS = ("engage_prediction", "engage_prediction_ltv")
#: the predictor's predictions by protected group and decision (label-free: no outcome needed)
GROUP_COUNTER = "engage_prediction_group_total"
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
        "parity": parity_query(m, w, policy.min_group_predictions),
    }
    for metric in PREDICTION_METRICS:
        queries[f"{metric}:buckets"] = f"sum by (head, le) (increase({metric}_bucket{{{m}}}[{w}]))"
        queries[f"{metric}:sum"] = f"sum by (head) (increase({metric}_sum{{{m}}}[{w}]))"
        queries[f"{metric}:count"] = f"sum by (head) (increase({metric}_count{{{m}}}[{w}]))"
    return queries


def parity_query(matcher: str, window: str, min_predictions: float) -> str:
    """The demographic parity ratio per head and protected attribute over ``window``: the lowest group's
    positive rate divided by the highest, over the groups with at least ``min_predictions`` predictions
    (``other``, values outside the contract, never counts), where at least two groups do. A group without
    a positive-decision series has the rate 0. All groups at 0 gives NaN (0 / 0): equal rates."""
    by = "head, attribute, group"
    groups = f'{GROUP_COUNTER}{{{matcher},group!="other"'
    total = f"sum by ({by}) (increase({groups}}}[{window}]))"
    positive = f'sum by ({by}) (increase({groups},decision="positive"}}[{window}]))'
    rate = f"(({positive} or 0 * {total}) / ({total} >= {min_predictions:g}))"
    pair = "head, attribute"
    return (
        f"(min by ({pair}) {rate} / max by ({pair}) {rate}) and on ({pair}) (count by ({pair}) {rate} >= 2)"
    )
