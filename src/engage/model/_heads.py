"""Prediction heads: which targets a contract defines, their labels, and the checks before training."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from engage.contract import Contract, Distribution, Task
from engage.errors import ConfigError, TrainingError

__all__ = ["MIN_ROWS", "PRODUCT_HEADS", "Head", "check_counts", "check_parts", "head_labels", "plan_heads"]

#: the heads Engage is built around; a contract may define any subset (and others)
PRODUCT_HEADS = ("engagement_score", "churn", "ltv")

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Head:
    """One prediction head: a target of the contract and how it is learned."""

    name: str
    column: str
    task: Task
    distribution: Distribution = Distribution.continuous
    positive: bool | int | str | None = None

    @property
    def classification(self) -> bool:
        return self.task is Task.binary_classification

    @property
    def value(self) -> bool:
        """Money-like target: ranked and captured, not only fitted."""
        return self.distribution is Distribution.heavy_tailed

    @property
    def output(self) -> str:
        """Name of the prediction column (``churn`` predicts ``churn_probability``)."""
        return f"{self.name}_probability" if self.classification else self.name


def plan_heads(contract: Contract, only: Sequence[str] | None = None) -> tuple[list[Head], list[str]]:
    """The heads to train, and a note for each product head that is skipped and why."""
    defined = {
        name: Head(name, t.column, t.task, t.distribution, t.positive) for name, t in contract.targets.items()
    }
    notes: list[str] = []
    if only:
        unknown = [h for h in only if h not in defined]
        if unknown:
            raise ConfigError(
                f"--head: {', '.join(unknown)} not defined by contract {contract.contract} "
                f"(it defines: {', '.join(defined) or 'no targets'})"
            )
        notes.extend(f"head {h} skipped: not asked for (--head)" for h in defined if h not in only)
        heads = [defined[h] for h in only]
    else:
        heads = list(defined.values())
    notes.extend(
        f"head {h} skipped: contract {contract.contract} defines no {h!r} target"
        for h in PRODUCT_HEADS
        if h not in defined
    )
    if not heads:
        raise TrainingError(f"contract {contract.contract} defines no targets: there is nothing to train")
    return heads, notes


def head_labels(frame: pd.DataFrame, head: Head) -> F64:
    """The label of every row as float64 (classification: 1.0 positive, 0.0 not), NaN where missing."""
    if head.column not in frame.columns:
        raise TrainingError(
            f"head {head.name}: its target column {head.column!r} is not in the table", head=head.name
        )
    values = frame[head.column]
    known = values.notna().to_numpy()
    if head.classification:
        if isinstance(head.positive, bool) and pd.api.types.is_bool_dtype(values.dtype):
            hit = values.eq(head.positive)
        else:
            hit = values.astype("string").eq(str(head.positive))
        y = hit.fillna(False).to_numpy(dtype="float64")
    else:
        try:
            y = pd.to_numeric(values, errors="raise").to_numpy(dtype="float64", na_value=np.nan)
        except (TypeError, ValueError):
            raise TrainingError(
                f"head {head.name}: target column {head.column!r} is not numeric", head=head.name
            ) from None
    y[~known] = np.nan
    if not np.isfinite(y[known]).all():
        raise TrainingError(
            f"head {head.name}: target column {head.column!r} holds infinite values", head=head.name
        )
    return y


#: fewest labelled rows each part of the split must hold for a head to be trained
MIN_ROWS = {"train": 100, "validation": 20, "test": 20}


def check_counts(head: Head, counts: dict[str, int]) -> None:
    """Refuse a head with fewer labelled rows in a part of the split than :data:`MIN_ROWS` asks."""
    if any(counts[p] < MIN_ROWS[p] for p in MIN_ROWS):
        got = ", ".join(f"{p} {counts[p]:,}" for p in MIN_ROWS)
        need = "/".join(f"{MIN_ROWS[p]}" for p in MIN_ROWS)
        raise TrainingError(
            f"head {head.name}: too few labelled rows for the split ({got}; at least {need} needed)",
            head=head.name,
        )


def check_parts(head: Head, y: F64, parts: dict[str, npt.NDArray[np.intp]]) -> None:
    """Refuse a head whose labelled rows are too few for the split, or whose label has one class."""
    check_counts(head, {part: int(np.isfinite(y[rows]).sum()) for part, rows in parts.items()})
    if not head.classification:
        return
    labelled = y[np.isfinite(y)]
    if np.unique(labelled).size < 2:
        only = head.positive if labelled[0] == 1.0 else f"not {head.positive}"
        raise TrainingError(
            f"head {head.name}: the label {head.column!r} has a single class ({only}) in all "
            f"{labelled.size:,} labelled rows; a classifier needs both",
            head=head.name,
        )
    for part, rows in parts.items():
        part_y = y[rows]
        part_y = part_y[np.isfinite(part_y)]
        if np.unique(part_y).size < 2:
            raise TrainingError(
                f"head {head.name}: the {part} part holds a single class of {head.column!r}; "
                "a classifier needs both in each part",
                head=head.name,
            )
