"""Watch a canary through Prometheus' HTTP API for the policy's period; decide promote, rollback or
insufficient data, with every evaluation's evidence."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol

from engage.errors import EngageError

from ._judge import Evidence, Results, Sample, judge
from ._policy import RolloutPolicy
from ._queries import Target, target_queries

if TYPE_CHECKING:
    import httpx

__all__ = [
    "Clock",
    "Outcome",
    "PrometheusError",
    "RolloutDecision",
    "SystemClock",
    "query_prometheus",
    "watch",
]

Outcome = Literal["promote", "rollback", "insufficient_data"]
#: seconds one query may take
QUERY_TIMEOUT_SECONDS = 10.0


class PrometheusError(EngageError):
    """Prometheus could not be asked (unreachable, not Prometheus) or refused a query; the message says which.
    ``unreachable`` tells the first from a refusal (which no retry mends)."""

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


class Clock(Protocol):
    """Where the watch reads the time and waits: the wall clock, or a test's."""

    def now(self) -> datetime: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        time.sleep(max(seconds, 0.0))


@dataclass
class RolloutDecision:
    """What the watch decided and why: the failed checks, every evaluation's evidence, the versions."""

    outcome: Outcome
    reason: str
    stable: str
    canary: str
    started: str
    ended: str
    evaluations: int
    failed: list[str] = field(default_factory=list)
    versions: dict[str, list[str]] = field(default_factory=dict)
    #: every check of every evaluation, oldest first
    evidence: list[Evidence] = field(default_factory=list)
    #: the checks of the evaluation the decision rests on
    decisive: list[Evidence] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "reason": self.reason,
            "stable": self.stable,
            "canary": self.canary,
            "started": self.started,
            "ended": self.ended,
            "evaluations": self.evaluations,
            "failed": self.failed,
            "versions": self.versions,
            "decisive": [e.to_json() for e in self.decisive],
            "evidence": [e.to_json() for e in self.evidence],
        }


def query_prometheus(client: httpx.Client, base_url: str, expr: str) -> list[Sample]:
    """An instant query's vector (a scalar answer as one sample without labels).

    :class:`PrometheusError` when Prometheus cannot be reached, answers something else than its API, or
    refuses the query (a bad expression: named)."""
    import httpx

    url = base_url.rstrip("/") + "/api/v1/query"
    try:
        answer = client.get(url, params={"query": expr}, timeout=QUERY_TIMEOUT_SECONDS)
    except httpx.HTTPError as e:
        raise PrometheusError(
            f"Prometheus at {base_url} cannot be reached: {type(e).__name__}: {e}", unreachable=True
        ) from None
    try:
        body = answer.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or body.get("status") not in ("success", "error"):
        raise PrometheusError(
            f"{base_url} did not answer as Prometheus' HTTP API (HTTP {answer.status_code} for {url})"
        )
    if body["status"] == "error":
        raise PrometheusError(f"Prometheus refused {expr!r}: {body.get('errorType')}: {body.get('error')}")
    data = body.get("data") or {}
    result = data.get("result")
    if data.get("resultType") == "scalar" and isinstance(result, list):
        return [({}, _float(result[1]))]
    return [(dict(r.get("metric") or {}), _float(r["value"][1])) for r in result or ()]


def _float(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def watch(
    prometheus_url: str,
    policy: RolloutPolicy,
    stable: Target,
    canary: Target,
    clock: Clock | None = None,
    *,
    client: httpx.Client | None = None,
    say: Callable[[str], None] | None = None,
) -> RolloutDecision:
    """Evaluate the canary against the stable revision every ``policy.interval_seconds`` for
    ``policy.period_seconds``; return the decision.

    * rollback, early, when ``policy.fail_after`` evaluations in a row each have a failed check (an
      optional one too: drift, live fairness); also when the last evaluation of the period has one;
    * promote when the last evaluation has data for every required check and all pass;
    * insufficient data otherwise (too little canary traffic, no series, Prometheus lost mid-watch).

    Prometheus unreachable at the first evaluation, or refusing a query, is a :class:`PrometheusError`.
    ``say`` gets one line per evaluation.
    """
    import httpx

    clock = clock or SystemClock()
    own = client is None
    http = client or httpx.Client()
    s_queries, c_queries = target_queries(stable, policy), target_queries(canary, policy)
    started = clock.now()
    end = started + timedelta(seconds=policy.period_seconds)
    evidence: list[Evidence] = []
    versions: dict[str, list[str]] = {}
    in_a_row, count, lost = 0, 0, ""
    last: list[Evidence] = []
    try:
        while True:
            at = clock.now()
            count += 1
            try:
                s_results = _ask(http, prometheus_url, s_queries)
                c_results = _ask(http, prometheus_url, c_queries)
            except PrometheusError as e:
                if count == 1 or not e.unreachable:
                    raise
                lost, last = str(e), []
            else:
                lost = ""
                last = judge(s_results, c_results, s_queries, c_queries, policy, _stamp(at))
                evidence.extend(last)
                versions = {
                    "stable": sorted(lb["version"] for lb, _ in s_results["versions"] if "version" in lb),
                    "canary": sorted(lb["version"] for lb, _ in c_results["versions"] if "version" in lb),
                }
            failed = [e for e in last if e.failed]
            in_a_row = in_a_row + 1 if failed else 0
            if say is not None:
                say(_line(count, at, started, last, lost))
            if in_a_row >= policy.fail_after:
                why = f"failed in {in_a_row} evaluations in a row: " + "; ".join(e.describe() for e in failed)
                return _decision(
                    "rollback", why, stable, canary, started, clock, count, versions, evidence, last
                )
            due = started + timedelta(seconds=count * policy.interval_seconds)  # on schedule, not drifting
            if due > end:
                break
            clock.sleep((due - clock.now()).total_seconds())
    finally:
        if own:
            http.close()
    failed = [e for e in last if e.failed]
    missing = [e for e in last if e.inconclusive]
    if failed:
        outcome: Outcome = "rollback"
        why = "the last evaluation failed: " + "; ".join(e.describe() for e in failed)
    elif lost or not last:
        outcome, why = "insufficient_data", f"no evaluation at the end of the period: {lost or 'no data'}"
    elif missing:
        outcome = "insufficient_data"
        gates = [e.describe() for e in missing if e.precondition]
        empty = [e.check for e in missing if not e.precondition]
        why = "; ".join([*gates, *(["no data for: " + ", ".join(empty)] if empty else [])])
    else:
        outcome = "promote"
        why = f"every check passed for {policy.period_seconds:g} s ({count} evaluations)"
    return _decision(outcome, why, stable, canary, started, clock, count, versions, evidence, last)


def _ask(client: httpx.Client, url: str, queries: Mapping[str, str]) -> Results:
    return {name: query_prometheus(client, url, expr) for name, expr in queries.items()}


def _decision(
    outcome: Outcome,
    reason: str,
    stable: Target,
    canary: Target,
    started: datetime,
    clock: Clock,
    count: int,
    versions: dict[str, list[str]],
    evidence: list[Evidence],
    last: list[Evidence],
) -> RolloutDecision:
    return RolloutDecision(
        outcome=outcome,
        reason=reason,
        stable=str(stable),
        canary=str(canary),
        started=_stamp(started),
        ended=_stamp(clock.now()),
        evaluations=count,
        failed=[e.check for e in last if e.failed] if outcome == "rollback" else [],
        versions=versions,
        evidence=evidence,
        decisive=last,
    )


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _line(count: int, at: datetime, started: datetime, last: list[Evidence], lost: str) -> str:
    head = f"[{(at - started).total_seconds():6.1f} s] evaluation {count}: "
    if lost:
        return head + lost
    failed = [e.check for e in last if e.failed]
    missing = [e.check for e in last if e.inconclusive]
    if failed:
        return head + "FAIL " + ", ".join(failed)
    if missing:
        return head + "no data for " + ", ".join(missing)
    return head + "all checks pass"
