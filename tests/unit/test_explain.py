"""engage.explain without a trained model: the method registry and licence gate, the encoder, reason text."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engage.encoding import MISSING_FEATURE, Encoder, describe
from engage.errors import ExplainError, SchemaError
from engage.explain import (
    LICENCE_CLEAN,
    METHODS,
    ExplainSettings,
    available_methods,
    check_method,
    describe_value,
    display_name,
    reason_codes,
)
from engage.features import FeatureSet

FEATURES = FeatureSet(
    numeric=["tickets", "spend"],
    categorical={"plan": ["free", "basic", "premium"], "opt_in": ["False", "True"]},
)


def test_licence_clean_set_is_every_osi_method_and_no_alibi_one() -> None:
    assert set(LICENCE_CLEAN) == {"tree_shap", "lime", "counterfactual", "reasons"}
    assert {m.library for n, m in METHODS.items() if n not in LICENCE_CLEAN} == {"alibi"}
    clean = ExplainSettings(licence_clean=True)
    assert set(available_methods(clean)) <= set(LICENCE_CLEAN)
    assert "anchors" in available_methods(ExplainSettings())  # installed here through the alibi extra


def test_licence_clean_setting_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENGAGE_EXPLAIN_LICENCE_CLEAN", "true")
    with pytest.raises(ExplainError, match=r"anchors uses alibi \(BSL-1.1, not an OSI licence\)"):
        check_method("anchors", ExplainSettings(), learner="xgboost", head="churn")
    assert check_method("lime", ExplainSettings(), learner="xgboost", head="churn").name == "lime"


@pytest.mark.parametrize(
    ("method", "learner", "message"),
    [
        ("shapley", "xgboost", r"unknown explanation method 'shapley'; known: tree_shap, kernel_shap"),
        (
            "tree_shap",
            "sklearn",
            r"tree_shap reads xgboost trees; head churn is a sklearn model: use kernel_shap or lime",
        ),
    ],
)
def test_a_method_that_cannot_serve_is_refused_with_the_reason(
    method: str, learner: str, message: str
) -> None:
    with pytest.raises(ExplainError, match=message):
        check_method(method, ExplainSettings(), learner=learner, head="churn")


def test_encoder_round_trips_rows_and_marks_empty_and_unseen_levels_missing() -> None:
    frame = pd.DataFrame(
        {
            "tickets": [3, None, 0],
            "spend": [12.5, 0.0, None],
            "plan": ["basic", "enterprise", None],  # enterprise: never seen in training
            "opt_in": [True, False, None],
            "ignored": ["x", "y", "z"],
        }
    )
    enc = Encoder.for_model(FEATURES)
    X = enc.frame(frame)
    assert X.shape == (3, 4)
    np.testing.assert_array_equal(X[:, 2], [1.0, np.nan, np.nan])
    np.testing.assert_array_equal(X[:, 3], [1.0, 0.0, np.nan])
    assert enc.values(X)[0] == {"tickets": 3, "spend": 12.5, "plan": "basic", "opt_in": "True"}
    decoded = enc.decode(X)
    assert decoded["plan"].isna().tolist() == [False, True, True]
    assert decoded["plan"].iloc[0] == "basic"
    assert list(decoded["plan"].cat.categories) == ["free", "basic", "premium"]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), st.integers(0, 50)),
            st.sampled_from(["free", "basic", "premium", None, "gold"]),
            st.sampled_from([True, False, None]),
        ),
        min_size=1,
        max_size=90,  # crosses the pure-Python / pandas boundary at 64 rows
    )
)
def test_the_small_and_large_encoding_paths_agree_with_the_design_matrix(rows: list[Any]) -> None:
    from engage.features import design_matrix

    frame = pd.DataFrame(rows, columns=["tickets", "plan", "opt_in"]).assign(spend=1.0)
    enc = Encoder.for_model(FEATURES)
    X = enc.frame(frame)
    expected = design_matrix(frame, FEATURES)
    got = enc.decode(X)
    for name in FEATURES.categorical:
        assert (
            got[name].astype(object).where(got[name].notna(), None).tolist()
            == expected[name].astype(object).where(expected[name].notna(), None).tolist()
        )
    np.testing.assert_array_equal(got["tickets"].to_numpy(), expected["tickets"].to_numpy())


def test_missing_feature_and_non_numeric_value_are_schema_errors() -> None:
    enc = Encoder.for_model(FEATURES)
    with pytest.raises(SchemaError, match=re.escape(f"field 'spend': {MISSING_FEATURE} (and 2 more")):
        enc.frame(pd.DataFrame({"tickets": [1]}))
    bad = pd.DataFrame({"tickets": ["three"], "spend": [1.0], "plan": ["free"], "opt_in": [True]})
    with pytest.raises(
        SchemaError, match=re.escape(f"row 0, field 'tickets': expected a number, got {describe('three')}")
    ):
        enc.frame(bad)


def test_values_are_described_in_their_units(contract: Any) -> None:
    cols = contract.columns
    assert describe_value(cols["support_tickets_90d"], 3) == "3 tickets"
    assert describe_value(cols["support_tickets_90d"], 1) == "1 ticket"
    assert describe_value(cols["total_spend_90d"], 1234.5) == "1,234.50"
    assert describe_value(cols["discount_share"], 0.4) == "40%"
    assert describe_value(cols["email_opt_in"], "True") == "yes"
    assert describe_value(cols["avg_order_value"], None) == "not recorded"
    assert describe_value(cols["plan"], "free") == "free"


def test_reason_codes_name_the_largest_attributions_in_plain_language(contract: Any) -> None:
    names = ["sessions_90d", "support_tickets_90d", "plan", "tenure_days"]
    values = np.array([-0.2, 0.7, 0.05, 0.0])
    row = {"sessions_90d": 45, "support_tickets_90d": 3, "plan": "free", "tenure_days": 100}
    reasons = reason_codes(contract, "churn", names, values, row, top=5)
    assert [r["feature"] for r in reasons] == ["support_tickets_90d", "sessions_90d", "plan"]  # zero skipped
    assert reasons[0]["text"] == "Support contacts in the last 90 days (3 tickets) raised the churn risk."
    assert reasons[1]["text"] == "Sessions in the last 90 days (45 sessions) lowered the churn risk."
    assert display_name(contract, "ltv") == "predicted lifetime value"


def test_the_customer_contract_holds_immutable_features_out_of_counterfactuals(contract: Any) -> None:
    from pydantic import ValidationError

    from engage.contract import Column

    fixed = {n for n, c in contract.columns.items() if not c.mutable}
    assert fixed == {"country", "acquisition_channel", "tenure_days"}
    with pytest.raises(ValidationError, match="mutable applies to feature columns only"):
        Column(type="integer", role="protected", description="Age", mutable=False)
