"""Fairness: the gate's figures are fairlearn's, it passes a model of unbiased data and catches the
disparity the bias knob creates, and the model it ships after mitigation meets the policy on the gate's
test rows and on new customers.

The policy is the default one with its fairness gate judging gender alone (``gender_policy``): the bias
knob acts on gender, and on a few thousand test rows the age bands and intersections are too small to
judge without noise. The judged groups are female and male (non-binary customers are ~1.5 %: reported,
not judged; a blank gender is never a group).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.ml.conftest import Run, customers, fresh_customers, gender_policy, train_config

pytestmark = pytest.mark.ml

PARITY = 0.80  # the policy's demographic_parity_ratio floor (the 80 % rule)
JUDGED = ["female", "male"]


def _judged(frame: Any) -> Any:
    return frame[frame["gender"].isin(JUDGED)]


def _fairlearn_classification(y: Any, prob: Any, gender: Any) -> dict[str, float]:
    from fairlearn import metrics as fm

    decided = prob >= 0.5
    return {
        "demographic_parity_ratio": fm.demographic_parity_ratio(y, decided, sensitive_features=gender),
        "demographic_parity_difference": fm.demographic_parity_difference(
            y, decided, sensitive_features=gender
        ),
        "equalized_odds_difference": fm.equalized_odds_difference(y, decided, sensitive_features=gender),
        "equal_opportunity_difference": fm.equal_opportunity_difference(
            y, decided, sensitive_features=gender
        ),
    }


def _fairlearn_regression(y: Any, pred: Any, gender: Any) -> dict[str, float]:
    from fairlearn.metrics import MetricFrame
    from sklearn.metrics import mean_absolute_error, root_mean_squared_error

    frame = MetricFrame(
        metrics={"mae": mean_absolute_error, "rmse": root_mean_squared_error, "mean": lambda _, p: p.mean()},
        y_true=y,
        y_pred=pred,
        sensitive_features=gender,
    )
    low, high = frame.group_min(), frame.group_max()
    return {
        "mae_ratio": high["mae"] / low["mae"],
        "rmse_ratio": high["rmse"] / low["rmse"],
        "mean_prediction_ratio": low["mean"] / high["mean"],
        "max_group_rmse": high["rmse"],
    }


def _gate_rows(frame: Any, split: Any, head: Any) -> tuple[Any, Any]:
    """The gate's test rows of a head (labelled test rows) among the judged groups, and their labels."""
    from engage.training import head_labels

    rows = frame.iloc[split.test]
    rows = rows[np.isfinite(head_labels(rows, head))]
    judged = _judged(rows)
    return judged, head_labels(judged, head)


def _assert_fairlearn_agrees(gate: Any, candidate: Any, rows: Any, y: Any, prediction: Any) -> None:
    """The gate's gap figures of ``candidate`` equal fairlearn's on the same rows and predictions."""
    gender = rows["gender"].astype(str).to_numpy()
    if gate.task == "binary_classification":
        expected = _fairlearn_classification(y, prediction, gender)
    else:
        expected = _fairlearn_regression(y, prediction, gender)
    figures = candidate.fairness["gender"]
    assert figures.judged == JUDGED
    got = {k: figures.summary[k].value for k in expected}
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-12), gate.head


# ---- the knob off: the model of unbiased customers passes ------------------------------------------


@pytest.fixture(scope="module")
def unbiased(run: Run) -> Any:
    from engage.fairness import assess

    return assess(
        run.frame,
        run.contract,
        run.bundle,
        run.result.split,
        config=run.result.config,
        policy=gender_policy(),
        mitigate=False,
    )


def test_without_bias_every_head_passes_and_its_figures_are_fairlearns(run: Run, unbiased: Any) -> None:
    """Bias knob at 0 (the generator never reads gender): every head meets every fairness rule of the
    default policy unmitigated (dp ratio >= 0.8, equalized odds <= 0.10, MAE ratio <= 1.25, engagement
    group RMSE <= 0.15), and each figure equals fairlearn's on the same rows and predictions."""
    assert unbiased.verdict == "pass", unbiased.reason
    for name, gate in unbiased.heads.items():
        assert gate.chosen == "unmitigated", gate.reason
        rows, y = _gate_rows(run.frame, run.result.split, run.bundle.heads[name].head)
        prediction = run.bundle.predict(rows)[run.bundle.heads[name].head.output].to_numpy()
        _assert_fairlearn_agrees(gate, gate.candidate("unmitigated"), rows, y, prediction)


# ---- the knob on: the disparity is caught, and the mitigated model meets the policy -----------------

BIASED_ROWS, BIASED_SEED = 8_000, 41


@pytest.fixture(scope="module")
def biased(contract: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, Any, Any]:
    """A churn model of customers generated with the bias knob at 1, the gate's result with mitigation,
    and the model it ships, saved and loaded back (the gate's test split: 2,000 rows, ~1,000 per gender).
    About 10 s of the stage: the gate trains every mitigation candidate, two of them fairlearn reductions."""
    from engage.fairness import assess_training
    from engage.training import load_bundle, train

    policy = gender_policy()
    frame = customers(rows=BIASED_ROWS, seed=BIASED_SEED, bias=1.0)
    trained = train(frame, contract, config=train_config(BIASED_SEED), heads=["churn"], policy=policy)
    result = assess_training(trained, frame, policy=policy)
    chosen = result.chosen_bundle()  # None when the gate fails: nothing ships
    folder = Path(tmp_path_factory.mktemp("ml-fair")) / "model"
    shipped = load_bundle(chosen.save(folder)) if chosen is not None else None
    return frame, trained, result, shipped


def _fresh_biased() -> Any:
    """30,000 new customers of the biased generator, the judged groups only (~14,500 per gender)."""
    return _judged(fresh_customers(BIASED_SEED + 1_000, 1.0, 30_000))


def _parity(bundle: Any, rows: Any) -> tuple[float, float]:
    """Demographic parity ratio (fairlearn) and AUC of ``bundle``'s churn decisions on ``rows``."""
    from fairlearn.metrics import demographic_parity_ratio
    from sklearn.metrics import roc_auc_score

    from engage.training import head_labels

    y = head_labels(rows, bundle.heads["churn"].head)
    p = bundle.predict(rows)["churn_probability"].to_numpy()
    ratio = demographic_parity_ratio(y, p >= 0.5, sensitive_features=rows["gender"].astype(str))
    return float(ratio), float(roc_auc_score(y, p))


@pytest.mark.slow
def test_the_gate_catches_the_disparity_and_its_figures_are_fairlearns(biased: tuple[Any, ...]) -> None:
    """Bias knob at 1: the unmitigated model flags the two genders as churn risks at very different rates
    (dp ratio 0.69 on the gate's rows, under the 0.8 floor), so the gate does not pass it as it is; the
    figures of the unmitigated and the chosen model equal fairlearn's. Unlike the gate's test rows, 30,000
    new customers measure the disparity with a standard error of ~0.03: it is there too (0.60)."""
    frame, trained, result, shipped = biased
    gate = result.heads["churn"]
    base = gate.candidate("unmitigated")
    assert base.fairness["gender"].summary["demographic_parity_ratio"].value < PARITY
    assert gate.verdict in ("pass_after_mitigation", "fail"), gate.reason
    rows, y = _gate_rows(frame, trained.split, trained.heads["churn"].head)
    _assert_fairlearn_agrees(gate, base, rows, y, trained.bundle().predict(rows)["churn_probability"])
    if gate.chosen is not None:
        chosen = gate.candidate(gate.chosen)
        _assert_fairlearn_agrees(gate, chosen, rows, y, shipped.predict(rows)["churn_probability"])
    ratio, _ = _parity(trained.bundle(), _fresh_biased())
    assert ratio < PARITY, ratio


@pytest.mark.slow
def test_the_mitigated_model_meets_the_policy_on_the_gate_rows_and_on_new_customers(
    biased: tuple[Any, ...],
) -> None:
    """The model the gate ships (its chosen candidate, saved and loaded back as the registry would): dp
    ratio >= 0.8 on the gate's test rows and on 30,000 new customers of the same biased generator, and
    AUC >= 0.80 (the policy's churn floor) on those customers: fairness bought without losing the head.
    Measured: group offsets chosen, dp ratio 0.98 on the gate's rows, 0.86 on new customers, AUC 0.83."""
    frame, trained, result, shipped = biased
    gate = result.heads["churn"]
    assert gate.verdict == "pass_after_mitigation", gate.reason
    rows, _ = _gate_rows(frame, trained.split, trained.heads["churn"].head)
    on_gate_rows, _ = _parity(shipped, rows)
    assert on_gate_rows >= PARITY
    ratio, auc = _parity(shipped, _fresh_biased())
    assert ratio >= PARITY, f"{gate.chosen}: dp ratio {ratio:.3f} on new customers"
    assert auc >= 0.80, f"{gate.chosen}: AUC {auc:.3f} on new customers"


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="model-quality bug: the gate picks a reduction's member on the test rows it then reports "
    "(exponentiated_gradient_eo: dp ratio 0.81 there, 0.63 on new customers) and holds no candidate to "
    "the policy's accuracy rules (exponentiated_gradient_dp: AUC 0.66 there, 0.67 on new customers); "
    "one of them ships whenever the policy forbids post-processing or it is less accurate",
)
def test_every_candidate_the_gate_would_ship_meets_the_policy_on_new_customers(
    biased: tuple[Any, ...],
) -> None:
    """Every candidate the gate judges able to ship (meets every fairness rule, eligible) has dp ratio
    >= 0.8 and AUC >= 0.80 on new customers: the gate's choice is only as good as its worst such
    candidate, since a policy that forbids reading gender at scoring, or a more accurate reduction, ships
    another one."""
    from engage.model import ModelBundle

    _, trained, result, _ = biased
    base = trained.bundle()
    fresh = _fresh_biased()
    failing = {}
    for candidate in result.heads["churn"].candidates:
        c = candidate.candidate
        if not (candidate.meets_policy and candidate.eligible) or c.name == "unmitigated":
            continue
        heads = {**base.heads, **({"churn": c.model} if c.model is not None else {})}
        adjustments = {"churn": c.offsets.to_json()} if c.offsets is not None else {}
        bundle = ModelBundle(features=base.features, heads=heads, adjustments=adjustments)
        ratio, auc = _parity(bundle, fresh)
        if ratio < PARITY or auc < 0.80:
            failing[c.name] = (round(ratio, 3), round(auc, 3))
    assert not failing, failing
