"""The metric-driven canary: watch a canary revision through Prometheus against the stable one, then
promote it to all the traffic or roll it back, and record why.

:func:`watch` asks Prometheus (the servers' metrics of docs/metrics.md, for two revisions told apart by one
label) every interval for a period and returns a :class:`RolloutDecision`; :func:`run_rollout` also
patches the InferenceService's ``canaryTrafficPercent`` through kubectl, records the decision on the audit
trail (``rollout.promote`` / ``rollout.rollback`` / ``rollout.insufficient_data``) and writes the report.
``engage rollout`` is the command. See docs/rollout.md.
"""

from ._act import (
    RolloutResult,
    apply_patch,
    kubectl_patch_command,
    record_decision,
    run_rollout,
    traffic_patch,
    write_report,
)
from ._judge import Evidence, judge, mean_shift, population_stability_index
from ._policy import RolloutPolicy, load_rollout_policy, parse_duration
from ._queries import Target, parity_query, parse_target, target_queries
from ._watch import Clock, PrometheusError, RolloutDecision, SystemClock, query_prometheus, watch

__all__ = [
    "Clock",
    "Evidence",
    "PrometheusError",
    "RolloutDecision",
    "RolloutPolicy",
    "RolloutResult",
    "SystemClock",
    "Target",
    "apply_patch",
    "judge",
    "kubectl_patch_command",
    "load_rollout_policy",
    "mean_shift",
    "parity_query",
    "parse_duration",
    "parse_target",
    "population_stability_index",
    "query_prometheus",
    "record_decision",
    "run_rollout",
    "target_queries",
    "traffic_patch",
    "watch",
    "write_report",
]
