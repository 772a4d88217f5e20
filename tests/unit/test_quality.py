"""Schema checks and contract rules: clean data passes, each spoiled thing is caught by its check."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from engage.contract import parse_contract
from engage.quality import association, prohibited_matches, score_defects, validate
from engage.synthetic import DEFECT_CHECKS
from tests.conftest import AS_OF, CHECKED_AT
from tests.unit.test_contract import BASE, SOURCE


def _failed(result: Any) -> set[str]:
    return {r.id for r in result.report.results if not r.passed}


def test_generated_table_satisfies_its_contract(clean: Any, contract: Any) -> None:
    result = validate(clean.frame, contract, now=CHECKED_AT)
    assert _failed(result) == set()
    assert result.report.passed
    assert len([r for r in result.report.results if not r.id.startswith("schema.")]) == 16
    assert not result.failing_rows().any()


def test_every_injected_defect_is_found_and_nothing_else(spoiled: Any, contract: Any) -> None:
    result = validate(spoiled.frame, contract, now=CHECKED_AT)
    scores = score_defects(result, spoiled.defects, {k.value: v for k, v in DEFECT_CHECKS.items()})
    assert len(scores) == len(DEFECT_CHECKS)
    for s in scores:
        assert s.injected > 0, s.kind
        assert s.recall == 1.0, s
        assert s.precision == 1.0, s
    assert not result.report.passed
    clean_rows = np.ones(len(spoiled.frame), dtype=bool)
    clean_rows[spoiled.defects["row"].to_numpy()] = False
    assert not result.failing_rows()[clean_rows].any()  # clean rows are never flagged


def test_staleness_and_future_snapshots_fail_freshness(clean: Any, contract: Any) -> None:
    stale = validate(clean.frame, contract, now=AS_OF + timedelta(hours=25))
    assert _failed(stale) == {"BR-010"}
    assert stale.report.result("BR-010").observed == pytest.approx(25.0)
    future = validate(clean.frame, contract, now=AS_OF - timedelta(hours=3))
    assert "in the future" in future.report.result("BR-010").message


def test_row_checks_report_masked_sample_keys(clean: Any, contract: Any) -> None:
    frame = clean.frame.copy()
    frame.loc[[3, 7], "email"] = "not-an-email"
    result = validate(frame, contract, now=CHECKED_AT)
    br004 = result.report.result("BR-004")
    assert (br004.passed, br004.failing_rows, br004.severity.value) == (False, 2, "warning")
    assert br004.sample_keys == [frame.loc[3, "customer_id"], frame.loc[7, "customer_id"]]
    assert result.report.passed  # a warning does not fail the gate
    assert "not-an-email" not in result.report.model_dump_json()


def test_type_and_category_problems_are_schema_failures(clean: Any, contract: Any) -> None:
    frame = clean.frame.copy()
    frame["sessions_30d"] = frame["sessions_30d"].astype("object")
    frame.loc[0, "sessions_30d"] = "many"
    frame["device_type"] = frame["device_type"].astype("object")
    frame.loc[1, "device_type"] = "smart_fridge"
    result = validate(frame, contract, now=CHECKED_AT)
    assert {"schema.sessions_30d.type", "schema.device_type.categories"} <= _failed(result)
    assert "schema.sessions_30d.not_null" not in _failed(result)  # an unreadable value is not also "empty"


def _contract_with(mutate: Any) -> Any:
    import copy

    import yaml

    data = copy.deepcopy(BASE)
    mutate(data)
    return parse_contract(yaml.safe_dump(data, sort_keys=False), source="variant.yml")


def test_a_prohibited_attribute_among_features_fails(clean: Any) -> None:
    def add(d: dict[str, Any]) -> None:
        d["columns"]["religion_code"] = {"type": "integer", "role": "feature", "description": "x"}

    variant = _contract_with(add)
    frame = clean.frame.assign(religion_code=np.arange(len(clean.frame)) % 4)
    result = validate(frame, variant, now=CHECKED_AT)
    ml005 = result.report.result("ML-005")
    assert not ml005.passed
    assert ml005.columns == ["religion_code"]
    assert not result.report.passed


@pytest.mark.parametrize(
    ("feature", "hit"),
    [
        ("religion", "religion"),
        ("SexualOrientation", "sexual_orientation"),
        ("health_score", "health"),
        ("trace_count", None),
        ("racetrack_visits", None),
    ],
)
def test_prohibited_names_match_by_token(feature: str, hit: str | None) -> None:
    prohibited = ["race", "religion", "sexual_orientation", "health"]
    assert prohibited_matches([feature], prohibited).get(feature) == hit


def test_a_proxy_of_a_protected_attribute_is_flagged(clean: Any) -> None:
    def add(d: dict[str, Any]) -> None:
        d["columns"]["title"] = {
            "type": "category",
            "role": "feature",
            "nullable": True,
            "description": "Mr / Ms",
        }

    variant = _contract_with(add)
    title = clean.frame["gender"].astype("object").map({"female": "Ms", "male": "Mr", "non_binary": "Mx"})
    result = validate(clean.frame.assign(title=title), variant, now=CHECKED_AT)
    ml006 = result.report.result("ML-006")
    assert not ml006.passed
    assert ml006.columns == ["title"]
    assert ml006.details["title~gender"] > 0.95
    assert "cramers_v" in ml006.message
    assert result.report.passed  # ML-006 is a warning: flagged, reported, not fatal


def test_a_feature_known_after_the_label_window_is_leakage(clean: Any) -> None:
    variant = _contract_with(lambda d: d["columns"]["nps_score"].update(timing="after_label_window"))
    result = validate(clean.frame, variant, now=CHECKED_AT)
    assert _failed(result) == {"ML-004"}
    frame = clean.frame.copy()
    frame.loc[5, "last_activity_date"] = pd.Timestamp(AS_OF.date()) + pd.Timedelta(days=2)
    leaked = validate(frame, variant.model_copy(), now=CHECKED_AT)
    assert leaked.masks["ML-004"][5]


def test_label_balance_null_rate_and_zero_variance(clean: Any, contract: Any) -> None:
    frame = clean.frame.copy()
    frame["churned"] = pd.array([True] * len(frame), dtype="boolean")
    frame["plan"] = pd.Categorical(["basic"] * len(frame))
    frame["email_opt_in"] = pd.array([pd.NA] * len(frame), dtype="boolean")
    frame.loc[: len(frame) // 10, "total_spend_90d"] = np.nan
    result = validate(frame, contract, now=CHECKED_AT)
    assert {"ML-002", "ML-001", "ML-003"} <= _failed(result)
    assert result.report.result("ML-002").observed == 1.0
    assert "total_spend_90d" in result.report.result("ML-001").columns
    assert set(result.report.result("ML-003").columns) == {"plan", "email_opt_in"}


def test_association_measures_fit_the_types() -> None:
    rng = np.random.default_rng(0)
    x = pd.Series(rng.normal(size=2000))
    noise = pd.Series(rng.normal(size=2000))
    cat = pd.Series(np.where(x > 0, "hi", "lo"))
    assert association(x, x * 3 + 1) == (pytest.approx(1.0), "spearman")
    assert association(x, noise)[0] < 0.1
    assert association(x, cat)[1] == "correlation_ratio"
    assert association(x, cat)[0] > 0.7
    assert association(cat, cat.map({"hi": "H", "lo": "L"})) == (pytest.approx(1.0), "cramers_v")
    assert association(cat, pd.Series(rng.choice(["a", "b", "c"], 2000)))[0] < 0.1
    assert association(pd.Series([1.0, np.nan]), pd.Series([np.nan, 2.0])) == (0.0, "none")


def test_the_second_table_validates_through_its_own_contract(telco_contract: Any) -> None:
    from engage.tables import read_table
    from tests.conftest import TELCO_TABLE

    result = validate(read_table(TELCO_TABLE), telco_contract)
    assert result.report.passed
    assert result.report.contract == "telco_customers"
    assert "BR-010" not in {r.id for r in result.report.results}  # no event time: no freshness rule
    assert result.report.result("ML-002").observed == pytest.approx(0.243, abs=0.001)


def test_the_source_contract_text_is_what_loads() -> None:
    assert "BR-010" in SOURCE


@pytest.mark.parametrize("gx", [False, True])
def test_an_unreadable_label_is_a_type_finding_naming_value_and_allowed_set(
    telco_contract: Any, gx: bool
) -> None:
    """'Maybe' for a yes/no target fails the type check, saying what it got and what the column takes; it is
    not also an empty cell (a genuinely empty one still is), in Engage's code and in Great Expectations."""
    from engage.tables import read_table
    from tests.conftest import TELCO_TABLE

    frame = read_table(TELCO_TABLE)
    frame.loc[[4, 8], "Churn"] = "Maybe"
    result = validate(frame, telco_contract, great_expectations=gx)
    kind = result.report.result("schema.Churn.type")
    assert not kind.passed
    assert kind.message == (
        "2 row(s) hold a value that is not boolean (got 'Maybe'; Churn takes true: true, 1, yes, y, t; "
        "false: false, 0, no, n, f, case-insensitive)"
    )
    assert result.report.result("schema.Churn.not_null").passed
    frame.loc[11, "Churn"] = None
    empty = validate(frame, telco_contract, great_expectations=gx).report.result("schema.Churn.not_null")
    assert (empty.passed, empty.observed) == (False, 1.0)
