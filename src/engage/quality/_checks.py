"""How each kind of check is judged on a conformed table.

Each function takes the check and a :class:`Context` and returns a :class:`Finding`: whether it passed,
the observed figure and its threshold, and for row-level checks the mask of offending rows. The
dispatcher :func:`run_check` picks the function by the check's class; adding a kind means adding its
model in :mod:`engage.contract._model` and one function here.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import pandas as pd

from engage.contract import Contract, Timing
from engage.contract._model import (
    CompareCheck,
    CountryCodeCheck,
    FreshnessCheck,
    InSetCheck,
    LabelBalanceCheck,
    NoLeakageCheck,
    NoProhibitedFeaturesCheck,
    NullRateCheck,
    PatternCheck,
    ProxyAssociationCheck,
    RangeCheck,
    SumEqualsCheck,
    UniqueCheck,
    ZeroVarianceCheck,
)
from engage.contract._names import prohibited_matches
from engage.tables import BoolArray

from ._association import association

__all__ = ["Context", "Finding", "not_in", "outside", "prohibited_matches", "row_finding", "run_check"]

#: event times this far in the future are still "fresh" (clock skew between systems)
FUTURE_TOLERANCE_HOURS = 1.0


@dataclass(frozen=True)
class Context:
    frame: pd.DataFrame
    contract: Contract
    now: datetime


@dataclass
class Finding:
    passed: bool
    message: str
    observed: float | None = None
    threshold: float | None = None
    mask: BoolArray | None = None  # row-level checks: True where a row breaks the check
    columns: list[str] = field(default_factory=list)
    details: dict[str, float] = field(default_factory=dict)


def row_finding(mask: BoolArray, what: str, columns: list[str] | None = None) -> Finding:
    """The finding of a row-level check: it passes when no row is flagged."""
    n = int(mask.sum())
    return Finding(
        passed=n == 0,
        message="all rows pass" if n == 0 else f"{n} row(s) {what}",
        observed=float(n),
        threshold=0.0,
        mask=mask,
        columns=columns or [],
    )


def outside(s: pd.Series, lo: float | None, hi: float | None) -> BoolArray:
    """Rows whose non-empty value lies outside ``[lo, hi]`` (``None``: unbounded)."""
    v = s.to_numpy(dtype="float64", na_value=np.nan)
    with np.errstate(invalid="ignore"):
        mask: BoolArray = ~np.isnan(v) & (
            (v < (-np.inf if lo is None else lo)) | (v > (np.inf if hi is None else hi))
        )
    return mask


def not_in(s: pd.Series, allowed: set[Any]) -> BoolArray:
    """Rows whose non-empty value is not one of ``allowed``."""
    return (s.notna() & ~s.astype("object").isin(allowed)).to_numpy(dtype=bool)


def _floats(s: pd.Series) -> npt.NDArray[np.float64]:
    return s.to_numpy(dtype="float64", na_value=np.nan)


_Check = TypeVar("_Check")
_REGISTRY: dict[type, Callable[[Any, Context], Finding]] = {}


def _judges(
    kind: type[_Check],
) -> Callable[[Callable[[_Check, Context], Finding]], Callable[[_Check, Context], Finding]]:
    def register(fn: Callable[[_Check, Context], Finding]) -> Callable[[_Check, Context], Finding]:
        _REGISTRY[kind] = fn
        return fn

    return register


def run_check(check: object, ctx: Context) -> Finding:
    return _REGISTRY[type(check)](check, ctx)


# ---- row-level checks ---------------------------------------------------------------------------


@_judges(UniqueCheck)
def _unique(check: UniqueCheck, ctx: Context) -> Finding:
    mask = ctx.frame.duplicated(subset=check.columns, keep="first").to_numpy()
    return row_finding(mask, f"repeat the key ({', '.join(check.columns)}) of an earlier row")


_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">=": operator.ge,
    ">": operator.gt,
}


@_judges(CompareCheck)
def _compare(check: CompareCheck, ctx: Context) -> Finding:
    left, right = ctx.frame[check.left], ctx.frame[check.right]
    judged = (left.notna() & right.notna()).to_numpy()
    holds = _OPS[check.op](left, right).fillna(True).to_numpy(dtype=bool)
    mask = judged & ~holds
    return row_finding(mask, f"break {check.left} {check.op} {check.right}")


@_judges(RangeCheck)
def _range(check: RangeCheck, ctx: Context) -> Finding:
    mask = np.zeros(len(ctx.frame), dtype=bool)
    details: dict[str, float] = {}
    for col in check.columns:
        bad = outside(ctx.frame[col], check.min, check.max)
        details[col] = float(bad.sum())
        mask |= bad
    lo = "-inf" if check.min is None else f"{check.min:g}"
    hi = "inf" if check.max is None else f"{check.max:g}"
    finding = row_finding(mask, f"lie outside [{lo}, {hi}]")
    finding.details = details
    return finding


@_judges(PatternCheck)
def _pattern(check: PatternCheck, ctx: Context) -> Finding:
    s = ctx.frame[check.column].astype("string")
    matches = s.str.fullmatch(check.regex)
    mask = (s.notna() & ~matches.fillna(True)).to_numpy(dtype=bool)
    return row_finding(mask, f"do not match the pattern of {check.column}")


@_judges(SumEqualsCheck)
def _sum_equals(check: SumEqualsCheck, ctx: Context) -> Finding:
    total = _floats(ctx.frame[check.total])
    parts = np.column_stack([_floats(ctx.frame[p]) for p in check.parts])
    judged = ~np.isnan(total) & ~np.isnan(parts).any(axis=1)
    with np.errstate(invalid="ignore"):
        off = np.abs(total - parts.sum(axis=1)) > check.tolerance + 1e-9
    return row_finding(
        judged & off, f"have {check.total} != {' + '.join(check.parts)} (tolerance {check.tolerance})"
    )


@_judges(InSetCheck)
def _in_set(check: InSetCheck, ctx: Context) -> Finding:
    return row_finding(
        not_in(ctx.frame[check.column], set(check.values)), f"hold a {check.column} not in the allowed set"
    )


@cache
def country_codes(standard: str) -> frozenset[str]:
    import pycountry

    return frozenset(getattr(c, standard) for c in pycountry.countries)


@_judges(CountryCodeCheck)
def _country(check: CountryCodeCheck, ctx: Context) -> Finding:
    mask = not_in(ctx.frame[check.column], set(country_codes(check.standard)))
    return row_finding(mask, f"hold a {check.column} that is not ISO 3166-1 {check.standard}")


# ---- table-level checks -------------------------------------------------------------------------


@_judges(FreshnessCheck)
def _freshness(check: FreshnessCheck, ctx: Context) -> Finding:
    event = ctx.contract.event_time
    column = check.column or (event.column if event else "")
    limit = check.max_age_hours or (event.max_age_hours if event else 0.0)
    times = pd.to_datetime(ctx.frame[column], utc=True)
    newest = times.max()
    if pd.isna(newest):
        return Finding(False, f"{column} is empty: freshness cannot be told", None, limit, columns=[column])
    age = (pd.Timestamp(ctx.now) - newest).total_seconds() / 3600.0
    if age < -FUTURE_TOLERANCE_HOURS:
        return Finding(False, f"newest {column} is {-age:.1f} h in the future", age, limit, columns=[column])
    ok = age <= limit
    return Finding(
        ok, f"newest {column} is {age:.1f} h old (limit {limit:g} h)", age, limit, columns=[column]
    )


@_judges(NullRateCheck)
def _null_rate(check: NullRateCheck, ctx: Context) -> Finding:
    columns = check.columns if check.columns is not None else ctx.contract.critical_features
    rates = {c: float(ctx.frame[c].isna().mean()) for c in columns}
    over = [c for c, r in rates.items() if r > check.max]
    worst = max(rates.values(), default=0.0)
    msg = (
        f"null rate of {', '.join(f'{c} {rates[c]:.1%}' for c in over)} above {check.max:.0%}"
        if over
        else f"highest null rate {worst:.2%} (limit {check.max:.0%})"
    )
    return Finding(not over, msg, worst, check.max, columns=over, details=rates)


@_judges(LabelBalanceCheck)
def _label_balance(check: LabelBalanceCheck, ctx: Context) -> Finding:
    target = ctx.contract.targets[check.target]
    labels = ctx.frame[target.column].dropna()
    if labels.empty:
        return Finding(False, f"{target.column} has no labels", None, None, columns=[target.column])
    share = float((labels == target.positive).mean())
    ok = check.min <= share <= check.max
    return Finding(
        ok,
        f"positive share of {check.target} is {share:.1%} (allowed {check.min:.0%}..{check.max:.0%})",
        share,
        check.max if share > check.max else check.min,
        columns=[target.column],
    )


@_judges(ZeroVarianceCheck)
def _zero_variance(check: ZeroVarianceCheck, ctx: Context) -> Finding:
    columns = check.columns if check.columns is not None else ctx.contract.features
    constant = [c for c in columns if ctx.frame[c].nunique(dropna=True) <= 1]
    msg = f"constant: {', '.join(constant)}" if constant else f"all {len(columns)} columns vary"
    return Finding(not constant, msg, float(len(constant)), 0.0, columns=constant)


@_judges(NoLeakageCheck)
def _no_leakage(check: NoLeakageCheck, ctx: Context) -> Finding:
    contract = ctx.contract
    late = [f for f in contract.features if contract.columns[f].timing is Timing.after_label_window]
    mask = np.zeros(len(ctx.frame), dtype=bool)
    if contract.event_time is not None and check.dates_before_event_time:
        event = pd.to_datetime(ctx.frame[contract.event_time.column], utc=True)
        for col in check.dates_before_event_time:
            when = pd.to_datetime(ctx.frame[col], utc=True)
            mask |= (when.notna() & event.notna() & (when > event)).to_numpy(dtype=bool)
    rows = int(mask.sum())
    problems = []
    if late:
        problems.append(f"features known only after the label window: {', '.join(late)}")
    if rows:
        problems.append(
            f"{rows} row(s) with {' / '.join(check.dates_before_event_time)} after the event time"
        )
    return Finding(
        not problems,
        "; ".join(problems) or "no feature is known after the label window opens",
        float(len(late) + rows),
        0.0,
        mask=mask,
        columns=late,
    )


@_judges(NoProhibitedFeaturesCheck)
def _no_prohibited(check: NoProhibitedFeaturesCheck, ctx: Context) -> Finding:
    found = prohibited_matches(ctx.contract.features, ctx.contract.prohibited_attributes)
    msg = (
        "prohibited attributes among the features: " + ", ".join(f"{f} ({a})" for f, a in found.items())
        if found
        else f"none of {len(ctx.contract.features)} features is a prohibited attribute"
    )
    return Finding(not found, msg, float(len(found)), 0.0, columns=sorted(found))


@_judges(ProxyAssociationCheck)
def _proxy(check: ProxyAssociationCheck, ctx: Context) -> Finding:
    frame = ctx.frame
    if len(frame) > check.sample_rows:
        frame = frame.sample(n=check.sample_rows, random_state=0)
    details: dict[str, float] = {}
    proxies: list[str] = []
    strongest = 0.0
    for protected in ctx.contract.protected:
        for feature in ctx.contract.features:
            value, measure = association(frame[feature], frame[protected])
            details[f"{feature}~{protected}"] = round(value, 4)
            strongest = max(strongest, value)
            if value > check.threshold:
                proxies.append(f"{feature} ~ {protected} ({measure} {value:.2f})")
    msg = (
        f"possible proxies: {'; '.join(proxies)}"
        if proxies
        else f"strongest association {strongest:.2f} (threshold {check.threshold:g})"
    )
    flagged = sorted({p.split(" ~ ")[0] for p in proxies})
    return Finding(not proxies, msg, strongest, check.threshold, columns=flagged, details=details)


#: rules a single hypothetical row can be held to (counterfactuals must keep them)
_ROW_RULES = (CompareCheck, RangeCheck, SumEqualsCheck)


def rows_breaking_rules(
    frame: pd.DataFrame, contract: Contract, *, now: datetime
) -> tuple[BoolArray, list[str]]:
    """Rows of ``frame`` that break a row-level contract rule (compare, range, sum) on its columns.

    Only rules whose every column is in ``frame`` are judged. Returns the mask and the ids of the
    rules judged. Counterfactual search uses it to drop proposals no real customer could have, such
    as more sessions in 30 days than in 90.
    """
    ctx = Context(frame=frame, contract=contract, now=now)
    mask = np.zeros(len(frame), dtype=bool)
    judged = []
    for rule in contract.rules:
        if not isinstance(rule.check, _ROW_RULES):
            continue
        if any(col not in frame.columns for _, col in rule.check.columns_referenced()):
            continue
        finding = run_check(rule.check, ctx)
        if finding.mask is not None:
            mask |= finding.mask
        judged.append(rule.id)
    return mask, judged
