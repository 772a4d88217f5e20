"""The one encoder over every column type a contract declares: a table, row objects, rows as lists,
column lists (V1 and V2 through the shared decoder), a level-code matrix, strict and lenient, all give
the same matrix, and it is training's design matrix; each mode refuses exactly what it says."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engage.contract import parse_contract
from engage.encoding import (
    EXPECTED_FINITE,
    MISSING_FEATURE,
    NULL_NOT_ALLOWED,
    Encoder,
    describe,
)
from engage.errors import RequestRejected, SchemaError
from engage.features import design_matrix, fit_feature_set
from engage_serving.protocol import Decoder

CONTRACT = """
contract: every_type
version: 1.0.0
description: One column of each type the contract language has.
owner: tests@example.org
primary_key: [id]
columns:
  id: {type: string, role: id, description: key}
  group: {type: category, role: protected, categories: [a, b], description: protected}
  visits: {type: integer, role: feature, min: 0, max: 100, description: a count}
  spend: {type: float, role: feature, nullable: true, description: money}
  share: {type: float, role: feature, min: 0, max: 1, description: a share}
  opted_in: {type: boolean, role: feature, description: a flag}
  plan: {type: category, role: feature, categories: [free, basic, premium], description: declared levels}
  city: {type: string, role: feature, description: levels seen in training}
  joined: {type: date, role: feature, description: not a model input}
  churned: {type: boolean, role: target, description: the label}
targets:
  churn: {column: churned, task: binary_classification, positive: true}
"""


@pytest.fixture(scope="module")
def contract() -> Any:
    return parse_contract(CONTRACT, "every_type.yml")


def table(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    spend = rng.gamma(2.0, 30.0, n).round(2)
    spend[rng.random(n) < 0.2] = np.nan
    return pd.DataFrame(
        {
            "id": [f"C{i}" for i in range(n)],
            "group": rng.choice(["a", "b"], n),
            "visits": rng.integers(0, 100, n),
            "spend": spend,
            "share": rng.random(n).round(3),
            "opted_in": rng.random(n) < 0.5,
            "plan": pd.Categorical(
                rng.choice(["free", "basic", "premium"], n), categories=["free", "basic", "premium"]
            ),
            "city": rng.choice(["Oslo", "Lima", "Pune"], n),
            "joined": pd.Timestamp("2026-01-01"),
            "churned": rng.random(n) < 0.3,
        }
    )


@pytest.fixture(scope="module")
def features(contract: Any) -> Any:
    return fit_feature_set(table(200, seed=1), contract)


def same(a: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_array_equal(a, b)  # NaN where NaN


@pytest.mark.parametrize("n", [3, 40, 100])  # each side of the columnar fast path (32) and of pandas (64)
def test_every_input_shape_gives_one_matrix_and_it_is_the_design_matrix(
    contract: Any, features: Any, n: int
) -> None:
    frame = table(n, seed=n)
    strict = Encoder.for_model(features, contract, strict=True)
    lenient = Encoder.for_model(features, contract)
    assert features.columns == ["visits", "spend", "share", "opted_in", "plan", "city"]  # joined: no input
    X = lenient.frame(frame)
    records = json.loads(frame.to_json(orient="records"))  # what a client sends
    lists = [[r[c] for c in features.columns] for r in records]
    columns = {c: [r[c] for r in records] for c in features.columns}
    same(strict.frame(frame), X)
    for encoder in (strict, lenient):
        same(encoder.rows(records), X)
        same(encoder.rows(lists), X)
        same(encoder.columns(columns), X)
        codes = [None if math.isnan(v) else v for v in X.ravel().tolist()]
        same(encoder.codes(n, codes), X)
    design = design_matrix(frame, features)
    pd.testing.assert_frame_equal(lenient.decode(X).set_axis(frame.index), design)
    assert design["plan"].cat.categories.tolist() == ["free", "basic", "premium"]
    assert design["opted_in"].cat.categories.tolist() == ["False", "True"]

    decoder = Decoder(strict, contract, max_rows=1_000, dtype=np.float64)
    v1 = decoder.v1({"instances": [{**r, "id": r["id"], "group": r["group"]} for r in records]})
    same(v1.X, X)
    assert v1.extras == {"id": frame["id"].tolist(), "group": frame["group"].tolist()}
    tensors = [
        {"name": c, "shape": [n], "datatype": "BYTES" if c in ("plan", "city") else "BOOL" if c == "opted_in" else "FP64",
         "data": values}
        for c, values in columns.items()
    ]  # fmt: skip
    same(decoder.v2({"inputs": tensors}).X, X)
    matrix = {"name": "input-0", "shape": [n, len(features.columns)], "datatype": "FP64", "data": codes}
    same(decoder.v2({"inputs": [matrix]}).X, X)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "visits": st.integers(0, 100),
                "spend": st.one_of(st.none(), st.floats(0, 1e6, allow_nan=False)),
                "share": st.floats(0, 1),
                "opted_in": st.booleans(),
                "plan": st.sampled_from(["free", "basic", "premium"]),
                "city": st.sampled_from(["Oslo", "Lima", "Pune"]),
            }
        ),
        min_size=1,
        max_size=80,
    )
)
def test_valid_rows_encode_alike_in_both_modes_and_every_path(rows: list[dict[str, Any]]) -> None:
    contract = parse_contract(CONTRACT, "every_type.yml")
    features = fit_feature_set(table(50, seed=2), contract)
    strict = Encoder.for_model(features, contract, strict=True)
    lenient = Encoder.for_model(features, contract)
    X = strict.rows(rows)
    same(lenient.rows(rows), X)
    same(strict.columns({c: [r[c] for r in rows] for c in features.columns}), X)
    same(lenient.frame(pd.DataFrame(rows)), X)


@pytest.mark.parametrize(
    ("field", "value", "reason", "error"),
    [
        ("visits", "3", "wrong_type", f"expected a number, got {describe('3')}"),
        ("visits", 2.5, "wrong_type", "expected an integer, got 2.5"),
        ("visits", True, "wrong_type", f"expected a number, got {describe(True)}"),
        ("visits", 101, "out_of_range", "101 is outside the contract's bounds [0, 100]"),
        ("visits", None, "null_not_allowed", NULL_NOT_ALLOWED),
        ("share", math.inf, "not_finite", "inf is not a finite number"),
        ("opted_in", 2, "wrong_type", f"expected true or false, got {describe(2)}"),
        ("opted_in", "yes", "wrong_type", f"expected true or false, got {describe('yes')}"),
        ("plan", "gold", "unknown_category", "unknown category 'gold'; known: free, basic, premium"),
        ("plan", 1, "wrong_type", f"expected one of its categories (a string), got {describe(1)}"),
        ("city", "Rome", "unknown_category", "unknown category 'Rome'; known: Lima, Oslo, Pune"),
    ],
)
def test_the_contract_mode_refuses_what_the_contract_forbids(
    contract: Any, features: Any, field: str, value: Any, reason: str, error: str
) -> None:
    good = json.loads(table(1, seed=3).to_json(orient="records"))[0]
    strict = Encoder.for_model(features, contract, strict=True)
    with pytest.raises(RequestRejected) as caught:
        strict.rows([good, {**good, field: value}])
    assert (caught.value.http_status, caught.value.reason) == (422, reason)
    assert caught.value.details == [{"row": 1, "field": field, "error": error}]


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [("visits", "3", 3.0), ("visits", " ", math.nan), ("spend", None, math.nan), ("visits", 2.5, 2.5),
     ("plan", "gold", math.nan), ("city", "Rome", math.nan), ("opted_in", True, 1.0), ("plan", None, math.nan)],
)  # fmt: skip
def test_the_lenient_mode_reads_text_and_unseen_levels(
    contract: Any, features: Any, field: str, value: Any, expected: float
) -> None:
    good = json.loads(table(1, seed=3).to_json(orient="records"))[0]
    got = Encoder.for_model(features, contract).rows([{**good, field: value}])[
        0, features.columns.index(field)
    ]
    assert got == expected or (math.isnan(got) and math.isnan(expected))


@pytest.mark.parametrize(
    ("value", "error"),
    [(True, f"expected a number, got {describe(True)}"), ("inf", EXPECTED_FINITE),
     ("many", f"expected a number, got {describe('many')}"), ({}, f"expected a number, got {describe({})}")],
)  # fmt: skip
def test_the_lenient_mode_still_refuses_what_is_no_number(features: Any, value: Any, error: str) -> None:
    good = json.loads(table(1, seed=3).to_json(orient="records"))[0]
    with pytest.raises(RequestRejected) as caught:
        Encoder.for_model(features).rows([{**good, "spend": value}])
    assert caught.value.details == [{"row": 0, "field": "spend", "error": error}]


def test_a_table_missing_an_input_is_a_schema_error(features: Any) -> None:
    frame = table(5, seed=4).drop(columns=["city"])
    with pytest.raises(SchemaError, match=re.escape(f"field 'city': {MISSING_FEATURE}")):
        design_matrix(frame, features)
    bad = table(5, seed=4).astype({"visits": object})
    bad.loc[2, "visits"] = "many"
    with pytest.raises(
        SchemaError, match=re.escape(f"row 2, field 'visits': expected a number, got {describe('many')}")
    ):
        design_matrix(bad, features)
