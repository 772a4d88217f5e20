"""The predictor as a real KServe server process on loopback: both protocols, predictions equal to the
library's, every kind of bad input refused precisely, metrics, logs, and a model that fails its checks."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.serving_support import Server, flip_a_byte, run_server

MODULE = "engage_serving.predictor"
PREDICT = "/v1/models/engage:predict"
INFER = "/v2/models/engage/infer"
OUTPUTS = ("churn_probability", "engagement_score", "ltv")


@pytest.fixture(scope="module")
def reference(model_folder: Path) -> Any:
    from engage.tables import read_table

    return read_table(model_folder / "drift_reference" / "reference.parquet")


@pytest.fixture(scope="module")
def rows(reference: Any) -> list[dict[str, Any]]:
    return json.loads(reference.head(300).to_json(orient="records"))


@pytest.fixture(scope="module")
def server(model_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("predictor") / "server.log"
    args = ["--model_dir", str(model_folder / "model"), "--max_body_bytes", "200000", "--max_rows", "500"]
    with run_server(MODULE, args, log) as s:
        yield s


def post(server: Server, path: str, body: Any, **kwargs: Any) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=30, **kwargs)


def expected(model_folder: Path, rows: list[dict[str, Any]]) -> Any:
    import pandas as pd

    from engage.training import load_bundle

    return load_bundle(model_folder / "model").predict(pd.DataFrame(rows))


@pytest.mark.parametrize("n", [1, 3, 16, 17, 300])
def test_v1_predictions_equal_the_library_for_one_row_and_batches(
    server: Server, model_folder: Path, rows: list[dict[str, Any]], n: int
) -> None:
    from engage.training import bundle_version

    answer = post(server, PREDICT, {"instances": rows[:n]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model_version"] == bundle_version(model_folder / "model")
    assert len(body["predictions"]) == n
    want = expected(model_folder, rows[:n])
    for output in OUTPUTS:
        got = np.array([p[output] for p in body["predictions"]])
        np.testing.assert_allclose(got, want[output].to_numpy(), rtol=1e-6, atol=1e-6)


def test_v2_columns_and_matrix_answer_as_v1(
    server: Server, rows: list[dict[str, Any]], model_folder: Path
) -> None:
    from engage.encoding import Encoder
    from engage.training import load_bundle

    some = rows[:5]
    v1 = post(server, PREDICT, {"instances": some}).json()["predictions"]
    features = load_bundle(model_folder / "model").features
    columns = [
        {"name": name, "shape": [5], "datatype": "BYTES" if name in features.categorical else "FP64",
         "data": [r[name] for r in some]}
        for name in features.columns
    ]  # fmt: skip
    answer = post(server, INFER, {"id": "r-1", "inputs": columns})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["id"] == "r-1"
    assert body["model_version"].startswith("sha256:")
    by_name = {o["name"]: o["data"] for o in body["outputs"]}
    matrix = Encoder.for_model(features).rows(some)
    flat = [None if np.isnan(v) else float(v) for v in matrix.ravel()]
    answer2 = post(
        server,
        INFER,
        {
            "inputs": [
                {"name": "input-0", "shape": [5, len(features.columns)], "datatype": "FP32", "data": flat}
            ]
        },
    )
    assert answer2.status_code == 200, answer2.text
    by_name2 = {o["name"]: o["data"] for o in answer2.json()["outputs"]}
    for output in OUTPUTS:
        np.testing.assert_allclose(by_name[output], [p[output] for p in v1], rtol=1e-6)
        np.testing.assert_allclose(by_name2[output], [p[output] for p in v1], rtol=1e-5)


def test_the_customer_id_rides_along_and_is_echoed(server: Server, rows: list[dict[str, Any]]) -> None:
    answer = post(server, PREDICT, {"instances": [{**rows[0], "customer_id": "C-42"}]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"][0]["customer_id"] == "C-42"


def _refused(answer: httpx.Response, status: int, reason: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = answer.json()
    assert body["reason"] == reason, body
    return body


def test_a_row_with_3_of_the_features_is_refused_naming_every_missing_one(
    server: Server, rows: list[dict[str, Any]]
) -> None:
    partial = dict(list(rows[0].items())[:3])
    body = _refused(post(server, PREDICT, {"instances": [partial]}), 422, "missing_feature")
    missing = {d["field"] for d in body["details"]}
    assert len(missing) == len(rows[0]) - 3
    assert all(d["row"] == 0 for d in body["details"])


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("sessions_30d", "many", "wrong_type"),
        ("sessions_30d", 2.5, "wrong_type"),
        ("sessions_30d", True, "wrong_type"),
        ("sessions_30d", None, "null_not_allowed"),
        ("sessions_30d", -4, "out_of_range"),
        ("plan", "platinum", "unknown_category"),
        ("plan", 3, "wrong_type"),
        ("nps_scor", 3, "unknown_field"),
    ],
)
def test_a_bad_value_is_refused_with_the_row_and_field(
    server: Server, rows: list[dict[str, Any]], field: str, value: Any, reason: str
) -> None:
    bad = [dict(rows[0]), {**rows[1], field: value}]
    body = _refused(post(server, PREDICT, {"instances": bad}), 422, reason)
    assert body["details"][0]["row"] == 1
    assert body["details"][0]["field"] == field
    if field == "nps_scor":
        assert "did you mean 'nps_score'" in body["details"][0]["error"]


def test_shapes_that_do_not_match_their_data_are_refused(server: Server, rows: list[dict[str, Any]]) -> None:
    _refused(post(server, PREDICT, {"instances": [[1, 2, 3]]}), 422, "feature_count")
    tensor = {"name": "input-0", "shape": [2, 21], "datatype": "FP32", "data": [0.0] * 41}
    _refused(post(server, INFER, {"inputs": [tensor]}), 422, "shape_mismatch")


@pytest.mark.parametrize(
    ("body", "reason"),
    [(b"{not json", "malformed_json"), (b"[]", "malformed_request"), (b"{}", "no_instances"),
     (b'{"instances": []}', "no_instances"), (b'{"instances": {"a": 1}}', "no_instances")],
)  # fmt: skip
def test_malformed_bodies_get_400(server: Server, body: bytes, reason: str) -> None:
    answer = httpx.post(server.url + PREDICT, content=body, headers={"content-type": "application/json"})
    _refused(answer, 400, reason)


def test_limits_give_413_before_parsing(server: Server, rows: list[dict[str, Any]]) -> None:
    big = b'{"instances": [' + b"0," * 150_000 + b"0]}"
    _refused(
        httpx.post(server.url + PREDICT, content=big, headers={"content-type": "application/json"}),
        413,
        "body_too_large",
    )

    def chunks() -> Iterator[bytes]:  # no content-length: counted while read
        for _ in range(30):
            yield b" " * 10_000

    answer = httpx.post(server.url + PREDICT, content=chunks(), headers={"content-type": "application/json"})
    _refused(answer, 413, "body_too_large")
    _refused(post(server, PREDICT, {"instances": [[0]] * 501}), 413, "too_many_rows")


def test_metrics_show_predictions_refusals_version_and_a_0_2_s_bucket(
    server: Server, rows: list[dict[str, Any]]
) -> None:
    post(server, PREDICT, {"instances": rows[:2]})
    post(server, PREDICT, {"instances": [{}]})
    text = httpx.get(server.url + "/metrics").text
    assert (
        'engage_request_duration_seconds_bucket{code="200",le="0.2",model="engage",route="predict"}' in text
    )
    assert 'engage_request_rejected_total{model="engage",reason="missing_feature",route="predict"}' in text
    assert 'engage_prediction_bucket{head="churn_probability"' in text
    assert "engage_prediction_ltv_count" in text
    assert 'engage_model_info{heads="churn,engagement_score,ltv"' in text
    assert 'request_predict_seconds_count{model_name="engage"}' in text  # KServe's own histogram


def test_logs_are_json_lines(server: Server) -> None:
    lines = [line for line in server.log().splitlines() if line.strip()]
    assert lines
    assert all(json.loads(line)["level"] for line in lines)
    assert any("ready: version sha256:" in json.loads(line)["message"] for line in lines)


def test_a_changed_model_file_is_never_ready_and_says_why(
    model_folder: Path, tmp_path: Path, rows: list[dict[str, Any]]
) -> None:
    broken = tmp_path / "model"
    shutil.copytree(model_folder / "model", broken)
    target = broken / "churn" / "model.ubj"
    flip_a_byte(target)
    with run_server(MODULE, ["--model_dir", str(broken)], tmp_path / "server.log", ready=False) as s:
        assert httpx.get(s.url + "/v2/health/ready").status_code == 503
        assert httpx.get(s.url + "/v2/models/engage/ready").status_code == 503
        answer = post(s, PREDICT, {"instances": rows[:1]})
        assert answer.status_code == 503
        assert "churn/model.ubj" in answer.json()["error"]
        errors = [json.loads(line) for line in s.log().splitlines() if '"ERROR"' in line]
        assert len(errors) == 1
        assert "NOT READY" in errors[0]["message"]
        assert "SHA-256 mismatch" in errors[0]["message"]


def test_a_missing_model_folder_is_never_ready(tmp_path: Path) -> None:
    with run_server(
        MODULE, ["--model_dir", str(tmp_path / "nothing")], tmp_path / "server.log", ready=False
    ) as s:
        answer = httpx.get(s.url + "/v2/health/ready")
        assert answer.status_code == 503
        assert "manifest.json: missing" in answer.json()["error"]


def test_a_dead_event_receiver_changes_nothing_for_callers(
    model_folder: Path, tmp_path: Path, rows: list[dict[str, Any]]
) -> None:
    from tests.serving_support import free_port

    dead = f"http://127.0.0.1:{free_port()}/"
    args = ["--model_dir", str(model_folder / "model"), "--logger_url", dead]
    with run_server(MODULE, args, tmp_path / "server.log") as s:
        answers = [post(s, PREDICT, {"instances": rows[i : i + 1]}) for i in range(50)]
        assert all(a.status_code == 200 for a in answers)
        text = httpx.get(s.url + "/metrics").text
        assert 'engage_logger_events_total{model="engage",outcome="failed"}' in text


def test_grpc_answers_as_rest_and_refuses_with_invalid_argument(
    model_folder: Path, tmp_path: Path, rows: list[dict[str, Any]], server: Server
) -> None:
    """KServe's gRPC data plane reaches the same checks and scores through PredictorModel.predict."""
    import asyncio

    import grpc
    from kserve import InferenceGRPCClient, InferInput, InferRequest

    from engage.training import load_bundle
    from tests.serving_support import free_port

    features = load_bundle(model_folder / "model").features
    some = rows[:3]
    inputs = [
        InferInput(name=name, shape=[3], datatype="BYTES" if name in features.categorical else "FP64",
                   data=[str(r[name]) if name in features.categorical else float("nan") if r[name] is None else float(r[name]) for r in some])
        for name in features.columns
    ]  # fmt: skip

    async def infer(port: int, tensors: list[Any]) -> Any:
        client = InferenceGRPCClient(url=f"127.0.0.1:{port}")
        try:
            return await client.infer(InferRequest(model_name="engage", infer_inputs=tensors))
        finally:
            await client.close()

    port = free_port()
    args = ["--model_dir", str(model_folder / "model")]
    with run_server(MODULE, args, tmp_path / "server.log", grpc_port=port):
        answer = asyncio.run(infer(port, inputs))
        by_name = {o.name: list(o.data) for o in answer.outputs}
        rest = post(server, PREDICT, {"instances": some}).json()["predictions"]
        for output in OUTPUTS:
            np.testing.assert_allclose(by_name[output], [p[output] for p in rest], rtol=1e-6)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            asyncio.run(infer(port, [i for i in inputs if i.name != "plan"]))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert json.loads(caught.value.details())["reason"] == "missing_feature"
