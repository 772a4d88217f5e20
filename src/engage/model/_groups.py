"""Protected groups from the contract: each protected column as labels, binned when the contract bins it."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

from engage.contract import Contract
from engage.errors import SchemaError

__all__ = ["UNKNOWN", "AttributeSpec", "attribute_specs", "bin_labels", "cell_labels", "protected_groups"]

#: the group of rows whose protected value is missing: reported, never judged (it is not a group of people)
UNKNOWN = "unknown"

Labels = npt.NDArray[np.object_]


#: a protected attribute as a model needs it at scoring time: its column and, for numbers, the bin edges
AttributeSpec = dict[str, object]


def bin_labels(edges: Sequence[float]) -> list[str]:
    """The group of each half-open bin ``[edges[i], edges[i + 1])`` of a binned protected attribute, as
    every fairness figure names it: ``25-34`` for ``[25, 35)``."""
    return [f"{int(lo)}-{int(hi) - 1}" for lo, hi in itertools.pairwise(edges)]


def attribute_specs(contract: Contract, attributes: Sequence[str] | None = None) -> list[AttributeSpec]:
    names = list(attributes) if attributes else contract.protected
    return [
        {"name": n, "bins": list(contract.columns[n].bins or []) or None}
        for n in names
        if n in contract.columns
    ]


def _labels(
    frame: pd.DataFrame, contract: Contract | None, name: str, bins: list[float] | None = None
) -> Labels:
    if name not in frame.columns:
        raise SchemaError(f"protected attribute {name!r} is not in the table: fairness cannot be measured")
    column = contract.columns.get(name) if contract is not None else None
    values = frame[name]
    edges_given = bins or (list(column.bins) if column is not None and column.bins else None)
    if edges_given:
        edges = list(edges_given)
        numbers = pd.to_numeric(values, errors="coerce").astype("float64")
        labels = bin_labels(edges)
        binned = pd.cut(numbers, bins=edges, right=False, labels=labels)
        out = binned.astype("object").to_numpy()
    else:
        out = values.astype("object").to_numpy()
    missing = pd.isna(out)
    out = out.astype(str).astype(object)
    out[missing] = UNKNOWN
    return out


def protected_groups(
    frame: pd.DataFrame,
    contract: Contract,
    attributes: Sequence[str] | None = None,
    *,
    intersections: bool = True,
) -> dict[str, Labels]:
    """Group label of every row per protected attribute (and per pair of them, as ``a&b``)."""
    names = list(attributes) if attributes else contract.protected
    if not names:
        raise SchemaError(
            f"contract {contract.contract} declares no protected attribute: nothing to measure (declare the "
            "protected columns with role: protected, or state in the contract why fairness does not apply: "
            "fairness: {applicable: false, reason: ...})"
        )
    unknown = [n for n in names if n in contract.columns and contract.columns[n].role.value != "protected"]
    if unknown:
        raise SchemaError(f"{', '.join(unknown)}: not a protected attribute of contract {contract.contract}")
    groups = {name: _labels(frame, contract, name) for name in names}
    if intersections:
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                left, right = groups[a], groups[b]
                joined = np.char.add(np.char.add(left.astype(str), " & "), right.astype(str)).astype(object)
                joined[(left == UNKNOWN) | (right == UNKNOWN)] = UNKNOWN
                groups[f"{a}&{b}"] = joined
    return groups


def cell_labels(frame: pd.DataFrame, specs: Sequence[AttributeSpec]) -> Labels:
    """The full intersection of the given attributes per row (``female & 25-34``); any missing: unknown."""
    parts = [_labels(frame, None, str(s["name"]), s.get("bins")) for s in specs]  # type: ignore[arg-type]
    out = parts[0].astype(str)
    unknown = parts[0] == UNKNOWN
    for part in parts[1:]:
        out = np.char.add(np.char.add(out, " & "), part.astype(str))
        unknown |= part == UNKNOWN
    labels = out.astype(object)
    labels[unknown] = UNKNOWN
    return labels
