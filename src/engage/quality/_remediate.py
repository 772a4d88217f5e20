"""Remediation: repair what the contract allows, set aside what it does not, and count everything.

In order, on the conformed table (the input is never modified):

1. drop exact duplicate rows;
2. among rows sharing a primary key, keep the latest by event time (``remediation.keep: latest``) or
   the first one;
3. cap values of ``cap: true`` columns at the contract's bounds for them;
4. quarantine rows that still break a critical row-level check (with the ids of the checks they break);
5. impute empty values of nullable columns that declare ``impute``, from the kept rows.

Every step is an :class:`Action` with its count, reported even when it touched nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from engage.contract import Contract, Severity
from engage.errors import SchemaError
from engage.tables import BoolArray

from ._checks import Context, outside, run_check
from ._validate import Validation, validate

__all__ = ["QUARANTINE_REASONS", "Action", "Remediated", "remediate"]

#: the column of the quarantine file that lists the checks a row broke
QUARANTINE_REASONS = "_quarantine_reasons"


class Action(BaseModel):
    action: str = Field(description="drop_exact_duplicates | keep_latest_per_key | cap | quarantine | impute")
    column: str | None = None
    rows: int = Field(description="Rows (or values) the action changed or set aside")
    detail: str = ""


@dataclass
class Remediated:
    table: pd.DataFrame
    quarantine: pd.DataFrame
    actions: list[Action]
    #: the remediated table checked again (critical checks, without GX): what the pipeline goes on with
    after: Validation


def remediate(validation: Validation, contract: Contract, *, now: datetime | None = None) -> Remediated:
    frame = validation.table.frame[list(contract.columns)].copy()
    actions: list[Action] = []

    exact = frame.duplicated(keep="first").to_numpy()
    frame = frame.loc[~exact]
    actions.append(
        Action(action="drop_exact_duplicates", rows=int(exact.sum()), detail="identical in every column")
    )

    keys = contract.primary_key
    event = contract.event_time.column if contract.event_time else None
    latest = contract.remediation.keep == "latest" and event is not None
    ordered = frame.sort_values(event, kind="stable") if latest and event is not None else frame
    superseded = ordered.duplicated(subset=keys, keep="last" if latest else "first")
    frame = frame.loc[~frame.index.isin(ordered.index[superseded.to_numpy()])]
    actions.append(
        Action(
            action="keep_latest_per_key" if latest else "keep_first_per_key",
            rows=int(superseded.sum()),
            detail=f"older rows of a repeated {', '.join(keys)} dropped",
        )
    )

    capped: set[str] = set()
    for name, col in contract.columns.items():
        if not col.cap:
            continue
        lo, hi = contract.bounds(name)
        values = frame[name]
        out = outside(values, lo, hi)
        if out.any():
            capped.add(name)
            frame[name] = values.clip(lower=lo, upper=hi).astype(values.dtype)
        actions.append(
            Action(action="cap", column=name, rows=int(out.sum()), detail=f"clipped to [{lo}, {hi}]")
        )

    masks = _masks_after(validation, frame, contract, capped, now)
    frame = frame.reset_index(drop=True)
    critical = {r.id for r in validation.report.results if r.severity is Severity.critical}
    reasons = pd.Series("", index=frame.index, dtype="object")
    bad = np.zeros(len(frame), dtype=bool)
    if contract.remediation.quarantine:
        for check_id, mask in masks.items():
            if check_id in critical and mask.any():
                bad |= mask
                reasons[mask] = reasons[mask] + check_id + " "
    quarantine = (
        frame.loc[bad].assign(**{QUARANTINE_REASONS: reasons[bad].str.strip()}).reset_index(drop=True)
    )
    kept = frame.loc[~bad].reset_index(drop=True)
    actions.append(
        Action(action="quarantine", rows=int(bad.sum()), detail="rows breaking a critical row-level check")
    )

    for name, col in contract.columns.items():
        if col.impute is None:
            continue
        empty = kept[name].isna()
        n = int(empty.sum())
        if n:
            kept[name] = kept[name].fillna(_fill_value(kept[name], col.impute, col.impute_value))
        actions.append(Action(action="impute", column=name, rows=n, detail=f"{col.impute}"))

    # nothing left to check when every row is quarantined: the input's findings stand
    after = validate(kept, contract, now=now, critical_only=True) if len(kept) else validation
    return Remediated(table=kept, quarantine=quarantine, actions=actions, after=after)


def _masks_after(
    validation: Validation, frame: pd.DataFrame, contract: Contract, capped: set[str], now: datetime | None
) -> dict[str, BoolArray]:
    """Row-level findings on the deduplicated, capped rows.

    A row's finding depends on that row alone, so the first validation's masks are reused at the kept
    positions; only uniqueness (which depends on the other rows) and the checks of capped columns are
    judged again.
    """
    positions = frame.index.to_numpy()
    ctx = Context(frame=frame.reset_index(drop=True), contract=contract, now=now or datetime.now(UTC))
    rules = {r.id: r for r in contract.rules}
    masks: dict[str, BoolArray] = {}
    for check_id, mask in validation.masks.items():
        rule = rules.get(check_id)
        if rule is not None and (
            rule.check.kind == "unique" or capped & {c for _, c in rule.check.columns_referenced()}
        ):
            fresh = run_check(rule.check, ctx).mask
            masks[check_id] = fresh if fresh is not None else mask[positions]
        elif (
            check_id.startswith("schema.")
            and check_id.endswith(".bounds")
            and check_id.split(".")[1] in capped
        ):
            name = check_id.split(".")[1]
            masks[check_id] = outside(ctx.frame[name], contract.columns[name].min, contract.columns[name].max)
        else:
            masks[check_id] = mask[positions]
    return masks


def _fill_value(s: pd.Series, strategy: str, constant: float | str | bool | None) -> Any:
    present = s.dropna()
    if strategy == "constant":
        return constant
    if present.empty:
        raise SchemaError(f"cannot impute {s.name!r} by {strategy}: every value is empty")
    if strategy == "median":
        value = float(present.median())
    elif strategy == "mean":
        value = float(present.mean())
    else:
        return present.mode().iloc[0]
    return round(value) if pd.api.types.is_integer_dtype(s.dtype) else value
