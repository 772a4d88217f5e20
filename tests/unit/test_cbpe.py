"""CBPE: the label-free estimate against realised figures on seeded calibrated (and mis-calibrated) data,
exact values on small inputs, and every bad input refused by name."""

from __future__ import annotations

import functools
import json
import math

import numpy as np
import numpy.typing as npt
import pytest

from engage.errors import ConfigError, DataError, SchemaError
from engage.evaluation import classification_metrics, confusion
from engage.feedback import _cbpe
from engage.feedback._cbpe import (
    CBPE_METRICS,
    estimate_classification,
    fit_reference_calibration,
    realised_classification,
)

REPEATS = 30
ROWS = 1_000


def _chunk(seed: int, rows: int = ROWS) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Calibrated probabilities (a churn-like Beta(1, 3) mix, 25 % positive) and labels drawn from them."""
    rng = np.random.default_rng(seed)
    probs = rng.beta(1.0, 3.0, rows)
    return probs, (rng.random(rows) < probs).astype(np.int64)


def _overconfident(probs: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The same ranking, pushed towards 0 and 1: three times the logit."""
    return np.asarray(1 / (1 + np.exp(-3 * _logit(probs))), dtype=np.float64)


@functools.cache
def _realised(seed: int) -> dict[str, float]:
    probs, labels = _chunk(seed)
    return realised_classification(labels, probs)


def _logit(p: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.asarray(np.log(p / (1 - p)), dtype=np.float64)


def test_calibrated_probabilities_estimate_the_realised_figures_within_their_interval() -> None:
    errors: list[float] = []
    covered = dict.fromkeys(CBPE_METRICS, 0)
    for seed in range(REPEATS):
        probs, _ = _chunk(seed)
        estimate = estimate_classification(probs, samples=200, seed=seed)
        comparison = estimate.compare(_realised(seed))
        errors.append(abs(comparison["auc_roc"]["error"]))
        for metric in CBPE_METRICS:
            covered[metric] += bool(comparison[metric]["within"])
    # a 95 % interval: about 28 of 30; fewer than 25 would be far outside the binomial spread
    assert all(count >= 25 for count in covered.values()), covered
    assert float(np.mean(errors)) < 0.015
    assert max(errors) < 0.05


def test_mis_calibrated_probabilities_give_a_confident_wrong_estimate() -> None:
    """CBPE's assumption: the same ranking (so the same realised AUC), but probabilities pushed towards 0
    and 1 (three times the logit): the estimate is far too high and its interval misses."""
    misses = 0
    for seed in range(REPEATS):
        probs, labels = _chunk(seed)
        overconfident = _overconfident(probs)
        realised = _realised(seed)["auc_roc"]  # the ranking is the same: so is the realised AUC
        if seed == 0:
            assert realised_classification(labels, overconfident)["auc_roc"] == pytest.approx(realised)
        estimate = estimate_classification(overconfident, samples=200, seed=seed)
        assert estimate.metrics["auc_roc"] - realised > 0.1
        misses += not estimate.covers("auc_roc", realised)
    assert misses == REPEATS


def test_a_reference_calibration_repairs_mis_calibrated_probabilities() -> None:
    """NannyML's remedy: an isotonic map fitted on a labelled reference chunk of the served scores; rows are
    still ranked by the served scores, counted with the recalibrated probabilities."""
    reference_probs, reference_labels = _chunk(999, rows=5_000)
    calibration = fit_reference_calibration(reference_labels, _overconfident(reference_probs))
    assert calibration.rows == 5_000
    covered, errors = 0, []
    for seed in range(REPEATS):
        probs, _ = _chunk(seed)
        estimate = estimate_classification(
            _overconfident(probs), samples=200, seed=seed, calibration=calibration
        )
        assert estimate.reference_rows == 5_000
        realised = _realised(seed)["auc_roc"]
        errors.append(abs(estimate.metrics["auc_roc"] - realised))
        covered += estimate.covers("auc_roc", realised)
    assert covered >= 25
    assert float(np.mean(errors)) < 0.015


@pytest.mark.parametrize(
    ("labels", "probs", "message"),
    [
        ([0, 1, 2], [0.1, 0.5, 0.9], "churn reference labels must be 0/1 or booleans, found 2"),
        ([0, 1], [0.1, 0.5, 0.9], "churn reference labels and probabilities differ in length (2 vs 3 rows)"),
        (
            [1, 1, 1],
            [0.1, 0.5, 0.9],
            "churn reference labels hold a single class (1): there is nothing to calibrate against",
        ),
        ([0, 1], [0.1, math.nan], "churn probabilities hold 1 NaN value (first at row 1)"),
    ],
)
def test_bad_reference_is_refused(labels: list[int], probs: list[float], message: str) -> None:
    with pytest.raises(DataError) as caught:
        fit_reference_calibration(labels, probs)
    assert str(caught.value) == message


def test_expected_auc_is_the_probability_weighted_pair_count() -> None:
    """Expected AUC = sum over pairs of p_i (1 - p_j) [s_i > s_j] (+ half for ties, the row with itself
    included) over sum(p) * sum(1 - p): the area under the expected ROC curve, ties as one step."""
    probs = np.array([0.9, 0.7, 0.7, 0.4, 0.2, 0.2, 0.2, 0.05, 0.6, 0.3])
    weight = probs[:, None] * (1 - probs)[None, :]
    above = probs[:, None] > probs[None, :]
    tied = probs[:, None] == probs[None, :]
    expected = (weight[above].sum() + 0.5 * weight[tied].sum()) / (probs.sum() * (1 - probs).sum())
    estimate = estimate_classification(probs, threshold=0.5)
    assert estimate.metrics["auc_roc"] == pytest.approx(expected, rel=1e-12)
    # expected confusion at 0.5: positives are 0.9, 0.7, 0.7, 0.6
    assert estimate.confusion == pytest.approx({"tp": 2.9, "fp": 1.1, "fn": 1.35, "tn": 4.65})
    assert estimate.positives == pytest.approx(4.25)
    assert estimate.metrics["precision"] == pytest.approx(2.9 / 4)
    assert estimate.metrics["recall"] == pytest.approx(2.9 / 4.25)
    assert estimate.metrics["accuracy"] == pytest.approx((2.9 + 4.65) / 10)
    assert estimate.metrics["f1"] == pytest.approx(5.8 / (5.8 + 1.1 + 1.35))


def test_certain_and_uninformative_probabilities() -> None:
    certain = estimate_classification([1.0, 0.0, 1.0, 0.0, 0.0])
    assert certain.metrics == dict.fromkeys(CBPE_METRICS, 1.0)
    assert certain.intervals["auc_roc"] == (1.0, 1.0)
    flat = estimate_classification(np.full(50, 0.3))
    assert flat.metrics["auc_roc"] == pytest.approx(0.5)
    assert flat.metrics["precision"] == 0.0  # nothing predicted positive: scikit-learn's zero_division=0
    none = estimate_classification(np.zeros(20))  # every expected label negative: no ROC curve
    assert math.isnan(none.metrics["auc_roc"])
    assert all(math.isnan(bound) for bound in none.intervals["auc_roc"])
    assert none.metrics["accuracy"] == 1.0


def test_seeded_and_drawn_in_blocks_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    probs, _ = _chunk(3)
    whole = estimate_classification(probs, samples=50, seed=4)
    assert estimate_classification(probs, samples=50, seed=4) == whole
    assert estimate_classification(probs, samples=50, seed=5) != whole
    monkeypatch.setattr(_cbpe, "_BLOCK_ELEMENTS", 7 * ROWS)  # 8 blocks of at most 7 draws
    assert estimate_classification(probs, samples=50, seed=4) == whole
    assert json.loads(json.dumps(whole.to_dict()))["intervals"]["auc_roc"] == list(whole.intervals["auc_roc"])


def test_realised_figures_are_the_offline_evaluations() -> None:
    probs, labels = _chunk(1)
    realised = realised_classification(labels, probs, 0.3)
    offline = classification_metrics(labels, probs, 0.3)
    assert {m: realised[m] for m in CBPE_METRICS} == {m: offline[m] for m in CBPE_METRICS}
    matrix: list[list[int]] = confusion(labels, probs, 0.3)["matrix"]  # type: ignore[assignment]
    (tn, fp), (fn, tp) = matrix
    assert (realised["tp"], realised["fp"], realised["tn"], realised["fn"]) == (tp, fp, tn, fn)
    with pytest.raises(SchemaError, match=r"^churn labels hold a single class \(0\): AUC is undefined$"):
        realised_classification(np.zeros(10), probs[:10])


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([], "churn probabilities are empty: there is nothing to estimate"),
        ([0.2, math.nan, 0.4, math.nan], "churn probabilities hold 2 NaN values (first at row 1)"),
        ([0.2, 1.5, -0.1], "churn probabilities must lie in [0, 1], 2 do not (first: 1.5 at row 1)"),
        ([0.2, math.inf], "churn probabilities must lie in [0, 1], 1 do not (first: inf at row 1)"),
        ([[0.1, 0.2]], "churn probabilities must be one-dimensional, got shape (1, 2)"),
        (["high", "low"], "churn probabilities are not numeric"),
    ],
)
def test_bad_probabilities_are_refused(values: object, message: str) -> None:
    with pytest.raises(DataError) as caught:
        estimate_classification(values)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"threshold": 1.2}, "threshold must lie in [0, 1], got 1.2"),
        ({"threshold": math.nan}, "threshold must lie in [0, 1], got nan"),
        ({"level": 1.0}, "level must lie strictly between 0 and 1, got 1.0"),
        ({"samples": 5}, "samples must be an integer of at least 20, got 5"),
        ({"seed": -1}, "seed must be an integer of at least 0, got -1"),
    ],
)
def test_bad_settings_are_refused(settings: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        estimate_classification([0.2, 0.8], **settings)  # type: ignore[arg-type]
    assert str(caught.value) == message
