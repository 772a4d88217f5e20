"""The pipeline's stratified review sample: exact size, every stratum seen, seeded, JSON-safe items."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
import pytest

from engage.governance._review import NewReviewItem
from engage.governance._sample import allocate, json_value, review_sample

AGE_BINS = [18, 25, 35, 50, 65, 121]


def scored_table(rows: int, *, seed: int = 0) -> pd.DataFrame:
    """Scored rows shaped like the pipeline's: an id, features, protected attributes, predictions."""
    rng = np.random.default_rng(seed)
    gender = rng.choice(np.array(["female", "male", "non_binary", None], dtype=object), rows,
                        p=[0.485, 0.485, 0.02, 0.01])  # fmt: skip
    frame = pd.DataFrame(
        {
            "customer_id": [f"CUST-{i:08d}" for i in range(rows)],
            "tenure_days": rng.integers(0, 3000, rows),
            "total_spend_90d": rng.gamma(2.0, 50.0, rows),
            "country": pd.Categorical(rng.choice(["US", "DE", "FR"], rows)),
            "email_opt_in": rng.random(rows) < 0.5,
            "gender": gender,
            "age": rng.integers(18, 90, rows),
            "churn_probability": rng.random(rows),
            "ltv": rng.gamma(2.0, 300.0, rows),
        }
    )
    frame.loc[frame.index % 7 == 0, "total_spend_90d"] = np.nan
    return frame


def sample(frame: pd.DataFrame, **overrides: Any) -> list[NewReviewItem]:
    options: dict[str, Any] = {
        "size": 400,
        "strata": ["gender", "age"],
        "bins": {"age": AGE_BINS},
        "id_column": "customer_id",
        "outputs": ["churn_probability", "ltv"],
        "feature_columns": ["tenure_days", "total_spend_90d", "country", "email_opt_in"],
        "run_id": "run-1",
        "model_version": "sha256:abc",
        "seed": 7,
    }
    options.update(overrides)
    return review_sample(frame, **options)


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return scored_table(20_000)


def test_the_sample_has_exactly_size_items_of_distinct_rows(table: pd.DataFrame) -> None:
    items = sample(table)
    assert len(items) == 400
    assert len({i.customer_id for i in items}) == 400
    assert {i.source for i in items} == {"sample"}
    assert {i.reason for i in items} == {"stratified_sample"}
    assert {(i.run_id, i.model_version) for i in items} == {("run-1", "sha256:abc")}
    assert all(i.explanation is None for i in items)


def test_every_non_empty_stratum_is_represented(table: pd.DataFrame) -> None:
    items = sample(table)
    seen = Counter(i.stratum for i in items)
    # 4 gender groups (one the missing values) x 5 age bins x 5 score quintiles, all non-empty here
    assert len(seen) == 100
    assert min(seen.values()) >= 1
    assert any(str(s).startswith("gender=unknown, ") for s in seen)  # 1 % of rows: never missed
    assert "gender=female, age=25-34, churn_probability=q3/5" in seen
    # proportional beyond the minimum: a large stratum gets more than a tiny one
    assert seen.most_common(1)[0][1] > 3 * min(seen.values())


def test_each_item_is_its_rows_values_in_its_stratum(table: pd.DataFrame) -> None:
    by_id = table.set_index("customer_id")
    edges = np.quantile(table["churn_probability"], [0.2, 0.4, 0.6, 0.8])
    for item in sample(table)[:50]:
        row = by_id.loc[item.customer_id]
        assert item.prediction == {"churn_probability": row["churn_probability"], "ltv": row["ltv"]}
        assert item.features["tenure_days"] == row["tenure_days"]
        band = int(np.searchsorted(edges, row["churn_probability"], side="right")) + 1
        gender = "unknown" if row["gender"] is None else row["gender"]
        assert item.stratum is not None
        assert item.stratum.startswith(f"gender={gender}, ")
        assert item.stratum.endswith(f"churn_probability=q{band}/5")


def test_the_sample_is_deterministic_for_a_seed(table: pd.DataFrame) -> None:
    first = [i.customer_id for i in sample(table)]
    assert [i.customer_id for i in sample(table)] == first
    assert [i.customer_id for i in sample(table, seed=8)] != first


def test_items_are_json_safe(table: pd.DataFrame) -> None:
    items = sample(table)
    for item in items:
        text = json.dumps({"f": item.features, "p": item.prediction}, allow_nan=False)
        assert "NaN" not in text
        assert isinstance(item.features["tenure_days"], int)
        assert isinstance(item.features["email_opt_in"], bool)
        assert isinstance(item.features["country"], str)
    spends = [i.features["total_spend_90d"] for i in items]
    assert None in spends  # a NaN feature is None
    assert all(s is None or isinstance(s, float) for s in spends)


@pytest.mark.parametrize("rows", [0, 1, 3, 17])
def test_a_table_smaller_than_the_size_is_sampled_whole(rows: int) -> None:
    frame = scored_table(rows, seed=rows)
    items = sample(frame)
    assert len(items) == rows
    assert sorted(i.customer_id for i in items) == sorted(frame["customer_id"])  # type: ignore[type-var]


def test_more_strata_than_the_size_gives_one_item_each_to_size_strata(table: pd.DataFrame) -> None:
    items = sample(table, size=30)
    assert len(items) == 30
    assert len({i.stratum for i in items}) == 30


def test_size_zero_samples_nothing(table: pd.DataFrame) -> None:
    assert sample(table, size=0) == []
    with pytest.raises(ValueError, match="size must be >= 0"):
        sample(table, size=-1)


def test_a_table_without_an_id_column_is_sampled_without_ids(table: pd.DataFrame) -> None:
    items = sample(table.drop(columns="customer_id"), id_column=None)
    assert len(items) == 400
    assert {i.customer_id for i in items} == {None}


def test_without_protected_attributes_the_strata_are_score_bands(table: pd.DataFrame) -> None:
    seen = Counter(i.stratum for i in sample(table, strata=[], bins=None, score_column="ltv", bands=10))
    assert set(seen) == {f"ltv=q{b}/10" for b in range(1, 11)}
    assert set(seen.values()) == {40}  # equal bands, proportional shares


def test_unknown_columns_are_named() -> None:
    with pytest.raises(ValueError, match="columns not in the scored table: plan"):
        sample(scored_table(10), strata=["plan"])


def test_allocation_is_exact_with_minimums_and_capacity() -> None:
    rng = np.random.default_rng(0)
    counts = np.array([10_000, 500, 3, 0, 1, 40], dtype=np.int64)
    quota = allocate(counts, 400, minimum=1, rng=rng)
    assert quota.sum() == 400
    assert (quota <= counts).all()
    assert (quota[counts > 0] >= 1).all()
    assert quota[3] == 0
    assert quota[0] > quota[1] > quota[5] >= quota[2]
    assert allocate(counts, 10_000_000, rng=rng).tolist() == counts.tolist()  # every row


def test_json_value_makes_cells_json() -> None:
    assert json_value(np.int64(3)) == 3
    assert type(json_value(np.int64(3))) is int
    assert json_value(np.float32(0.5)) == 0.5
    assert json_value(np.nan) is None
    assert json_value(float("inf")) is None
    assert json_value(pd.NA) is None
    assert json_value(pd.NaT) is None
    assert json_value(np.bool_(True)) is True
    assert json_value(pd.Timestamp("2026-03-01T06:00:00Z")) == "2026-03-01T06:00:00+00:00"
    assert json_value("x") == "x"


def test_a_100k_row_run_fills_400_items_well_under_a_second() -> None:
    frame = scored_table(100_000, seed=3)
    sample(frame)  # warm
    started = time.perf_counter()
    items = sample(frame)
    assert len(items) == 400
    assert time.perf_counter() - started < 0.5
