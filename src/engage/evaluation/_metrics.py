"""Model metrics as pure functions over numpy arrays.

Standard metrics come from scikit-learn and scipy; only what they lack is written here: the expected
calibration error, the calibration curve and the lift / capture figures. Every function checks its input
first and raises :class:`~engage.errors.SchemaError` with one line naming the problem; the optional
``name`` keyword (``"churn"``, ``"ltv"``) is used in that line. Parameters out of range (``bins``,
``groups``, ``threshold``, ``max_points``) raise :class:`~engage.errors.ConfigError`.

Rows with tied scores are ranked fairly: lift, capture and Gini give every row of a tie the mean outcome
of the tie, which is what a random order among the tied rows yields on average. A model that scores every
row the same therefore has lift 1 and Gini 0, whatever the row order.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from engage.errors import ConfigError, SchemaError

__all__ = [
    "calibration_curve",
    "classification_metrics",
    "confusion",
    "expected_calibration_error",
    "lift_table",
    "regression_metrics",
    "roc_points",
    "value_metrics",
]

F64 = npt.NDArray[np.float64]

#: share of rows in the "top decile" of the summary figures
_TOP_SHARE = 0.1

# -- error messages (formatted where they are raised; the tests match on them) ---------------------------

#: ``what`` names the array (``"churn labels"``); ``s`` is ``"s"`` for a plural count, else ``""``
_NOT_NUMERIC = "{what} are not numeric"
_NOT_ONE_DIMENSIONAL = "{what} must be one-dimensional, got shape {shape}"
_EMPTY = "{what} are empty"
_NAN_VALUES = "{what} hold {count:,} NaN value{s}"
_INFINITE_VALUES = "{what} hold {count:,} infinite value{s}"
_LENGTH_MISMATCH = "{name} {true_noun} and {pred_noun} differ in length ({n_true:,} vs {n_pred:,} rows)"
_NOT_BINARY = "{name} labels must be 0/1 or booleans, found {value}"
_NOT_PROBABILITIES = "{name} probabilities must lie in [0, 1], {count:,} do not (e.g. {value})"
_SINGLE_CLASS = "{name} labels hold a single class ({cls}): {what} is undefined"
_BAD_COUNT = "{what} must be an integer of at least {minimum}, got {value!r}"
_BAD_THRESHOLD = "threshold must lie in [0, 1], got {threshold!r}"
_ZERO_TOTAL = "{name} values sum to {total}: {what} is undefined"
_NEGATIVE_COUNT = "{name} values hold {count:,} negative value{s}: capture and Gini need values >= 0"
#: ``needs`` is what needs the values (``"capture needs"``, ``"lift and capture need"``)
_NEGATIVE_VALUES = "{name} values hold negative values: {needs} values >= 0"
_FEWER_ROWS_THAN_GROUPS = "{name} has {rows:,} rows, fewer than the {groups} groups of a lift table"


# -- input checks ----------------------------------------------------------------------------------------


def _numbers(values: Any, what: str) -> F64:
    """``values`` as a 1-D float array with at least one row and no NaN or infinite value."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise SchemaError(_NOT_NUMERIC.format(what=what)) from None
    if array.ndim != 1:
        raise SchemaError(_NOT_ONE_DIMENSIONAL.format(what=what, shape=array.shape))
    if array.size == 0:
        raise SchemaError(_EMPTY.format(what=what))
    nan = int(np.isnan(array).sum())
    if nan:
        raise SchemaError(_NAN_VALUES.format(what=what, count=nan, s="s" if nan > 1 else ""))
    infinite = int(np.isinf(array).sum())
    if infinite:
        raise SchemaError(_INFINITE_VALUES.format(what=what, count=infinite, s="s" if infinite > 1 else ""))
    return array


def _pair(y_true: Any, y_pred: Any, name: str, true_noun: str, pred_noun: str) -> tuple[F64, F64]:
    truth = _numbers(y_true, f"{name} {true_noun}")
    pred = _numbers(y_pred, f"{name} {pred_noun}")
    if truth.size != pred.size:
        raise SchemaError(
            _LENGTH_MISMATCH.format(
                name=name, true_noun=true_noun, pred_noun=pred_noun, n_true=truth.size, n_pred=pred.size
            )
        )
    return truth, pred


def _binary(y_true: Any, prob: Any, name: str, *, both_classes: str | None = None) -> tuple[F64, F64]:
    """Labels (0/1) and probabilities ([0, 1]) of one binary target.

    ``both_classes`` names what needs both classes (``"AUC"``); then a single class is an error.
    """
    labels, probs = _pair(y_true, prob, name, "labels", "probabilities")
    odd = labels[(labels != 0) & (labels != 1)]
    if odd.size:
        raise SchemaError(_NOT_BINARY.format(name=name, value=_show(odd[0])))
    outside = probs[(probs < 0) | (probs > 1)]
    if outside.size:
        raise SchemaError(_NOT_PROBABILITIES.format(name=name, count=outside.size, value=_show(outside[0])))
    if both_classes is not None:
        present = np.unique(labels)
        if present.size < 2:
            raise SchemaError(_SINGLE_CLASS.format(name=name, cls=_show(present[0]), what=both_classes))
    return labels, probs


def _show(value: float) -> str:
    return f"{value:g}"


def _count(value: int, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ConfigError(_BAD_COUNT.format(what=what, minimum=minimum, value=value))
    return int(value)


def _threshold(threshold: float) -> float:
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(_BAD_THRESHOLD.format(threshold=threshold))
    return float(threshold)


# -- ranking helpers -------------------------------------------------------------------------------------


def _ranked(truth: F64, score: F64) -> F64:
    """``truth`` ordered by ``score`` from highest to lowest, each tie replaced by its mean."""
    unique, inverse = np.unique(-score, return_inverse=True)  # ascending -score = descending score
    sums = np.bincount(inverse, weights=truth, minlength=unique.size)
    counts = np.bincount(inverse, minlength=unique.size)
    fair = (sums / counts)[inverse]
    order = np.argsort(inverse, kind="stable")
    return np.asarray(fair[order], dtype=np.float64)


def _top_share(truth: F64, score: F64) -> tuple[float, float]:
    """Mean outcome and share of the total outcome in the top tenth of rows by ``score``.

    The top tenth holds ``ceil(n / 10)`` rows, the first group of :func:`lift_table`.
    """
    ranked = _ranked(truth, score)
    top = ranked[: max(1, math.ceil(ranked.size * _TOP_SHARE))]
    return float(top.mean()), float(top.sum() / ranked.sum())


def _total_positive(truth: F64, name: str, what: str) -> float:
    total = float(truth.sum())
    if total <= 0:
        raise SchemaError(_ZERO_TOTAL.format(name=name, total=_show(total), what=what))
    return total


def _spearman(truth: F64, pred: F64) -> float:
    """Spearman's rank correlation; NaN when either side is constant (no ranking to compare)."""
    if np.ptp(truth) == 0 or np.ptp(pred) == 0:
        return math.nan
    from scipy.stats import spearmanr

    return float(spearmanr(truth, pred).statistic)


# -- metric sets -----------------------------------------------------------------------------------------


def regression_metrics(y_true: Any, y_pred: Any, *, name: str = "target") -> dict[str, float]:
    """``r2``, ``rmse``, ``mae`` and ``spearman`` of predictions against true values.

    ``r2`` follows scikit-learn (a constant target gives 1.0 for exact predictions, else 0.0) and is NaN
    for a single row; ``spearman`` is NaN when either side is constant.
    """
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    truth, pred = _pair(y_true, y_pred, name, "values", "predictions")
    return {
        "r2": float(r2_score(truth, pred)) if truth.size > 1 else math.nan,
        "rmse": math.sqrt(float(mean_squared_error(truth, pred))),
        "mae": float(mean_absolute_error(truth, pred)),
        "spearman": _spearman(truth, pred),
    }


def classification_metrics(
    y_true: Any, prob: Any, threshold: float = 0.5, *, name: str = "target"
) -> dict[str, float]:
    """Ranking, probability and threshold metrics of a binary classifier.

    ``y_true`` holds 0/1 (or booleans), ``prob`` the predicted probability of class 1. ``pr_auc`` is the
    average precision; ``ece`` uses 10 equal-width bins; ``lift_top_decile`` is the positive rate of the
    10 % highest-scored rows over the overall positive rate and ``capture_top_decile`` their share of all
    positives; accuracy, precision, recall and f1 count ``prob >= threshold`` as positive (precision is 0
    when nothing is); ``positive_rate`` is the share of positives in ``y_true``.
    """
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        brier_score_loss,
        f1_score,
        log_loss,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    labels, probs = _binary(y_true, prob, name, both_classes="AUC")
    cut = _threshold(threshold)
    predicted = (probs >= cut).astype(np.int64)
    actual = labels.astype(np.int64)
    top_rate, top_capture = _top_share(labels, probs)
    base_rate = float(labels.mean())
    return {
        "auc_roc": float(roc_auc_score(actual, probs)),
        "pr_auc": float(average_precision_score(actual, probs)),
        "log_loss": float(log_loss(actual, probs, labels=[0, 1])),
        "brier": float(brier_score_loss(actual, probs)),
        "ece": _ece(labels, probs, 10),
        "lift_top_decile": top_rate / base_rate,
        "capture_top_decile": top_capture,
        "accuracy": float(accuracy_score(actual, predicted)),
        "precision": float(precision_score(actual, predicted, zero_division=0)),
        "recall": float(recall_score(actual, predicted, zero_division=0)),
        "f1": float(f1_score(actual, predicted, zero_division=0)),
        "positive_rate": base_rate,
    }


def value_metrics(y_true: Any, y_pred: Any, *, name: str = "target") -> dict[str, float]:
    """How well predicted values rank customers by true value (lifetime value).

    ``spearman`` is the rank correlation (NaN when either side is constant); ``top_decile_capture`` is
    the share of the total true value held by the 10 % of rows with the highest prediction; ``gini`` is
    the normalised Gini coefficient: the Gini of the cumulative true value ordered by prediction over that
    of the perfect order (1 perfect, about 0 random; NaN when all true values are equal). True values must
    not be negative and must not sum to zero.
    """
    truth, pred = _pair(y_true, y_pred, name, "values", "predictions")
    negative = int((truth < 0).sum())
    if negative:
        raise SchemaError(_NEGATIVE_COUNT.format(name=name, count=negative, s="s" if negative > 1 else ""))
    _total_positive(truth, name, "the captured share")
    _, capture = _top_share(truth, pred)
    model = _gini(_ranked(truth, pred))
    perfect = _gini(np.sort(truth)[::-1])
    return {
        "spearman": _spearman(truth, pred),
        "top_decile_capture": capture,
        "gini": model / perfect if perfect > 0 else math.nan,
    }


def _capture_curve(y_true: Any, score: Any, points: int, *, name: str = "target") -> tuple[F64, F64]:
    """Share of rows (ranked by ``score``, highest first) against the share of the total value they hold.

    Starts at (0, 0), ends at (1, 1), at most ``points + 1`` points evenly spread over the rows.
    """
    truth, scores = _pair(y_true, score, name, "values", "predictions")
    if (truth < 0).any():
        raise SchemaError(_NEGATIVE_VALUES.format(name=name, needs="capture needs"))
    total = _total_positive(truth, name, "the captured share")
    captured = np.concatenate([[0.0], np.cumsum(_ranked(truth, scores)) / total])
    keep = np.unique(np.round(np.linspace(0, truth.size, min(points, truth.size) + 1)).astype(np.int64))
    return keep / truth.size, captured[keep]


def _gini(ordered: F64) -> float:
    """Gini of a cumulative-capture curve: twice the area between it and the diagonal."""
    n = ordered.size
    captured = np.concatenate([[0.0], np.cumsum(ordered) / ordered.sum()])
    area = float((captured[1:] + captured[:-1]).sum() / (2 * n))  # trapezoids of width 1/n
    gini = 2 * area - 1
    return 0.0 if abs(gini) < 1e-12 else gini  # no "-0.0000" from rounding for a flat model


# -- curves and tables -----------------------------------------------------------------------------------


def _bin_index(probs: F64, bins: int) -> npt.NDArray[np.int64]:
    return np.minimum((probs * bins).astype(np.int64), bins - 1)


def _ece(labels: F64, probs: F64, bins: int) -> float:
    index = _bin_index(probs, bins)
    counts = np.bincount(index, minlength=bins)
    gap = np.abs(
        np.bincount(index, weights=probs, minlength=bins) - np.bincount(index, weights=labels, minlength=bins)
    )
    # sum over bins of n_b / N * |mean prob - positive rate| = sum |sum prob - sum labels| / N
    return float(gap[counts > 0].sum() / labels.size)


def expected_calibration_error(y_true: Any, prob: Any, bins: int = 10, *, name: str = "target") -> float:
    """Expected calibration error over ``bins`` equal-width probability bins.

    The mean over bins of ``|mean probability - positive rate|``, weighted by the bin's share of rows.
    """
    labels, probs = _binary(y_true, prob, name)
    return _ece(labels, probs, _count(bins, "bins", 1))


def calibration_curve(
    y_true: Any, prob: Any, bins: int = 10, *, name: str = "target"
) -> list[dict[str, float]]:
    """One point per non-empty equal-width bin, lowest first: ``mean_prob``, ``positive_rate``, ``count``."""
    labels, probs = _binary(y_true, prob, name)
    n_bins = _count(bins, "bins", 1)
    index = _bin_index(probs, n_bins)
    counts = np.bincount(index, minlength=n_bins)
    prob_sums = np.bincount(index, weights=probs, minlength=n_bins)
    label_sums = np.bincount(index, weights=labels, minlength=n_bins)
    return [
        {
            "mean_prob": float(prob_sums[b] / counts[b]),
            "positive_rate": float(label_sums[b] / counts[b]),
            "count": float(counts[b]),
        }
        for b in range(n_bins)
        if counts[b] > 0
    ]


def lift_table(y_true: Any, score: Any, groups: int = 10, *, name: str = "target") -> list[dict[str, float]]:
    """Rows ranked by ``score`` (highest first) and cut into ``groups`` groups of (nearly) equal size.

    Per group: ``decile`` (1 = highest scores), ``rows``, the mean outcome, ``lift`` (mean outcome over
    the overall mean) and ``cumulative_capture`` (share of the total outcome in this and higher groups).
    The mean outcome is called ``positive_rate`` when ``y_true`` holds only 0 and 1, else ``mean_value``.
    Outcomes must not be negative and must not sum to zero; groups never outnumber rows.
    """
    truth, scores = _pair(y_true, score, name, "values", "scores")
    n_groups = _count(groups, "groups", 1)
    if truth.size < n_groups:
        raise SchemaError(_FEWER_ROWS_THAN_GROUPS.format(name=name, rows=truth.size, groups=n_groups))
    if (truth < 0).any():
        raise SchemaError(_NEGATIVE_VALUES.format(name=name, needs="lift and capture need"))
    total = _total_positive(truth, name, "lift")
    key = "positive_rate" if np.isin(truth, (0.0, 1.0)).all() else "mean_value"
    overall = total / truth.size
    table: list[dict[str, float]] = []
    captured = 0.0
    for i, part in enumerate(np.array_split(_ranked(truth, scores), n_groups), start=1):
        mean = float(part.mean())
        captured += float(part.sum())
        table.append(
            {
                "decile": float(i),
                "rows": float(part.size),
                key: mean,
                "lift": mean / overall,
                "cumulative_capture": captured / total,
            }
        )
    return table


def roc_points(
    y_true: Any, prob: Any, max_points: int = 200, *, name: str = "target"
) -> list[dict[str, float]]:
    """Points of the ROC curve (``fpr``, ``tpr``, ``threshold``), from (0, 0) to (1, 1).

    Thinned evenly to at most ``max_points`` points, keeping the first and the last; the first threshold
    (infinite in scikit-learn) is given as 1.0.
    """
    from sklearn.metrics import roc_curve

    labels, probs = _binary(y_true, prob, name, both_classes="the ROC curve")
    limit = _count(max_points, "max_points", 2)
    fpr, tpr, thresholds = roc_curve(labels.astype(np.int64), probs)
    thresholds = np.minimum(thresholds, 1.0)
    keep = np.arange(fpr.size)
    if fpr.size > limit:
        keep = np.unique(np.round(np.linspace(0, fpr.size - 1, limit)).astype(np.int64))
    return [{"fpr": float(fpr[i]), "tpr": float(tpr[i]), "threshold": float(thresholds[i])} for i in keep]


def confusion(
    y_true: Any,
    prob: Any,
    threshold: float = 0.5,
    labels: tuple[str, str] = ("negative", "positive"),
    *,
    name: str = "target",
) -> dict[str, object]:
    """Confusion matrix at ``threshold`` (``prob >= threshold`` is positive).

    ``{"categories": [negative, positive], "matrix": [[tn, fp], [fn, tp]]}``: rows are the actual class,
    columns the predicted one.
    """
    from sklearn.metrics import confusion_matrix

    actual, probs = _binary(y_true, prob, name)
    predicted = (probs >= _threshold(threshold)).astype(np.int64)
    matrix = confusion_matrix(actual.astype(np.int64), predicted, labels=[0, 1])
    return {
        "categories": [labels[0], labels[1]],
        "matrix": [[int(matrix[0, 0]), int(matrix[0, 1])], [int(matrix[1, 0]), int(matrix[1, 1])]],
    }
