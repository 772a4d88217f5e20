"""The predictor's pieces without a server: input checks, compiled trees, PII masking, size limits."""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import numpy as np
import pytest

from engage.encoding import MAX_DETAILS, Encoder
from engage.errors import RequestRejected
from engage.features import FeatureSet
from engage_serving.protocol import Decoder

FEATURES = FeatureSet(
    numeric=["sessions_30d", "avg_session_minutes", "nps_score"],
    categorical={"plan": ["free", "basic", "premium"]},
)
ROW = {"sessions_30d": 4, "avg_session_minutes": 12.5, "nps_score": 7, "plan": "basic"}


@pytest.fixture(scope="module")
def schema(contract: Any) -> Decoder:
    return Decoder(Encoder.for_model(FEATURES, contract, strict=True), contract, max_rows=10)


def test_rows_become_the_model_matrix_in_feature_order(schema: Decoder) -> None:
    batch = schema.v1({"instances": [ROW, {**ROW, "avg_session_minutes": None, "plan": "premium"}]})
    assert batch.X.dtype == np.float32
    np.testing.assert_array_equal(batch.X[0], [4, 12.5, 7, 1])
    assert math.isnan(batch.X[1, 1])
    assert batch.X[1, 3] == 2


def test_lists_in_model_order_and_carried_columns(schema: Decoder) -> None:
    batch = schema.v1({"instances": [[4, 12.5, 7, "basic"]]})
    np.testing.assert_array_equal(batch.X[0], [4, 12.5, 7, 1])
    carried = schema.v1({"instances": [{**ROW, "customer_id": "C1", "gender": "female"}]})
    assert carried.extras["customer_id"] == ["C1"]
    assert carried.extras["gender"] == ["female"]


def test_every_problem_is_listed_with_row_and_field(schema: Decoder) -> None:
    rows = [{"sessions_30d": "x"}, {**ROW, "plan": "gold", "nps_score": math.inf}]
    with pytest.raises(RequestRejected) as caught:
        schema.v1({"instances": rows})
    error = caught.value
    assert error.http_status == 422
    assert error.reason == "wrong_type"
    found = {(d["row"], d["field"]) for d in error.details}
    assert {(0, "sessions_30d"), (0, "plan"), (1, "plan"), (1, "nps_score")} <= found
    assert error.message.startswith("row 0, field 'sessions_30d'")


def test_details_are_capped_but_counted(schema: Decoder) -> None:
    with pytest.raises(RequestRejected) as caught:
        schema.v1({"instances": [{}] * 10})
    assert len(caught.value.details) == MAX_DETAILS
    assert "(and 39 more problem(s)" in caught.value.message


def test_v2_columns_matrix_and_shape_checks(schema: Decoder) -> None:
    columns = [
        {"name": "sessions_30d", "shape": [2], "datatype": "INT64", "data": [4, 5]},
        {"name": "avg_session_minutes", "shape": [2, 1], "datatype": "FP64", "data": [[12.5], [None]]},
        {"name": "nps_score", "shape": [2], "datatype": "INT64", "data": [7, 8]},
        {"name": "plan", "shape": [2], "datatype": "BYTES", "data": ["basic", "free"]},
    ]
    batch = schema.v2({"inputs": columns})
    np.testing.assert_array_equal(batch.X[:, 3], [1, 0])
    matrix = schema.v2(
        {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [4, 12.5, 7, 1]}]}
    )
    np.testing.assert_array_equal(matrix.X, batch.X[:1])
    with pytest.raises(RequestRejected, match=r"shape \[1, 4\] holds 4 values but 'data' has 3"):
        schema.v2({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [4, 12.5, 7]}]})
    with pytest.raises(RequestRejected, match=r"level code 0\.\.2"):
        schema.v2({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [4, 12.5, 7, 3]}]})
    with pytest.raises(RequestRejected) as caught:
        schema.v2({"inputs": columns[:3]})
    assert caught.value.reason == "missing_feature"
    assert caught.value.details[0]["field"] == "plan"


@pytest.mark.parametrize(
    ("payload", "status", "reason"),
    [([], 400, "malformed_request"), ({}, 400, "no_instances"), ({"instances": "x"}, 400, "no_instances"),
     ({"instances": [ROW] * 11}, 413, "too_many_rows"), ({"instances": [3]}, 422, "wrong_type")],
)  # fmt: skip
def test_request_shapes(schema: Decoder, payload: Any, status: int, reason: str) -> None:
    with pytest.raises(RequestRejected) as caught:
        schema.v1(payload)
    assert (caught.value.http_status, caught.value.reason) == (status, reason)


def test_compiled_trees_reproduce_xgboost_margins_with_categories_and_missing_values() -> None:
    import pandas as pd
    import xgboost as xgb

    from engage_serving.predictor._forest import CompiledForest

    rng = np.random.default_rng(3)
    n = 2_000
    frame = pd.DataFrame(
        {
            "a": rng.normal(size=n),
            "b": np.where(rng.random(n) < 0.2, np.nan, rng.normal(size=n)),
            "c": pd.Categorical.from_codes(rng.integers(0, 6, n), categories=list("uvwxyz")),
        }
    )
    y = (frame["a"] + (frame["c"].cat.codes % 2) + np.nan_to_num(frame["b"]) > 0.5).astype(int)
    model = xgb.XGBClassifier(n_estimators=40, max_depth=4, enable_categorical=True, max_cat_to_onehot=1)
    model.fit(frame, y)
    booster = model.get_booster()
    X = np.column_stack([frame["a"], frame["b"], frame["c"].cat.codes.astype(float)]).astype(np.float32)
    X[rng.random(n) < 0.05, 2] = np.nan
    forest = CompiledForest({"h": booster}, {"h": None}, [2])
    expected = booster.inplace_predict(X, predict_type="margin")
    assert forest.agreement(X, {"h": expected}) <= 1e-6
    assert forest.trees == 40


def test_pii_is_masked_in_messages_and_fields(capsys: pytest.CaptureFixture[str]) -> None:
    from engage_serving._logging import configure_logging

    configure_logging(fmt="json", pii_fields=["full_name"], id_fields=["customer_id"])
    log = logging.getLogger("engage.test")
    log.warning("refused row of ana@example.com, phone +44 20 7946 0958, customer_id=C-991 full_name='Ana B'")
    log.warning("extra fields", extra={"customer_id": "C-991", "email": "ana@example.com"})
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    text = json.dumps(lines)
    for secret in ("ana@example.com", "7946", "C-991", "Ana B"):
        assert secret not in text
    assert lines[0]["logger"] == "engage.test"
    assert "customer_id=id:" in lines[0]["message"]
    assert lines[1]["customer_id"].startswith("id:")
    assert lines[1]["email"] == "***"
    logging.getLogger().handlers.clear()


def test_large_batches_are_checked_a_column_at_a_time_with_the_same_result(contract: Any) -> None:
    from engage.encoding import COLUMNAR_FROM

    rng = np.random.default_rng(0)
    rows = [
        {"sessions_30d": int(rng.integers(0, 9)), "avg_session_minutes": None if i % 7 == 0 else float(rng.random()),
         "nps_score": int(rng.integers(0, 11)), "plan": ["free", "basic", "premium"][i % 3], "customer_id": f"C{i}"}
        for i in range(COLUMNAR_FROM + 5)
    ]  # fmt: skip
    big = Decoder(Encoder.for_model(FEATURES, contract, strict=True), contract, max_rows=1000)
    fast = big.v1({"instances": rows})
    slow = np.vstack([big.v1({"instances": [row]}).X for row in rows])
    np.testing.assert_array_equal(fast.X, slow)
    assert fast.extras["customer_id"][3] == "C3"
    rows[20]["plan"] = "gold"  # one bad value: the row-by-row path names it
    with pytest.raises(RequestRejected) as caught:
        big.v1({"instances": rows})
    assert caught.value.details == [
        {"row": 20, "field": "plan", "error": "unknown category 'gold'; known: free, basic, premium"}
    ]


def test_the_one_row_link_is_xgboosts_float32_arithmetic() -> None:
    from engage_serving.predictor._model import _link32

    margins = np.linspace(-12, 12, 2001, dtype=np.float32)
    expected = (
        np.float32(1) / (np.exp(-margins.astype(np.float64)).astype(np.float32) + np.float32(1))
    ).astype(np.float32)
    got = np.array([_link32("logistic", float(m)) for m in margins], dtype=np.float32)
    assert np.max(np.abs(got - expected)) <= 6e-8  # at most one float32 step, where exp itself rounds
    assert _link32("exp", 2.0) == float(np.float32(np.exp(2.0)))
    assert _link32("identity", 0.25) == 0.25
