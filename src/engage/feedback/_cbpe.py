"""Label-free estimate of the churn head's performance: confidence-based performance estimation (CBPE).

Before the outcomes of a chunk of scored customers arrive (churn is known 90 days later), the churn
head's own probabilities say how well it should be doing, *if they are calibrated*: a customer scored
``p`` churns with probability ``p``. Then every expected entry of the confusion matrix at a threshold is a
sum of probabilities (``E[TP]`` is the sum of ``p`` over the rows predicted positive, ``E[FP]`` the sum of
``1 - p`` over the same rows, and so on), and the expected ROC curve is traced by the cumulative sums of
``p`` (true positives) and ``1 - p`` (false positives) down the rows ordered by score; its area is the
estimated ROC AUC. This is the method NannyML publishes as "Confidence-based Performance Estimation"
(https://nannyml.readthedocs.io/en/stable/how_it_works/performance_estimation.html), implemented here
on numpy: the ``nannyml`` package does not install beside our pins (see docs/cbpe.md).

A head's probabilities are seldom exactly calibrated on new data. NannyML's CBPE therefore first calibrates
the scores on a labelled *reference* set (for Engage: the test split, or any chunk whose labels have
come): :func:`fit_reference_calibration` fits that isotonic map, and ``estimate_classification(...,
calibration=...)`` ranks and thresholds rows by the served scores but counts them with the recalibrated
probabilities.

The interval is a parametric bootstrap: labels are drawn ``y ~ Bernoulli(p)`` ``samples`` times (seeded)
and the realised figures of each draw computed; the central ``level`` share of them is where the realised
figure lands when the probabilities are calibrated. It is the sampling error of a chunk of this size,
and nothing more: a model whose probabilities are off (poor calibration, or concept drift -- the link
between inputs and outcome changed) gets a confident, wrong estimate. CBPE assumes calibration and no
concept drift; the realised figures (:func:`realised_classification`) are the check once labels come.

The regression heads (engagement score, lifetime value) have no such estimate: see
:data:`REGRESSION_HEADS_NOTE`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from engage.errors import ConfigError, DataError

__all__ = [
    "CBPE_METRICS",
    "REGRESSION_HEADS_NOTE",
    "CBPEEstimate",
    "ReferenceCalibration",
    "estimate_classification",
    "fit_reference_calibration",
    "realised_classification",
]

F64 = npt.NDArray[np.float64]

#: the figures estimated, named as :func:`engage.evaluation.classification_metrics` names them
CBPE_METRICS = ("auc_roc", "accuracy", "precision", "recall", "f1")
_COUNTS = ("tp", "fp", "tn", "fn")

#: at most this many simulated labels in memory at once (8 bytes each): draws are made in blocks
_BLOCK_ELEMENTS = 2_000_000

REGRESSION_HEADS_NOTE = (
    "The engagement-score and lifetime-value heads have no label-free performance estimate here. A "
    "regression prediction is an expected value, not a distribution: it says nothing of its own error, so "
    "RMSE, MAE or R2 cannot be derived from it the way a calibrated probability gives expected confusion "
    "counts. Until outcomes arrive only shift can be watched: of the inputs (the drift detector) and of "
    "the predictions against the reference. An error estimate would need a second model of the error "
    "trained on labelled reference data (NannyML's Direct Loss Estimation), which Engage does not implement."
)

# -- error messages (formatted where they are raised; the tests match on them) ---------------------------

_NOT_NUMERIC = "{name} probabilities are not numeric"
_NOT_ONE_DIMENSIONAL = "{name} probabilities must be one-dimensional, got shape {shape}"
_EMPTY = "{name} probabilities are empty: there is nothing to estimate"
_NAN = "{name} probabilities hold {count:,} NaN value{s} (first at row {row})"
_OUTSIDE = "{name} probabilities must lie in [0, 1], {count:,} do not (first: {value} at row {row})"
_BAD_THRESHOLD = "threshold must lie in [0, 1], got {value!r}"
_BAD_LEVEL = "level must lie strictly between 0 and 1, got {value!r}"
_BAD_SAMPLES = "samples must be an integer of at least {minimum}, got {value!r}"
_BAD_SEED = "seed must be an integer of at least 0, got {value!r}"

_NOT_LABELS = "{name} reference labels must be 0/1 or booleans, found {value}"
_LENGTHS = "{name} reference labels and probabilities differ in length ({labels:,} vs {probs:,} rows)"
_ONE_CLASS = "{name} reference labels hold a single class ({value}): there is nothing to calibrate against"

_MIN_SAMPLES = 20


@dataclass(frozen=True)
class ReferenceCalibration:
    """A non-decreasing map from served scores to the positive rate seen on labelled reference data.

    The isotonic regression of the reference labels on the scores, kept as its breakpoints (``scores``
    ascending, ``rates``) and applied by linear interpolation, clipped at both ends; ``rows`` is the size
    of the reference set.
    """

    scores: tuple[float, ...]
    rates: tuple[float, ...]
    rows: int

    def apply(self, probabilities: Any, *, name: str = "churn") -> F64:
        """The recalibrated probabilities of ``probabilities`` (checked as in :func:`estimate_classification`)."""
        probs = _probabilities(probabilities, name)
        return np.asarray(np.interp(probs, self.scores, self.rates), dtype=np.float64)


def fit_reference_calibration(
    y_true: Any, probabilities: Any, *, name: str = "churn"
) -> ReferenceCalibration:
    """Fit :class:`ReferenceCalibration` on a labelled reference set (scores as the head served them).

    :class:`~engage.errors.DataError` for unusable probabilities (as :func:`estimate_classification`),
    labels other than 0/1, lengths that differ, or a single class.
    """
    from sklearn.isotonic import IsotonicRegression

    probs = _probabilities(probabilities, name)
    try:
        labels = np.asarray(y_true, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(_NOT_LABELS.format(name=name, value="non-numeric values")) from None
    if labels.shape != probs.shape:
        raise DataError(_LENGTHS.format(name=name, labels=labels.size, probs=probs.size))
    odd = labels[(labels != 0) & (labels != 1)]
    if odd.size:
        raise DataError(_NOT_LABELS.format(name=name, value=f"{odd[0]:g}"))
    if np.unique(labels).size < 2:
        raise DataError(_ONE_CLASS.format(name=name, value=f"{labels[0]:g}"))
    fitted = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(probs, labels)
    return ReferenceCalibration(
        scores=tuple(float(v) for v in fitted.X_thresholds_),
        rates=tuple(float(v) for v in fitted.y_thresholds_),
        rows=int(probs.size),
    )


@dataclass(frozen=True)
class CBPEEstimate:
    """Expected classification figures of one chunk of probabilities, with their sampling intervals.

    ``metrics`` maps each of :data:`CBPE_METRICS` to its CBPE estimate; ``intervals`` to the central
    ``level`` share of the realised figure over ``samples`` label draws (NaN bounds when no draw defines
    it, e.g. ROC AUC when every probability is 0); ``standard_errors`` to the standard deviation over the
    draws. ``confusion`` holds the expected counts ``tp``, ``fp``, ``tn``, ``fn`` at ``threshold``
    (``probability >= threshold`` is positive); ``positives`` is the expected number of positives (the sum
    of the probabilities); ``reference_rows`` the size of the labelled reference set the probabilities
    were recalibrated on (None: used as served).
    """

    rows: int
    threshold: float
    metrics: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    standard_errors: dict[str, float]
    confusion: dict[str, float]
    positives: float
    level: float
    samples: int
    seed: int
    reference_rows: int | None = None

    def covers(self, metric: str, value: float) -> bool:
        """Whether ``value`` (a realised figure) lies inside the interval of ``metric``."""
        low, high = self.intervals[metric]
        return bool(low <= value <= high)

    def compare(self, realised: Mapping[str, float]) -> dict[str, dict[str, float | bool]]:
        """Estimate beside realised figure for each metric in both: estimated, low, high, realised,
        error (estimated - realised) and whether the interval covers the realised figure."""
        return {
            metric: {
                "estimated": self.metrics[metric],
                "low": self.intervals[metric][0],
                "high": self.intervals[metric][1],
                "realised": float(realised[metric]),
                "error": self.metrics[metric] - float(realised[metric]),
                "within": self.covers(metric, float(realised[metric])),
            }
            for metric in CBPE_METRICS
            if metric in realised
        }

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (intervals as ``[low, high]`` lists)."""
        return {
            "method": "cbpe",
            "rows": self.rows,
            "threshold": self.threshold,
            "metrics": dict(self.metrics),
            "intervals": {k: [low, high] for k, (low, high) in self.intervals.items()},
            "standard_errors": dict(self.standard_errors),
            "confusion": dict(self.confusion),
            "positives": self.positives,
            "level": self.level,
            "samples": self.samples,
            "seed": self.seed,
            "reference_rows": self.reference_rows,
        }


# -- input checks ----------------------------------------------------------------------------------------


def _probabilities(values: Any, name: str) -> F64:
    """``values`` as a 1-D float array of at least one probability, each in [0, 1]; DataError otherwise."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(_NOT_NUMERIC.format(name=name)) from None
    if array.ndim != 1:
        raise DataError(_NOT_ONE_DIMENSIONAL.format(name=name, shape=array.shape))
    if array.size == 0:
        raise DataError(_EMPTY.format(name=name))
    nan = np.flatnonzero(np.isnan(array))
    if nan.size:
        raise DataError(_NAN.format(name=name, count=nan.size, s="s" if nan.size > 1 else "", row=nan[0]))
    outside = np.flatnonzero((array < 0) | (array > 1))
    if outside.size:
        first = int(outside[0])
        raise DataError(_OUTSIDE.format(name=name, count=outside.size, value=f"{array[first]:g}", row=first))
    return array


def _settings(threshold: float, level: float, samples: int, seed: int) -> None:
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 <= threshold <= 1:
        raise ConfigError(_BAD_THRESHOLD.format(value=threshold))
    if isinstance(level, bool) or not isinstance(level, int | float) or not 0 < level < 1:
        raise ConfigError(_BAD_LEVEL.format(value=level))
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < _MIN_SAMPLES:
        raise ConfigError(_BAD_SAMPLES.format(minimum=_MIN_SAMPLES, value=samples))
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(_BAD_SEED.format(value=seed))


# -- the estimate ----------------------------------------------------------------------------------------


def _ratio(numerator: F64, denominator: F64) -> F64:
    """``numerator / denominator``, 0 where the denominator is 0 (scikit-learn's ``zero_division=0``)."""
    safe = np.where(denominator > 0, denominator, 1.0)
    return np.asarray(np.where(denominator > 0, numerator / safe, 0.0), dtype=np.float64)


def _threshold_figures(tp: F64, fp: F64, tn: F64, fn: F64) -> dict[str, F64]:
    """Accuracy, precision, recall and F1 from (expected or drawn) confusion counts."""
    return {
        "accuracy": (tp + tn) / (tp + fp + tn + fn),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
    }


def _expected_auc(scores: F64, probs: F64) -> float:
    """Area under the expected ROC curve: rows ordered by score (ties as one step), expected true
    positives ``cumsum(p)`` over their total, expected false positives ``cumsum(1 - p)`` over theirs."""
    positives = float(probs.sum())
    negatives = float(probs.size - positives)
    if positives <= 0 or negatives <= 0:
        return math.nan  # every expected label is of one class: the ROC curve is undefined
    levels, inverse = np.unique(-scores, return_inverse=True)  # ascending -score: highest first
    tp = np.concatenate([[0.0], np.cumsum(np.bincount(inverse, weights=probs, minlength=levels.size))])
    fp = np.concatenate([[0.0], np.cumsum(np.bincount(inverse, weights=1 - probs, minlength=levels.size))])
    tpr, fpr = tp / positives, fp / negatives
    return float(np.sum((fpr[1:] - fpr[:-1]) * (tpr[1:] + tpr[:-1]) / 2))


def _average_ranks(values: F64) -> F64:
    """Ranks 1..n of ``values``, ascending, each tie given the mean rank of its rows."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return np.asarray((starts + (counts + 1) / 2)[inverse], dtype=np.float64)


def _draws(
    scores: F64, probs: F64, predicted: npt.NDArray[np.bool_], samples: int, seed: int
) -> dict[str, F64]:
    """Realised figures of ``samples`` label draws ``y ~ Bernoulli(p)``; AUC NaN for one-class draws."""
    n = probs.size
    ranks = _average_ranks(scores)
    chosen = predicted.astype(np.float64)
    n_predicted = float(chosen.sum())
    rng = np.random.default_rng(seed)
    block = max(1, _BLOCK_ELEMENTS // n)
    parts: list[dict[str, F64]] = []
    for start in range(0, samples, block):
        labels = (rng.random((min(block, samples - start), n)) < probs).astype(np.float64)
        pos = labels.sum(axis=1)
        neg = n - pos
        tp = labels @ chosen
        fp, fn = n_predicted - tp, pos - tp
        figures = _threshold_figures(tp, fp, n - n_predicted - fn, fn)
        defined = (pos > 0) & (neg > 0)
        # Mann-Whitney: the AUC is the rank sum of the positives less its minimum, over the pairs
        rank_sum = labels @ ranks
        pairs = np.where(defined, pos * neg, 1.0)
        figures["auc_roc"] = np.where(defined, (rank_sum - pos * (pos + 1) / 2) / pairs, np.nan)
        parts.append(figures)
    return {metric: np.concatenate([p[metric] for p in parts]) for metric in CBPE_METRICS}


def _spread(values: F64, level: float) -> tuple[tuple[float, float], float]:
    """Central ``level`` interval and standard deviation of the defined (non-NaN) values."""
    defined = values[~np.isnan(values)]
    if defined.size < 2:
        return (math.nan, math.nan), math.nan
    low, high = np.quantile(defined, [(1 - level) / 2, (1 + level) / 2])
    return (float(low), float(high)), float(defined.std(ddof=1))


def estimate_classification(
    probabilities: Any,
    *,
    threshold: float = 0.5,
    level: float = 0.95,
    samples: int = 400,
    seed: int = 0,
    calibration: ReferenceCalibration | None = None,
    name: str = "churn",
) -> CBPEEstimate:
    """CBPE estimate of ROC AUC, accuracy, precision, recall and F1 of one chunk, with intervals.

    ``probabilities`` are the head's calibrated probabilities of the positive class (one per row);
    ``probability >= threshold`` counts as positive, as in :func:`engage.evaluation.classification_metrics`.
    :class:`~engage.errors.DataError` when they are not numeric, not one-dimensional, empty, NaN or
    outside [0, 1]; :class:`~engage.errors.ConfigError` for a threshold outside [0, 1], a level outside
    (0, 1), fewer than 20 samples or a negative seed. ``name`` names the head in messages.

    With ``calibration`` (:func:`fit_reference_calibration`), rows are still ranked and thresholded by
    the served ``probabilities`` -- that is what the realised figures will judge -- but their chance of
    being positive is the recalibrated probability.
    """
    scores = _probabilities(probabilities, name)
    _settings(threshold, level, samples, seed)
    probs = scores if calibration is None else calibration.apply(scores, name=name)
    predicted = scores >= threshold
    tp = float(probs[predicted].sum())
    fp = float((1 - probs[predicted]).sum())
    fn = float(probs[~predicted].sum())
    tn = float((1 - probs[~predicted]).sum())
    point = _threshold_figures(*(np.array([v]) for v in (tp, fp, tn, fn)))
    metrics = {"auc_roc": _expected_auc(scores, probs)} | {k: float(v[0]) for k, v in point.items()}
    drawn = _draws(scores, probs, predicted, samples, seed)
    spreads = {metric: _spread(drawn[metric], float(level)) for metric in CBPE_METRICS}
    return CBPEEstimate(
        rows=int(probs.size),
        threshold=float(threshold),
        metrics={metric: metrics[metric] for metric in CBPE_METRICS},
        intervals={metric: spreads[metric][0] for metric in CBPE_METRICS},
        standard_errors={metric: spreads[metric][1] for metric in CBPE_METRICS},
        confusion={"tp": tp, "fp": fp, "tn": tn, "fn": fn},
        positives=float(probs.sum()),
        level=float(level),
        samples=samples,
        seed=seed,
        reference_rows=None if calibration is None else calibration.rows,
    )


def realised_classification(
    y_true: Any, probabilities: Any, threshold: float = 0.5, *, name: str = "churn"
) -> dict[str, float]:
    """The figures of :func:`estimate_classification` once labels are known, and the confusion counts.

    Computed by :mod:`engage.evaluation` (the same figures as the offline evaluation); its
    :class:`~engage.errors.SchemaError` names any unusable input (lengths differ, labels not 0/1, a single
    class: ROC AUC undefined) and :class:`~engage.errors.ConfigError` a threshold outside [0, 1].
    """
    from engage.evaluation import classification_metrics, confusion

    figures = classification_metrics(y_true, probabilities, threshold, name=name)
    matrix = cast(list[list[int]], confusion(y_true, probabilities, threshold, name=name)["matrix"])
    (tn, fp), (fn, tp) = matrix
    counts = {"tp": float(tp), "fp": float(fp), "tn": float(tn), "fn": float(fn)}
    return {metric: figures[metric] for metric in CBPE_METRICS} | counts
