"""Unit tests of the synthetic customer generator (small seeded tables)."""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pycountry
import pydantic
import pytest
import yaml
from scipy.stats import ks_2samp

from engage.errors import ConfigError
from engage.synthetic import (
    DEFECT_CHECKS,
    DefectKind,
    GeneratedTable,
    SyntheticConfig,
    generate_customers,
)
from engage.synthetic import _columns as col

CONTRACT_PATH = Path(__file__).resolve().parents[2] / "contracts" / "customers_contract.yml"
AS_OF = datetime(2024, 6, 30, 13, 45, 12, tzinfo=UTC)
ROWS = 3000
ISO_ALPHA2 = frozenset(c.alpha_2 for c in pycountry.countries)
OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "<=": operator.le,
    "<": operator.lt,
    ">=": operator.ge,
    ">": operator.gt,
    "==": operator.eq,
}
PANDAS_KIND = {
    "string": lambda dtype: str(dtype) in ("object", "string"),
    "datetime": lambda dtype: str(dtype) == "datetime64[ns, UTC]",
    "date": lambda dtype: str(dtype) == "datetime64[ns]",
    "category": lambda dtype: isinstance(dtype, pd.CategoricalDtype),
    "integer": lambda dtype: str(dtype) == "Int64",
    "float": lambda dtype: str(dtype) == "float64",
    "boolean": lambda dtype: str(dtype) == "boolean",
}


@cache
def contract() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CONTRACT_PATH.read_text())
    return loaded


def rule(rule_id: str) -> dict[str, Any]:
    return next(r for r in contract()["rules"] if r["id"] == rule_id)


@cache
def generate(
    rows: int = ROWS,
    seed: int = 11,
    bias: float = 0.0,
    drift: float = 0.0,
    defects: tuple[tuple[DefectKind, float], ...] = (),
) -> GeneratedTable:
    config = SyntheticConfig(rows=rows, seed=seed, as_of=AS_OF, bias=bias, drift=drift, defects=dict(defects))
    return generate_customers(config)


def row_violations(frame: pd.DataFrame, rule_id: str) -> pd.Series:
    """Rows that break a row-level contract rule (nulls never break a comparison)."""
    check = rule(rule_id)["check"]
    kind = check["kind"]
    if kind == "unique":
        return frame.duplicated(subset=check["columns"], keep="first")
    if kind == "compare":
        left, right = frame[check["left"]], frame[check["right"]]
        both = left.notna() & right.notna()
        return both & ~OPERATORS[check["op"]](left, right).fillna(True).astype(bool)
    if kind == "range":
        bad = pd.Series(False, index=frame.index)
        for name in check["columns"]:
            values = frame[name].astype("float64")
            bad |= (values < check.get("min", -math.inf)) | (values > check.get("max", math.inf))
        return bad
    if kind == "pattern":
        values = frame[check["column"]]
        matched = values.astype(str).str.fullmatch(check["regex"])
        return values.notna() & ~matched
    if kind == "sum_equals":
        parts = sum(frame[p].astype("float64") for p in check["parts"])
        return (frame[check["total"]].astype("float64") - parts).abs() > check["tolerance"] + 1e-9
    if kind == "country_code":
        values = frame[check["column"]].astype(object)
        return values.notna() & ~values.isin(ISO_ALPHA2)
    raise AssertionError(f"not a row-level rule: {rule_id}")


ROW_RULES = tuple(f"BR-00{i}" for i in range(1, 10))


def not_null_violations(frame: pd.DataFrame) -> pd.Series:
    """Rows with a null in a column the contract declares non-nullable."""
    required = [name for name, spec in contract()["columns"].items() if not spec.get("nullable", False)]
    return frame[required].isna().any(axis=1)


def assert_contract_clean(frame: pd.DataFrame) -> None:
    columns = contract()["columns"]
    for rule_id in ROW_RULES:
        assert not row_violations(frame, rule_id).any(), rule_id
    assert frame[col.SNAPSHOT_AT].max() == pd.Timestamp(AS_OF)  # BR-010: the latest extract is at as_of
    assert not not_null_violations(frame).any()
    for name, spec in columns.items():
        values = frame[name]
        if "min" in spec:
            assert (values.dropna().astype("float64") >= spec["min"]).all(), name
        if "max" in spec:
            assert (values.dropna().astype("float64") <= spec["max"]).all(), name
        if "categories" in spec:
            assert list(values.cat.categories) == spec["categories"], name
    features = [name for name, spec in columns.items() if spec["role"] == "feature"]
    for name in features:
        if columns[name].get("critical"):
            assert frame[name].isna().mean() < 0.05, name  # ML-001
        assert frame[name].nunique(dropna=True) > 1, name  # ML-003
    churn = contract()["targets"]["churn"]["column"]
    assert 0.05 <= frame[churn].astype(bool).mean() <= 0.60  # ML-002
    day = pd.Timestamp(AS_OF.date())
    for name in rule("ML-004")["check"]["dates_before_event_time"]:
        assert (frame[name] <= day).all(), name


def test_columns_follow_the_contract() -> None:
    frame = generate().frame
    columns = contract()["columns"]
    assert list(frame.columns) == list(columns)
    assert tuple(columns) == col.COLUMNS
    for name, spec in columns.items():
        assert PANDAS_KIND[spec["type"]](frame[name].dtype), (name, frame[name].dtype)
    assert len(frame) == ROWS


def test_rows_ordered_by_customer_id() -> None:
    ids = generate().frame[col.CUSTOMER_ID]
    assert ids.str.fullmatch(r"CUST-\d{8}").all()
    assert ids.is_monotonic_increasing
    assert ids.iloc[0] == "CUST-00000001"
    assert ids.is_unique


@pytest.mark.parametrize(("bias", "drift"), [(0.0, 0.0), (1.0, 1.0)])
def test_clean_table_satisfies_the_contract(bias: float, drift: float) -> None:
    assert_contract_clean(generate(bias=bias, drift=drift).frame)


def test_dates_are_midnight_and_consistent_with_day_counts() -> None:
    frame = generate().frame
    day = pd.Timestamp(AS_OF.date())
    for name in (col.SIGNUP_DATE, col.LAST_ACTIVITY_DATE):
        assert (frame[name] == frame[name].dt.normalize()).all()
    assert ((day - frame[col.SIGNUP_DATE]).dt.days == frame[col.TENURE_DAYS]).all()
    assert ((day - frame[col.LAST_ACTIVITY_DATE]).dt.days == frame[col.DAYS_SINCE_LAST_ACTIVITY]).all()
    assert frame[col.TENURE_DAYS].max() <= 3 * 366


def test_aggregates_are_coherent() -> None:
    frame = generate().frame
    assert (frame[col.ACTIVE_DAYS_30D] <= frame[col.SESSIONS_30D]).all()
    no_sessions = frame[col.SESSIONS_90D] == 0
    assert (frame[col.AVG_SESSION_MINUTES].isna() == no_sessions).all()
    no_orders = frame[col.ORDERS_90D] == 0
    assert (frame[col.AVG_ORDER_VALUE].isna() == no_orders).all()
    assert (frame[col.DISCOUNT_SHARE].isna() == no_orders).all()
    assert (frame.loc[no_orders, col.SPEND_PRODUCTS_90D] == 0).all()
    # Sessions in the last 30 days mean activity in the last 30 days.
    assert (frame.loc[frame[col.SESSIONS_30D] > 0, col.DAYS_SINCE_LAST_ACTIVITY] < 30).all()
    assert 0.55 <= frame[col.NPS_SCORE].isna().mean() <= 0.75
    assert frame[col.GENDER].isna().mean() < 0.05
    assert frame[col.AGE].between(18, 90).all()
    assert frame[col.COUNTRY].nunique() >= 12
    churned = frame[col.CHURNED].astype(bool)
    assert 0.10 <= churned.mean() <= 0.35
    assert (frame.loc[churned, col.LTV] == 0).mean() > 0.2
    assert frame.loc[~churned, col.LTV].median() > frame.loc[churned, col.LTV].median()
    money = [col.SPEND_PRODUCTS_90D, col.SPEND_SERVICES_90D, col.TOTAL_SPEND_90D, col.LTV]
    for name in money:
        assert np.allclose(frame[name], frame[name].round(2))


def test_personal_columns_are_well_formed() -> None:
    frame = generate().frame
    first = frame[col.FULL_NAME].str.split(" ").str[0].str.lower()
    last = frame[col.FULL_NAME].str.split(" ").str[-1].str.lower()
    local = frame[col.EMAIL].str.split("@").str[0]
    assert (local.str.replace(r"\d+$", "", regex=True) == first + "." + last).all()
    assert local.str.contains(r"\d$").all()
    assert frame[col.PHONE].str.len().between(8, 16).all()
    us = frame[col.COUNTRY] == "US"
    assert frame.loc[us, col.PHONE].str.startswith("+1").all()
    gb = frame[col.COUNTRY] == "GB"
    assert frame.loc[gb, col.PHONE].str.startswith("+44").all()


def test_same_config_same_table() -> None:
    config = SyntheticConfig(
        rows=2000, seed=5, as_of=AS_OF, bias=0.3, drift=0.4, defects={DefectKind.duplicate: 0.05}
    )
    first, second = generate_customers(config), generate_customers(config)
    pd.testing.assert_frame_equal(first.frame, second.frame)
    pd.testing.assert_frame_equal(first.defects, second.defects)
    other = generate_customers(config.model_copy(update={"seed": 6}))
    assert not other.frame[col.SESSIONS_90D].equals(first.frame[col.SESSIONS_90D])


def test_snapshot_time_is_kept_exactly() -> None:
    frame = generate().frame
    assert (frame[col.SNAPSHOT_AT] == pd.Timestamp(AS_OF)).all()
    assert str(frame[col.SNAPSHOT_AT].dt.tz) == "UTC"


ALL_DEFECTS = tuple((kind, 0.02) for kind in DefectKind)


def test_defect_counts_and_rows() -> None:
    table = generate(defects=ALL_DEFECTS)
    truth = table.defects
    assert list(truth.columns) == ["row", "customer_id", "kind", "column"]
    assert str(truth["row"].dtype) == "int64"
    counts = truth["kind"].value_counts().to_dict()
    assert counts == {kind.value: round(0.02 * ROWS) for kind in DefectKind}
    assert truth["row"].is_unique  # disjoint across kinds
    assert truth["row"].is_monotonic_increasing
    assert len(table.frame) == ROWS + counts[DefectKind.duplicate.value]
    ids = table.frame[col.CUSTOMER_ID].to_numpy()[truth["row"].to_numpy()]
    assert (ids == truth["customer_id"].to_numpy()).all()
    assert set(truth["kind"]) <= {kind.value for kind in DEFECT_CHECKS}


def test_each_defect_breaks_only_its_check() -> None:
    frame, truth = generate(defects=ALL_DEFECTS).frame, generate(defects=ALL_DEFECTS).defects
    broken = {rule_id: row_violations(frame, rule_id).to_numpy() for rule_id in ROW_RULES}
    broken["not_null"] = not_null_violations(frame).to_numpy()
    spoiled = np.zeros(len(frame), dtype=bool)
    for kind in DefectKind:
        rows = truth.loc[truth["kind"] == kind.value, "row"].to_numpy()
        spoiled[rows] = True
        for check, mask in broken.items():
            expected = check == DEFECT_CHECKS[kind]
            assert (mask[rows] == expected).all(), (kind, check)
    for check, mask in broken.items():
        assert not mask[~spoiled].any(), check


def test_spoiled_rows_differ_from_clean_rows_only_where_recorded() -> None:
    clean = generate().frame
    table = generate(defects=ALL_DEFECTS)
    frame, truth = table.frame, table.defects
    copies = truth.loc[truth["kind"] == DefectKind.duplicate.value, "row"].to_numpy()
    # Copies sit right after their originals and are exact.
    pd.testing.assert_frame_equal(
        frame.iloc[copies].reset_index(drop=True), frame.iloc[copies - 1].reset_index(drop=True)
    )
    keep = np.ones(len(frame), dtype=bool)
    keep[copies] = False
    base = frame.loc[keep].reset_index(drop=True)
    assert list(base[col.CUSTOMER_ID]) == list(clean[col.CUSTOMER_ID])
    position = np.cumsum(keep) - 1  # row in the clean table of each kept row
    changed: dict[int, set[str]] = {}
    for name in col.COLUMNS:
        left, right = base[name].astype(object), clean[name].astype(object)
        differs = ~((left == right) | (left.isna() & right.isna())).to_numpy()
        for row in np.flatnonzero(differs):
            changed.setdefault(int(row), set()).add(name)
    expected: dict[int, set[str]] = {}
    for row, kind, name in truth.loc[
        truth["kind"] != DefectKind.duplicate.value, ["row", "kind", "column"]
    ].itertuples(index=False):
        names = {name}
        if kind == DefectKind.negative_money.value:
            names.add(col.TOTAL_SPEND_90D)
        expected[int(position[row])] = names
    assert changed == expected
    missing = truth.loc[truth["kind"] == DefectKind.missing_value.value]
    for row, name in missing[["row", "column"]].itertuples(index=False):
        assert pd.isna(frame.at[row, name])
        assert contract()["columns"][name].get("critical")
        assert not contract()["columns"][name].get("nullable", False)


def test_defect_values_look_like_real_mistakes() -> None:
    table = generate(defects=ALL_DEFECTS)
    frame, truth = table.frame, table.defects

    def rows(kind: DefectKind) -> np.ndarray[Any, Any]:
        return truth.loc[truth["kind"] == kind.value, "row"].to_numpy()

    ages = frame[col.AGE].iloc[rows(DefectKind.impossible_age)]
    assert (~ages.between(18, 120)).all()
    assert frame[col.SPEND_SERVICES_90D].iloc[rows(DefectKind.negative_money)].lt(0).all()
    assert not frame[col.PHONE].iloc[rows(DefectKind.bad_phone)].str.contains(r"\+").any()
    bad_countries = set(frame[col.COUNTRY].iloc[rows(DefectKind.bad_country)].astype(str))
    assert bad_countries <= {"UK", "XX", "EN", "EU", "ZZ"}
    late = rows(DefectKind.signup_after_activity)
    assert (frame[col.SIGNUP_DATE].iloc[late] > frame[col.LAST_ACTIVITY_DATE].iloc[late]).all()
    assert (frame[col.SIGNUP_DATE].iloc[late] <= pd.Timestamp(AS_OF.date())).all()


def test_missing_values_stay_under_the_null_limit() -> None:
    table = generate(rows=2000, defects=((DefectKind.missing_value, 0.2), (DefectKind.duplicate, 0.1)))
    critical = [name for name, spec in contract()["columns"].items() if spec.get("critical")]
    shares = table.frame[critical].isna().mean()
    assert (shares < 0.05).all(), shares.to_dict()
    assert table.defects["kind"].value_counts()[DefectKind.missing_value.value] == 400


def test_too_many_defects_are_refused() -> None:
    with pytest.raises(pydantic.ValidationError):
        SyntheticConfig(rows=10, as_of=AS_OF, defects=dict.fromkeys(DefectKind, 0.2))


def test_defect_counts_rounding_past_the_table_are_refused() -> None:
    """Rates the config accepts can still round to more spoiled rows than a tiny table has."""
    rates = dict.fromkeys([DefectKind.duplicate, DefectKind.impossible_age, DefectKind.bad_email], 0.2)
    with pytest.raises(ConfigError, match=r"^the defect rates need 4 distinct rows but the table has 3$"):
        generate_customers(SyntheticConfig(rows=3, as_of=AS_OF, defects=rates))


def test_bias_zero_gives_gender_no_influence() -> None:
    frame = generate(rows=5000, seed=21).frame
    gender = frame[col.GENDER].astype(object)
    female, male = (gender == "female").to_numpy(), (gender == "male").to_numpy()
    for name in (col.CHURNED, col.SESSIONS_30D, col.SUPPORT_TICKETS_90D, col.ENGAGEMENT_SCORE):
        values = frame[name].astype("float64").to_numpy()
        a, b = values[female], values[male]
        z = (a.mean() - b.mean()) / math.sqrt(a.var() / a.size + b.var() / b.size)
        assert abs(z) < 4.0, (name, z)


def test_bias_one_disadvantages_the_group() -> None:
    frame = generate(rows=5000, seed=21, bias=1.0).frame
    gender = frame[col.GENDER].astype(object)
    female, male = frame[gender == "female"], frame[gender == "male"]
    assert female[col.CHURNED].mean() > 1.3 * male[col.CHURNED].mean()
    assert female[col.SESSIONS_30D].mean() < male[col.SESSIONS_30D].mean()
    assert female[col.SUPPORT_TICKETS_90D].mean() > male[col.SUPPORT_TICKETS_90D].mean()


def test_zero_drift_is_the_baseline() -> None:
    base = SyntheticConfig(rows=2000, seed=3, as_of=AS_OF)
    pd.testing.assert_frame_equal(
        generate_customers(base).frame, generate_customers(base.model_copy(update={"drift": 0.0})).frame
    )
    explicit = SyntheticConfig(rows=2000, seed=3, as_of=AS_OF, drift=0.0, bias=0.0, defects={})
    pd.testing.assert_frame_equal(generate_customers(base).frame, generate_customers(explicit).frame)


def test_drift_shifts_the_late_cohort() -> None:
    rows = 12000
    base, drifted = generate(rows=rows, seed=4).frame, generate(rows=rows, seed=4, drift=1.0).frame
    late = slice(rows - rows // 4, rows)
    assert base[col.SIGNUP_DATE].iloc[late].equals(drifted[col.SIGNUP_DATE].iloc[late])
    shifted = []
    for name in (col.SESSIONS_30D, col.SESSIONS_90D, col.AVG_ORDER_VALUE, col.SPEND_PRODUCTS_90D):
        a = base[name].iloc[late].dropna().astype("float64")
        b = drifted[name].iloc[late].dropna().astype("float64")
        if ks_2samp(a, b).pvalue < 1e-6:
            shifted.append(name)
    assert len(shifted) >= 3, shifted
    for name in (col.DEVICE_TYPE, col.ACQUISITION_CHANNEL, col.COUNTRY):
        a = base[name].iloc[late].value_counts(normalize=True)
        b = drifted[name].iloc[late].value_counts(normalize=True)
        assert (a - b).abs().max() > 0.1, name


def test_config_validation() -> None:
    with pytest.raises(pydantic.ValidationError, match="timezone"):
        SyntheticConfig(rows=10, as_of=datetime(2024, 6, 30))
    with pytest.raises(pydantic.ValidationError):
        SyntheticConfig(rows=0, as_of=AS_OF)
    with pytest.raises(pydantic.ValidationError):
        SyntheticConfig(rows=10, as_of=AS_OF, defects={DefectKind.bad_email: 0.21})
    with pytest.raises(pydantic.ValidationError):
        SyntheticConfig(rows=10, as_of=AS_OF, defects={DefectKind.bad_email: -0.1})
    with pytest.raises(pydantic.ValidationError):
        SyntheticConfig(rows=10, as_of=AS_OF, bias=1.5)
    with pytest.raises(pydantic.ValidationError):
        SyntheticConfig(rows=10, as_of=AS_OF, drift=-0.1)
    with pytest.raises(pydantic.ValidationError):
        SyntheticConfig(rows=10, as_of=AS_OF, colour="red")  # type: ignore[call-arg]
    config = SyntheticConfig(rows=10, as_of=AS_OF)
    with pytest.raises(pydantic.ValidationError):
        config.rows = 20  # type: ignore[misc]
    paris = timezone(timedelta(hours=2))
    local = SyntheticConfig(rows=10, as_of=datetime(2024, 6, 30, 15, 45, 12, tzinfo=paris))
    assert local.as_of == AS_OF
    assert local.as_of.utcoffset() == timedelta(0)
    from_text = SyntheticConfig.model_validate(
        {"rows": 5, "as_of": "2024-06-30T13:45:12Z", "defects": {"bad_email": 0.1}}
    )
    assert from_text.defects == {DefectKind.bad_email: 0.1}


def test_defect_checks_cover_every_kind() -> None:
    assert set(DEFECT_CHECKS) == set(DefectKind)
    rule_ids = {r["id"] for r in contract()["rules"]}
    for kind, check in DEFECT_CHECKS.items():
        assert check in rule_ids or check == "not_null", kind
    assert re.fullmatch(r"BR-00\d", DEFECT_CHECKS[DefectKind.duplicate])


def test_tiny_tables_work() -> None:
    table = generate_customers(SyntheticConfig(rows=1, as_of=AS_OF))
    assert len(table.frame) == 1
    assert table.defects.empty
    assert list(table.defects.columns) == ["row", "customer_id", "kind", "column"]


def test_several_extracts_stack_monthly_populations() -> None:
    config = SyntheticConfig(
        rows=2001,
        seed=5,
        as_of=AS_OF,
        snapshots=3,
        defects={DefectKind.duplicate: 0.01, DefectKind.bad_email: 0.01},
    )
    table = generate_customers(config)
    frame = table.frame
    stamps = frame[col.SNAPSHOT_AT]
    expected = [pd.Timestamp(AS_OF) - pd.Timedelta(days=30 * k) for k in (2, 1, 0)]
    assert sorted(stamps.unique()) == expected
    assert len(frame) == 2001 + 20  # with the duplicate copies
    clean = generate_customers(config.model_copy(update={"defects": {}})).frame
    assert clean[col.SNAPSHOT_AT].value_counts().sort_index().tolist() == [667, 667, 667]
    ids = clean[col.CUSTOMER_ID]
    assert ids.is_unique
    assert ids.iloc[-1] == "CUST-00002001"
    assert_contract_clean(clean)
    # each extract is observed from its own snapshot day: no activity after it
    for stamp, part in clean.groupby(col.SNAPSHOT_AT):
        assert (part[col.LAST_ACTIVITY_DATE] <= stamp.tz_convert(None)).all()
    assert set(table.defects["kind"]) == {"duplicate", "bad_email"}
    # the latest extract is the one-extract table of the same seed and size
    alone = generate_customers(SyntheticConfig(rows=667, seed=5, as_of=AS_OF)).frame
    latest = clean.iloc[1334:].reset_index(drop=True)
    pd.testing.assert_frame_equal(
        latest.drop(columns=[col.CUSTOMER_ID, col.EMAIL]), alone.drop(columns=[col.CUSTOMER_ID, col.EMAIL])
    )
