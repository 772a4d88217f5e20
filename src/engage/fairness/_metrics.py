"""Fairness figures per protected attribute: per-group rates and errors, the gap figures, bootstrap CIs.

Point estimates come from fairlearn's :class:`~fairlearn.metrics.MetricFrame`. Confidence intervals come
from a seeded bootstrap over rows (percentile interval, 95 %), computed with group-wise sums on resampled
row indices so that 200 replicates of 250,000 rows take about a second.

Groups with fewer than ``min_group_size`` rows, and the ``unknown`` group (rows whose protected value is
missing), are reported with their figures but left out of the gap figures: a handful of rows cannot fail
the gate on their own, and a missing value is not a group of people.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from engage.errors import SchemaError
from engage.model._groups import UNKNOWN

__all__ = ["AttributeFairness", "Figure", "GroupRow", "classification_fairness", "regression_fairness"]

F64 = npt.NDArray[np.float64]
ECE_BINS = 10
CLASSIFICATION_GAPS = (
    "demographic_parity_ratio",
    "demographic_parity_difference",
    "equalized_odds_difference",
    "equal_opportunity_difference",
    "max_group_ece",
)
REGRESSION_GAPS = ("mae_ratio", "rmse_ratio", "mean_prediction_ratio", "max_group_rmse")


@dataclass(frozen=True)
class Figure:
    """A point estimate with its 95 % bootstrap interval (NaN bounds when not computable)."""

    value: float
    low: float
    high: float

    def to_json(self) -> dict[str, float | None]:
        return {
            k: (v if np.isfinite(v) else None)
            for k, v in (("value", self.value), ("low", self.low), ("high", self.high))
        }


@dataclass
class GroupRow:
    group: str
    rows: int
    judged: bool
    stats: dict[str, Figure]


@dataclass
class AttributeFairness:
    """Every group of one attribute, and the gap figures over the judged groups."""

    attribute: str
    task: str
    groups: list[GroupRow]
    summary: dict[str, Figure]
    notes: list[str] = field(default_factory=list)

    @property
    def judged(self) -> list[str]:
        return [g.group for g in self.groups if g.judged]

    def to_json(self) -> dict[str, Any]:
        return {
            "attribute": self.attribute,
            "task": self.task,
            "judged_groups": self.judged,
            "summary": {k: f.to_json() for k, f in self.summary.items()},
            "groups": [
                {
                    "group": g.group,
                    "rows": g.rows,
                    "judged": g.judged,
                    **{k: f.to_json() for k, f in g.stats.items()},
                }
                for g in self.groups
            ],
            "notes": self.notes,
        }


def _check(y: Any, pred: Any, labels: Any, attribute: str) -> tuple[F64, F64, npt.NDArray[np.object_]]:
    truth = np.asarray(y, dtype="float64")
    scores = np.asarray(pred, dtype="float64")
    groups = np.asarray(labels, dtype=object)
    if not (truth.shape == scores.shape == groups.shape) or truth.ndim != 1:
        raise SchemaError(
            f"fairness on {attribute}: labels ({truth.size:,}), predictions ({scores.size:,}) and groups "
            f"({groups.size:,}) must have the same length"
        )
    if truth.size == 0:
        raise SchemaError(f"fairness on {attribute}: no rows")
    for what, values in (("labels", truth), ("predictions", scores)):
        if not np.isfinite(values).all():
            raise SchemaError(f"fairness on {attribute}: {what} hold NaN or infinite values")
    return truth, scores, groups


def _codes(groups: npt.NDArray[np.object_]) -> tuple[list[str], npt.NDArray[np.intp]]:
    names, codes = np.unique(groups.astype(str), return_inverse=True)
    return [str(n) for n in names], codes.astype(np.intp)


def _grouping(
    groups: npt.NDArray[np.object_], attribute: str, min_group_size: int
) -> tuple[list[str], npt.NDArray[np.intp], npt.NDArray[np.int64], npt.NDArray[np.bool_], list[str]]:
    """Group names, each row's group code, group sizes, which groups are judged, and notes on the rest."""
    names, codes = _codes(groups)
    counts = np.bincount(codes, minlength=len(names)).astype(np.int64)
    judged = _judged(names, counts, min_group_size)
    return names, codes, counts, judged, _group_notes(names, counts, judged, min_group_size, attribute)


def _judged(names: list[str], counts: npt.NDArray[np.int64], min_group_size: int) -> npt.NDArray[np.bool_]:
    return np.array([n != UNKNOWN and c >= min_group_size for n, c in zip(names, counts, strict=True)])


def _interval(samples: F64) -> tuple[float, float]:
    finite = samples[np.isfinite(samples)]
    if finite.size < max(10, samples.size // 2):
        return float("nan"), float("nan")
    low, high = np.percentile(finite, [2.5, 97.5])
    return float(low), float(high)


def _bootstrap(
    n: int, bootstrap: int, seed: int, replicate: Callable[[npt.NDArray[np.intp]], dict[str, F64]]
) -> dict[str, F64]:
    """Run ``replicate`` on ``bootstrap`` resamples of row indices; stack each figure's values."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[F64]] = {}
    for _ in range(bootstrap):
        for key, value in replicate(rng.integers(0, n, n)).items():
            out.setdefault(key, []).append(value)
    return {k: np.asarray(v, dtype="float64") for k, v in out.items()}


def _ratio(values: F64) -> float:
    top = float(np.max(values)) if values.size else float("nan")
    return float(np.min(values)) / top if values.size >= 2 and top > 0 else float("nan")


def _range(values: F64) -> float:
    return float(np.max(values) - np.min(values)) if values.size >= 2 else float("nan")


def _ratio_rows(values: F64, axis: int = 1) -> F64:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.min(values, axis=axis) / np.max(values, axis=axis), dtype="float64")


def _range_rows(values: F64, axis: int = 1) -> F64:
    return np.asarray(np.max(values, axis=axis) - np.min(values, axis=axis), dtype="float64")


def classification_fairness(
    y: Any,
    prob: Any,
    labels: Any,
    *,
    attribute: str,
    threshold: float = 0.5,
    min_group_size: int = 1000,
    bootstrap: int = 200,
    seed: int = 0,
) -> AttributeFairness:
    """Selection rate, TPR, FPR and calibration error per group; parity ratio and odds gaps across groups.

    ``demographic_parity_ratio`` is the lowest selection rate over the highest (the 80 % rule);
    ``equalized_odds_difference`` the larger of the TPR and FPR ranges; ``equal_opportunity_difference``
    the TPR range; ``max_group_ece`` the worst per-group expected calibration error (10 bins).
    """
    from fairlearn.metrics import MetricFrame, count, false_positive_rate, selection_rate, true_positive_rate

    truth, probs, groups = _check(y, prob, labels, attribute)
    if not set(np.unique(truth)) <= {0.0, 1.0}:
        raise SchemaError(f"fairness on {attribute}: classification labels must be 0 or 1")
    decisions = (probs >= threshold).astype("float64")
    names, codes, counts, judged, notes = _grouping(groups, attribute, min_group_size)
    frame = MetricFrame(
        metrics={
            "selection_rate": selection_rate,
            "tpr": true_positive_rate,
            "fpr": false_positive_rate,
            "rows": count,
        },
        y_true=truth,
        y_pred=decisions,
        sensitive_features=pd.Series(groups.astype(str), name=attribute),
    )
    by = frame.by_group
    for name, code in zip(names, range(len(names)), strict=True):
        sub = truth[codes == code]
        if judged[code] and np.unique(sub).size < 2:
            raise SchemaError(
                f"fairness on {attribute}: group {name!r} has a single label value ({int(sub[0])}) in its "
                f"{sub.size:,} rows; its TPR or FPR is undefined"
            )
    bins = np.minimum((probs * ECE_BINS).astype(np.intp), ECE_BINS - 1)
    g = len(names)

    def per_group(idx: npt.NDArray[np.intp]) -> dict[str, F64]:
        c, t, d, p = codes[idx], truth[idx], decisions[idx], probs[idx]
        n = np.bincount(c, minlength=g).astype("float64")
        pos = np.bincount(c, weights=t, minlength=g)
        neg = n - pos
        with np.errstate(divide="ignore", invalid="ignore"):
            sel = np.bincount(c, weights=d, minlength=g) / n
            tpr = np.bincount(c, weights=d * t, minlength=g) / pos
            fpr = np.bincount(c, weights=d * (1 - t), minlength=g) / neg
            gap = np.bincount(c * ECE_BINS + bins[idx], weights=t - p, minlength=g * ECE_BINS).reshape(
                g, ECE_BINS
            )
            ece = np.abs(gap).sum(axis=1) / n
        return {"selection_rate": sel, "tpr": tpr, "fpr": fpr, "ece": ece}

    def summary(stats: dict[str, F64]) -> dict[str, F64]:
        sel, tpr, fpr, ece = (
            np.atleast_2d(stats[k])[:, judged] for k in ("selection_rate", "tpr", "fpr", "ece")
        )
        if sel.shape[1] < 2:  # nothing to compare: every gap figure is undefined
            return dict.fromkeys(CLASSIFICATION_GAPS, np.full(sel.shape[0], np.nan))
        return {
            "demographic_parity_ratio": _ratio_rows(sel),
            "demographic_parity_difference": _range_rows(sel),
            "equalized_odds_difference": np.maximum(_range_rows(tpr), _range_rows(fpr)),
            "equal_opportunity_difference": _range_rows(tpr),
            "max_group_ece": np.max(ece, axis=1) if ece.shape[1] else np.full(ece.shape[0], np.nan),
        }

    fairlearn = {k: by[k].reindex(names).to_numpy(dtype="float64") for k in ("selection_rate", "tpr", "fpr")}
    grouping = (names, counts, judged, notes)
    return _assemble(
        attribute,
        "binary_classification",
        grouping,
        fairlearn,
        summary,
        per_group,
        truth.size,
        bootstrap,
        seed,
    )


def regression_fairness(
    y: Any,
    pred: Any,
    labels: Any,
    *,
    attribute: str,
    min_group_size: int = 1000,
    bootstrap: int = 200,
    seed: int = 0,
) -> AttributeFairness:
    """MAE, RMSE and mean prediction per group; their worst-to-best ratios and the worst group's RMSE.

    ``mae_ratio`` and ``rmse_ratio`` are the highest group error over the lowest (1 is parity);
    ``mean_prediction_ratio`` the lowest group mean prediction over the highest; ``max_group_rmse`` is the
    bounded-group-loss figure.
    """
    from fairlearn.metrics import MetricFrame, count
    from sklearn.metrics import mean_absolute_error, root_mean_squared_error

    truth, preds, groups = _check(y, pred, labels, attribute)
    names, codes, counts, judged, notes = _grouping(groups, attribute, min_group_size)
    frame = MetricFrame(
        metrics={"mae": mean_absolute_error, "rmse": root_mean_squared_error, "rows": count},
        y_true=truth,
        y_pred=preds,
        sensitive_features=pd.Series(groups.astype(str), name=attribute),
    )
    by = frame.by_group
    g = len(names)
    err = preds - truth

    def per_group(idx: npt.NDArray[np.intp]) -> dict[str, F64]:
        c, e = codes[idx], err[idx]
        n = np.bincount(c, minlength=g).astype("float64")
        with np.errstate(divide="ignore", invalid="ignore"):
            return {
                "mae": np.bincount(c, weights=np.abs(e), minlength=g) / n,
                "rmse": np.sqrt(np.bincount(c, weights=e * e, minlength=g) / n),
                "mean_prediction": np.bincount(c, weights=preds[idx], minlength=g) / n,
                "mean_label": np.bincount(c, weights=truth[idx], minlength=g) / n,
            }

    def summary(stats: dict[str, F64]) -> dict[str, F64]:
        mae, rmse, mean = (np.atleast_2d(stats[k])[:, judged] for k in ("mae", "rmse", "mean_prediction"))
        if mae.shape[1] < 2:  # nothing to compare: every gap figure is undefined
            return dict.fromkeys(REGRESSION_GAPS, np.full(mae.shape[0], np.nan))
        with np.errstate(divide="ignore", invalid="ignore"):
            return {
                "mae_ratio": np.max(mae, axis=1) / np.min(mae, axis=1),
                "rmse_ratio": np.max(rmse, axis=1) / np.min(rmse, axis=1),
                "mean_prediction_ratio": _ratio_rows(mean),
                "max_group_rmse": np.max(rmse, axis=1) if rmse.shape[1] else np.full(rmse.shape[0], np.nan),
            }

    fairlearn = {k: by[k].reindex(names).to_numpy(dtype="float64") for k in ("mae", "rmse")}
    grouping = (names, counts, judged, notes)
    return _assemble(
        attribute, "regression", grouping, fairlearn, summary, per_group, truth.size, bootstrap, seed
    )


def _group_notes(
    names: list[str],
    counts: npt.NDArray[np.int64],
    judged: npt.NDArray[np.bool_],
    min_size: int,
    attribute: str,
) -> list[str]:
    notes = []
    small = [f"{n} ({c:,})" for n, c, j in zip(names, counts, judged, strict=True) if not j and n != UNKNOWN]
    if small:
        notes.append(f"{attribute}: groups under {min_size:,} rows reported, not judged: {', '.join(small)}")
    if UNKNOWN in names:
        notes.append(
            f"{attribute}: {int(counts[names.index(UNKNOWN)]):,} rows without a value reported as '{UNKNOWN}', not judged"
        )
    if judged.sum() < 2:
        notes.append(f"{attribute}: fewer than two groups large enough to compare: no gap figure")
    return notes


def _assemble(
    attribute: str,
    task: str,
    grouping: tuple[list[str], npt.NDArray[np.int64], npt.NDArray[np.bool_], list[str]],
    fairlearn: dict[str, F64],
    summary: Callable[[dict[str, F64]], dict[str, F64]],
    per_group: Callable[[npt.NDArray[np.intp]], dict[str, F64]],
    n: int,
    bootstrap: int,
    seed: int,
) -> AttributeFairness:
    def both(idx: npt.NDArray[np.intp]) -> dict[str, F64]:
        stats = per_group(idx)
        return {
            **{f"group:{k}": v for k, v in stats.items()},
            **{f"gap:{k}": v for k, v in summary(stats).items()},
        }

    names, counts, judged, notes = grouping
    point = {**per_group(np.arange(n)), **fairlearn}  # fairlearn's MetricFrame gives the point estimates
    samples = _bootstrap(n, bootstrap, seed, both) if bootstrap > 0 else {}
    gaps = {k: float(v[0]) for k, v in summary(point).items()}
    figures: dict[str, Figure] = {}
    for key, value in gaps.items():
        low, high = _interval(samples[f"gap:{key}"][:, 0] if f"gap:{key}" in samples else np.array([]))
        figures[key] = Figure(value, low, high)
    rows = []
    for i, name in enumerate(names):
        stats = {}
        for key, values in point.items():
            low, high = (
                _interval(samples[f"group:{key}"][:, i]) if f"group:{key}" in samples else (float("nan"),) * 2
            )
            stats[key] = Figure(float(values[i]), low, high)
        rows.append(GroupRow(name, int(counts[i]), bool(judged[i]), stats))
    return AttributeFairness(attribute, task, rows, figures, notes)
