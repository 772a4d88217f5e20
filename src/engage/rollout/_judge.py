"""One evaluation of a canary against the stable revision: the query results in, one piece of evidence
per check out (the query, its value, the threshold, pass / fail / no data, the time)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from ._policy import RolloutPolicy
from ._queries import PREDICTION_METRICS

__all__ = ["Evidence", "Results", "Sample", "check", "judge", "mean_shift", "population_stability_index"]

#: one series of an instant query's answer: its labels and its value
Sample = tuple[Mapping[str, str], float]
#: every query's answer by query name (the names of :func:`target_queries`)
Results = Mapping[str, Sequence[Sample]]
#: share given to an empty bin when computing the PSI (the usual guard against log(0))
PSI_EPSILON = 1e-4


@dataclass(frozen=True)
class Evidence:
    """One check of one evaluation. ``passed`` is None when there was no data to judge it by."""

    check: str
    query: str
    value: float | None
    threshold: float
    op: Literal["<=", ">="]
    passed: bool | None
    required: bool
    at: str
    note: str = ""
    #: a precondition (enough canary traffic): when it does not hold the evaluation is inconclusive, not failed
    precondition: bool = False

    @property
    def failed(self) -> bool:
        """A check that had data and did not hold (a precondition that does not hold is no failure)."""
        return self.passed is False and not self.precondition

    @property
    def inconclusive(self) -> bool:
        """A required check without data, or a precondition that does not hold."""
        return (self.required and self.passed is None) or (self.precondition and self.passed is False)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        shown = "no data" if self.value is None else f"{self.value:.4g}"
        verdict = {True: "pass", False: "FAIL", None: "no data"}[self.passed]
        note = f" ({self.note})" if self.note else ""
        return f"{self.check}: {shown} (must be {self.op} {self.threshold:g}): {verdict}{note}"


def check(
    name: str,
    query: str,
    value: float | None,
    threshold: float,
    op: Literal["<=", ">="],
    at: str,
    *,
    required: bool = True,
    precondition: bool = False,
    note: str = "",
) -> Evidence:
    """The evidence of ``value op threshold`` (no value: no data)."""
    passed = None if value is None else (value <= threshold if op == "<=" else value >= threshold)
    return Evidence(name, query, value, threshold, op, passed, required, at, note, precondition)


def judge(
    stable: Results,
    canary: Results,
    stable_queries: Mapping[str, str],
    canary_queries: Mapping[str, str],
    policy: RolloutPolicy,
    at: str,
) -> list[Evidence]:
    """Every check of one evaluation. Required checks without data make the evaluation inconclusive;
    the optional ones (drift, live fairness) are judged only when their series exist."""
    p, sq, cq = policy, stable_queries, canary_queries
    requests = _scalar(canary, "requests")
    enough = requests is not None and requests >= p.min_requests
    errors = _scalar(canary, "errors") or 0.0  # no 5xx series yet: none answered 5xx
    error_rate = errors / requests if enough and requests else None
    p95 = _scalar(canary, "p95") if enough else None
    stable_p95 = _scalar(stable, "p95")
    ratio = p95 / stable_p95 if p95 is not None and stable_p95 else None
    out = [
        check("canary_requests", cq["requests"], requests, p.min_requests, ">=", at, precondition=True,
              note="" if enough else "too little canary traffic to judge"),
        check("canary_error_rate", f"{cq['errors']} / {cq['requests']}", error_rate, p.max_error_rate, "<=", at),
        check("canary_p95_seconds", cq["p95"], p95, p.max_p95_seconds, "<=", at),
        check("canary_p95_ratio", f"{cq['p95']} / {sq['p95']}", ratio, p.max_p95_ratio, "<=", at),
    ]  # fmt: skip
    if p95 is not None and p95 < p.p95_ratio_floor_seconds:  # bucket noise: recorded, not judged
        out[-1] = replace(
            out[-1],
            passed=True,
            note=f"not judged: canary p95 under the {p.p95_ratio_floor_seconds:g} s floor",
        )
    shifts = [
        e for metric in PREDICTION_METRICS for e in _shift(metric, stable, canary, sq, cq, p, at, enough)
    ]
    if not shifts:  # neither revision exported a prediction histogram: the shift cannot be judged
        query = f"{cq['engage_prediction:buckets']} vs {sq['engage_prediction:buckets']}"
        shifts = [check("prediction_psi", query, None, p.max_psi, "<=", at)]
    out += shifts
    out += [
        check(f"drift_statistic:{head}", cq["drift"], value, p.max_drift_statistic, "<=", at, required=False)
        for head, value in sorted(_by_label(canary, "drift", "head").items())
    ]
    out += _parity(stable, canary, sq, cq, p, at)
    return out


def _parity(
    stable: Results,
    canary: Results,
    stable_queries: Mapping[str, str],
    canary_queries: Mapping[str, str],
    policy: RolloutPolicy,
    at: str,
) -> list[Evidence]:
    """Per head and protected attribute of the canary's live traffic: its demographic parity ratio at
    least ``min_parity_ratio``, and no more than ``max_parity_drop`` below the stable revision's. Optional:
    judged when the canary's groups have the predictions (no series otherwise)."""
    sq, cq = stable_queries["parity"], canary_queries["parity"]
    s_ratio, c_ratio = _parities(stable), _parities(canary)
    out: list[Evidence] = []
    for (head, attribute), (value, note) in sorted(c_ratio.items()):
        name = f"{head}:{attribute}"
        out.append(
            check(f"live_parity_ratio:{name}", cq, value, policy.min_parity_ratio, ">=", at,
                  required=False, note=note)
        )  # fmt: skip
        base = s_ratio.get((head, attribute))
        drop = None if base is None else base[0] - value
        out.append(
            check(f"live_parity_drop:{name}", f"({sq}) - ({cq})", drop, policy.max_parity_drop, "<=", at,
                  required=False, note="" if base is not None else "the stable revision has no ratio")
        )  # fmt: skip
    return out


def _shift(
    metric: str,
    stable: Results,
    canary: Results,
    stable_queries: Mapping[str, str],
    canary_queries: Mapping[str, str],
    policy: RolloutPolicy,
    at: str,
    enough: bool,
) -> list[Evidence]:
    """PSI and standardised mean difference of each head of ``metric`` either revision predicts (a head
    only one of them predicts: no data)."""
    out: list[Evidence] = []
    sq, cq = stable_queries, canary_queries
    s_bins, c_bins = _histograms(stable, f"{metric}:buckets"), _histograms(canary, f"{metric}:buckets")
    s_sum, c_sum = _by_label(stable, f"{metric}:sum", "head"), _by_label(canary, f"{metric}:sum", "head")
    s_n, c_n = _by_label(stable, f"{metric}:count", "head"), _by_label(canary, f"{metric}:count", "head")
    buckets = f"{cq[metric + ':buckets']} vs {sq[metric + ':buckets']}"
    means = (
        f"{cq[metric + ':sum']} / {cq[metric + ':count']} vs {sq[metric + ':sum']} / {sq[metric + ':count']}"
    )
    for head in sorted(set(s_bins) | set(c_bins)):
        usable = (
            enough and head in s_bins and head in c_bins and s_n.get(head, 0) > 0 and c_n.get(head, 0) > 0
        )
        psi = population_stability_index(s_bins[head], c_bins[head]) if usable else None
        shift = None
        if usable and head in s_sum and head in c_sum:
            shift = mean_shift(s_bins[head], s_sum[head] / s_n[head], c_sum[head] / c_n[head])
        out.append(check(f"prediction_psi:{head}", buckets, psi, policy.max_psi, "<=", at))
        out.append(
            check(f"prediction_mean_shift_sd:{head}", means, shift, policy.max_mean_shift_sd, "<=", at)
        )
    return out


# --- the statistics ----------------------------------------------------------------------------------


def _bins(cumulative: Sequence[tuple[float, float]]) -> list[tuple[float, float, float]]:
    """``(lower, upper, count)`` of each bucket from Prometheus' cumulative ``le`` counts."""
    out, below, lower = [], 0.0, 0.0
    for upper, total in sorted(cumulative):
        out.append((lower, upper, max(total - below, 0.0)))  # increase() extrapolates: never negative
        below, lower = max(total, below), upper
    return out


def population_stability_index(
    stable: Sequence[tuple[float, float]], canary: Sequence[tuple[float, float]]
) -> float:
    """PSI = Σ (c - s) · ln(c / s) over the buckets, c and s the canary's and stable's shares of each
    (an empty bucket counts as :data:`PSI_EPSILON`). 0: the same; under 0.1 little change; over 0.25 a
    major shift (the conventional reading, Siddiqi, *Credit Risk Scorecards*, 2006)."""
    s_bins = {upper: n for _, upper, n in _bins(stable)}
    c_bins = {upper: n for _, upper, n in _bins(canary)}
    s_total, c_total = sum(s_bins.values()), sum(c_bins.values())
    if s_total <= 0 or c_total <= 0:
        raise ValueError("a histogram without observations has no PSI")
    psi = 0.0
    for upper in set(s_bins) | set(c_bins):
        s = max(s_bins.get(upper, 0.0) / s_total, PSI_EPSILON)
        c = max(c_bins.get(upper, 0.0) / c_total, PSI_EPSILON)
        psi += (c - s) * math.log(c / s)
    return psi


def mean_shift(stable: Sequence[tuple[float, float]], stable_mean: float, canary_mean: float) -> float:
    """|canary mean - stable mean| in units of the stable revision's standard deviation, estimated from its
    histogram: each bucket's observations at its midpoint plus the spread within it (width² / 12; the
    open last bucket at its lower bound)."""
    bins = _bins(stable)
    total = sum(n for _, _, n in bins)
    if total <= 0:
        raise ValueError("a histogram without observations has no spread")
    variance = 0.0
    for lower, upper, n in bins:
        if math.isinf(upper):
            mid, width = lower, 0.0
        else:
            mid, width = (lower + upper) / 2, upper - lower
        variance += n * ((mid - stable_mean) ** 2 + width**2 / 12)
    sd = math.sqrt(variance / total)
    return (
        abs(canary_mean - stable_mean) / sd if sd > 0 else (0.0 if canary_mean == stable_mean else math.inf)
    )


# --- reading the answers -----------------------------------------------------------------------------


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _scalar(results: Results, name: str) -> float | None:
    samples = results.get(name) or ()
    return _finite(samples[0][1]) if samples else None


def _parities(results: Results) -> dict[tuple[str, str], tuple[float, str]]:
    """(head, attribute) -> the parity ratio and a note; NaN (no group with a positive decision: 0 / 0)
    is parity, 1."""
    out: dict[tuple[str, str], tuple[float, str]] = {}
    for labels, value in results.get("parity") or ():
        if "head" in labels and "attribute" in labels and not math.isinf(value):
            note = "no group had a positive decision" if math.isnan(value) else ""
            out[labels["head"], labels["attribute"]] = (1.0 if note else value, note)
    return out


def _by_label(results: Results, name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for labels, value in results.get(name) or ():
        if label in labels and math.isfinite(value):
            out[labels[label]] = value
    return out


def _histograms(results: Results, name: str) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = {}
    for labels, value in results.get(name) or ():
        if "head" in labels and "le" in labels and math.isfinite(value):
            out.setdefault(labels["head"], []).append((float(labels["le"]), value))
    return out
