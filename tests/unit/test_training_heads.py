"""Heads, labels and split checks: what is trained, and the clear refusals before any fitting."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from engage.errors import ConfigError, TrainingError
from engage.features import time_split
from engage.model._heads import check_parts
from engage.training import PRODUCT_HEADS, head_labels, plan_heads


def test_every_target_of_the_contract_is_a_head(contract: Any) -> None:
    heads, notes = plan_heads(contract)
    assert [h.name for h in heads] == list(PRODUCT_HEADS)
    assert notes == []
    outputs = {h.name: h.output for h in heads}
    assert outputs == {"engagement_score": "engagement_score", "churn": "churn_probability", "ltv": "ltv"}
    assert [h.distribution.value for h in heads] == ["unit_interval", "continuous", "heavy_tailed"]


def test_a_churn_only_contract_skips_the_other_heads_with_a_note(telco_contract: Any) -> None:
    heads, notes = plan_heads(telco_contract)
    assert [h.name for h in heads] == ["churn"]
    assert notes == [
        "head engagement_score skipped: contract telco_customers defines no 'engagement_score' target",
        "head ltv skipped: contract telco_customers defines no 'ltv' target",
    ]


def test_asking_for_an_unknown_head_names_it(contract: Any) -> None:
    heads, notes = plan_heads(contract, ["ltv"])
    assert [h.name for h in heads] == ["ltv"]
    assert "head churn skipped: not asked for (--head)" in notes
    with pytest.raises(ConfigError, match="--head: revenue not defined by contract customers"):
        plan_heads(contract, ["revenue"])


def test_a_contract_without_targets_has_nothing_to_train(contract: Any) -> None:
    empty = contract.model_copy(update={"targets": {}})
    with pytest.raises(TrainingError, match="defines no targets: there is nothing to train"):
        plan_heads(empty)


def test_labels_follow_the_positive_value_and_keep_missing(clean: Any, contract: Any) -> None:
    heads = {h.name: h for h in plan_heads(contract)[0]}
    frame = clean.frame.head(6).copy()
    frame["churned"] = pd.array([True, False, None, True, False, False], dtype="boolean")
    y = head_labels(frame, heads["churn"])
    np.testing.assert_array_equal(y, [1.0, 0.0, np.nan, 1.0, 0.0, 0.0])
    frame["ltv"] = [1.0, np.nan, 3.0, 0.0, 2.5, 9.0]
    assert np.isnan(head_labels(frame, heads["ltv"])).sum() == 1


def test_a_target_absent_from_the_table_names_the_head(clean: Any, contract: Any) -> None:
    heads = {h.name: h for h in plan_heads(contract)[0]}
    with pytest.raises(TrainingError, match="head ltv: its target column 'ltv' is not in the table") as e:
        head_labels(clean.frame.drop(columns=["ltv"]), heads["ltv"])
    assert e.value.head == "ltv"
    text = clean.frame.head(3).assign(ltv=["a", "b", "c"])
    with pytest.raises(TrainingError, match="head ltv: target column 'ltv' is not numeric"):
        head_labels(text, heads["ltv"])


def test_a_single_class_or_too_few_rows_names_the_head(clean: Any, contract: Any) -> None:
    churn = next(h for h in plan_heads(contract)[0] if h.name == "churn")
    split = time_split(clean.frame, contract)
    parts = {"train": split.train, "validation": split.valid, "test": split.test}
    y = np.zeros(len(clean.frame))
    with pytest.raises(
        TrainingError, match=r"head churn: the label 'churned' has a single class \(not True\)"
    ):
        check_parts(churn, y, parts)
    y[split.train[:50]] = 1.0  # positives only in training
    with pytest.raises(TrainingError, match="head churn: the validation part holds a single class"):
        check_parts(churn, y, parts)
    few = {k: v[:10] for k, v in parts.items()}
    with pytest.raises(
        TrainingError,
        match=r"head churn: too few labelled rows for the split \(train 10, validation 10, test 10; at least 100/20/20 needed\)",
    ):
        check_parts(churn, y, few)


class _Powered:
    """A classifier answering ``x ** power`` where the true rate is ``x`` (too low for power > 1)."""

    def __init__(self, power: int) -> None:
        self.power = power

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = X["x"].to_numpy() ** self.power
        return np.column_stack([1 - p, p])


@pytest.mark.parametrize(("power", "kept"), [(3, True), (1, False)])
def test_calibration_is_kept_only_when_it_helps_out_of_sample(contract: Any, power: int, kept: bool) -> None:
    from engage.model._learners import calibrate
    from engage.training import HeadModel

    churn = next(h for h in plan_heads(contract)[0] if h.name == "churn")
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"x": rng.uniform(0, 1, 4000)})
    y = (rng.uniform(0, 1, 4000) < X["x"].to_numpy()).astype(float)
    model = HeadModel(churn, "sklearn", _Powered(power), "log_loss")
    note = calibrate(model, X, y)
    assert (model.calibrator is not None) is kept, note
    if kept:
        assert note.startswith("head churn (sklearn): isotonic calibration on 4,000 held-out rows")
        from engage.evaluation import expected_calibration_error

        assert (
            expected_calibration_error(y, model.predict(X))
            < 0.03
            < expected_calibration_error(y, model.raw(X))
        )
    else:
        assert "kept the raw probabilities" in note


def test_from_margin_needs_an_xgboost_head(contract: Any) -> None:
    from engage.training import HeadModel

    churn = next(h for h in plan_heads(contract)[0] if h.name == "churn")
    model = HeadModel(churn, "sklearn", _Powered(1), "log_loss")
    with pytest.raises(ConfigError, match=r"^head churn: from_margin needs an xgboost head, not sklearn$"):
        model.from_margin(np.zeros(3))
