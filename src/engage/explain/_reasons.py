"""Reason codes: the top factors of one decision, in plain language built from the contract.

Each reason names a feature by its contract description, states the customer's value in the column's
unit, and says which way it moved the prediction: "Support contacts in the last 90 days (3 tickets)
raised the churn risk." The factors are the largest attributions by size (TreeSHAP for an xgboost head,
KernelSHAP otherwise), so the reasons are the ones that actually moved this customer's score.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from engage.contract import Column, ColumnType, Contract

__all__ = ["describe_value", "display_name", "reason_codes", "short_description"]

F64 = npt.NDArray[np.float64]


def display_name(contract: Contract, head: str) -> str:
    """What the prediction of ``head`` is called in plain language."""
    target = contract.targets.get(head)
    if target is not None and target.display_name:
        return target.display_name
    return head.replace("_", " ")


def short_description(column: Column | None, name: str) -> str:
    """A column's description up to its first semicolon (the rest qualifies, it does not name)."""
    if column is None:
        return name
    return column.description.split(";")[0].strip()


def describe_value(column: Column | None, value: Any) -> str:
    """A value as a person would say it: ``3 tickets``, ``12.50`` (currency), ``40%``, ``not recorded``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "not recorded"
    if isinstance(value, bool) or (column is not None and column.type is ColumnType.boolean):
        return "yes" if str(value).lower() in ("true", "1", "yes") else "no"
    if not isinstance(value, int | float):
        return str(value)
    unit = column.unit if column is not None else None
    if unit == "currency":
        return f"{value:,.2f}"
    if unit == "ratio":
        return f"{value:.0%}"
    number = f"{value:,.0f}" if float(value).is_integer() else f"{value:,.3g}"
    if not unit:
        return number
    if value == 1 and unit.endswith("s"):
        unit = unit[:-1]
    return f"{number} {unit}"


def reason_codes(
    contract: Contract,
    head: str,
    names: list[str],
    values: F64,
    row: dict[str, Any],
    *,
    top: int,
) -> list[dict[str, Any]]:
    """The ``top`` attributions of one row by size, each with a sentence; zero attributions are skipped."""
    what = display_name(contract, head)
    order = np.argsort(-np.abs(values), kind="stable")
    out: list[dict[str, Any]] = []
    for j in order[:top]:
        contribution = float(values[j])
        if contribution == 0.0:
            break
        name = names[j]
        column = contract.columns.get(name)
        description = short_description(column, name)
        shown = describe_value(column, row.get(name))
        direction = "raised" if contribution > 0 else "lowered"
        out.append(
            {
                "feature": name,
                "value": row.get(name),
                "contribution": contribution,
                "direction": "up" if contribution > 0 else "down",
                "text": f"{description} ({shown}) {direction} the {what}.",
            }
        )
    return out
