"""Fairness figures on arrays whose answers are known, groups from the contract, and clear refusals."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from engage.errors import SchemaError
from engage.fairness import (
    UNKNOWN,
    GroupOffsets,
    cell_labels,
    classification_fairness,
    protected_groups,
    regression_fairness,
)


def _classification_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # group a: 400 rows, 100 selected; group b: 400 rows, 50 selected; group c: 30 rows (too small to judge)
    groups = np.array(["a"] * 400 + ["b"] * 400 + ["c"] * 30, dtype=object)
    y = np.tile([1.0, 0.0], 415)
    prob = np.zeros(830)
    prob[:100] = 0.9
    prob[400:450] = 0.8
    prob[800:830] = 0.7
    return y, prob, groups


def test_parity_and_odds_are_the_known_values_and_match_fairlearn() -> None:
    from fairlearn.metrics import MetricFrame, selection_rate

    y, prob, groups = _classification_case()
    f = classification_fairness(y, prob, groups, attribute="g", min_group_size=100, bootstrap=50)
    assert f.judged == ["a", "b"]
    assert f.summary["demographic_parity_ratio"].value == pytest.approx(0.5)
    assert f.summary["demographic_parity_difference"].value == pytest.approx(0.125)
    rates = {g.group: g.stats["selection_rate"].value for g in f.groups}
    frame = MetricFrame(metrics=selection_rate, y_true=y, y_pred=(prob >= 0.5), sensitive_features=groups)
    assert rates == pytest.approx(frame.by_group.to_dict())
    # TPR: a selects rows 0..99 of which half are positive: 50 / 200; b: 25 / 200
    tpr = {g.group: g.stats["tpr"].value for g in f.groups}
    assert tpr["a"] == pytest.approx(0.25)
    assert tpr["b"] == pytest.approx(0.125)
    assert f.summary["equal_opportunity_difference"].value == pytest.approx(0.125)
    low, high = f.summary["demographic_parity_ratio"].low, f.summary["demographic_parity_ratio"].high
    assert 0.3 < low < 0.5 < high < 0.75
    assert any("c (30)" in n for n in f.notes)


def test_error_parity_of_a_regression() -> None:
    rng = np.random.default_rng(0)
    groups = np.array(["x"] * 2000 + ["y"] * 2000, dtype=object)
    y = rng.uniform(0, 1, 4000)
    pred = y + np.where(groups == "x", 0.1, 0.2) * rng.choice([-1.0, 1.0], 4000)
    f = regression_fairness(y, pred, groups, attribute="g", min_group_size=100, bootstrap=50)
    assert f.summary["mae_ratio"].value == pytest.approx(2.0)
    assert f.summary["max_group_rmse"].value == pytest.approx(0.2)
    assert f.summary["mae_ratio"].low <= 2.0 <= f.summary["mae_ratio"].high


def test_bad_inputs_name_the_attribute_or_group() -> None:
    y, prob, groups = _classification_case()
    with pytest.raises(SchemaError, match=r"fairness on gender: labels \(830\), predictions \(829\)"):
        classification_fairness(y, prob[:-1], groups, attribute="gender")
    bad = prob.copy()
    bad[3] = np.nan
    with pytest.raises(SchemaError, match="fairness on gender: predictions hold NaN"):
        classification_fairness(y, bad, groups, attribute="gender")
    one_class = y.copy()
    one_class[groups == "b"] = 0.0
    with pytest.raises(SchemaError, match="fairness on gender: group 'b' has a single label value"):
        classification_fairness(one_class, prob, groups, attribute="gender", min_group_size=100)


def test_groups_come_from_the_contract(clean: Any, contract: Any) -> None:
    frame = clean.frame.head(200).copy()
    frame.loc[frame.index[0], "gender"] = None
    groups = protected_groups(frame, contract)
    assert list(groups) == ["gender", "age", "gender&age"]
    assert set(groups["age"]) <= {"18-24", "25-34", "35-49", "50-64", "65-120"}
    assert groups["gender"][0] == UNKNOWN
    assert groups["gender&age"][0] == UNKNOWN
    assert groups["gender&age"][1] == f"{groups['gender'][1]} & {groups['age'][1]}"
    with pytest.raises(SchemaError, match="protected attribute 'gender' is not in the table"):
        protected_groups(frame.drop(columns=["gender"]), contract)
    with pytest.raises(SchemaError, match="country: not a protected attribute"):
        protected_groups(frame, contract, ["country"])


def test_group_offsets_shift_each_cell_and_round_trip() -> None:
    specs = [{"name": "gender", "bins": None}, {"name": "age", "bins": [18, 40, 121]}]
    offsets = GroupOffsets(attributes=specs, offsets={"female & 18-39": -1.0, "male & 40-120": 0.5})
    frame = pd.DataFrame({"gender": ["female", "male", "male", None], "age": [20, 50, 20, 30]})
    assert list(cell_labels(frame, specs)) == ["female & 18-39", "male & 40-120", "male & 18-39", UNKNOWN]
    shifted = GroupOffsets.from_json(offsets.to_json()).apply_frame(np.full(4, 0.5), frame)
    np.testing.assert_allclose(shifted, [1 / (1 + np.e), 1 / (1 + np.exp(-0.5)), 0.5, 0.5])


def test_an_attribute_without_two_judged_groups_has_no_gap_figures() -> None:
    y, prob, groups = _classification_case()
    f = classification_fairness(y, prob, groups, attribute="g", min_group_size=5000, bootstrap=10)
    assert f.judged == []
    assert all(np.isnan(v.value) for v in f.summary.values())
    assert "g: fewer than two groups large enough to compare: no gap figure" in f.notes
    r = regression_fairness(y, prob, groups, attribute="g", min_group_size=5000, bootstrap=10)
    assert np.isnan(r.summary["mae_ratio"].value)
