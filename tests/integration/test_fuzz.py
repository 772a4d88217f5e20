"""Fuzzing the servers' HTTP APIs: no client mistake may ever get a 5xx.

schemathesis generates requests from each server's own OpenAPI document (KServe's routes, including
V2 ``/infer`` bodies from its request model); hypothesis adds what that document cannot describe:
arbitrary JSON and near-valid rows on V1 ``:predict``, whose body KServe leaves untyped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.serving_support import Server, run_server

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def predictor(model_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("fuzz") / "predictor.log"
    with run_server("engage_serving.predictor", ["--model_dir", str(model_folder / "model")], log) as server:
        yield server


def fuzz_openapi(server: Server, *, examples: int = 25) -> list[str]:
    """Every operation of the server's OpenAPI document, fed schemathesis-generated requests (the
    pytest plugin of schemathesis 4.32 does not run on pytest 9, so its strategies are used directly)."""
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    tried = []
    for result in schema.get_all_operations():
        operation = result.ok()
        tried.append(operation.label)

        @settings(
            max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        @given(case=operation.as_strategy())
        def call(case: Any) -> None:
            answer = case.call(base_url=server.url, timeout=30)
            assert answer.status_code < 500, (
                f"{case.method} {case.formatted_path}: {answer.status_code} {answer.text[:300]}"
            )

        call()
    return tried


@pytest.fixture(scope="module")
def valid_row(model_folder: Path) -> dict[str, Any]:
    from engage.tables import read_table

    frame = read_table(model_folder / "drift_reference" / "reference.parquet")
    row: dict[str, Any] = json.loads(frame.head(1).to_json(orient="records"))[0]
    return row


def test_predictor_openapi_routes_never_answer_5xx(predictor: Server) -> None:
    tried = fuzz_openapi(predictor)
    assert "POST /v2/models/{model_name}/infer" in tried
    assert "POST /v1/models/{model_name}:predict" in tried


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
ODD_VALUES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=6)
    | st.lists(st.integers(), max_size=2)
)


def _post(server: Server, path: str, body: Any) -> httpx.Response:
    """POST ``body`` as Python's json writes it: NaN and Infinity as bare words, as careless clients do."""
    content = json.dumps(body, allow_nan=True).encode()
    return httpx.post(
        server.url + path, content=content, headers={"content-type": "application/json"}, timeout=30
    )


def _assert_client_error_or_ok(answer: httpx.Response) -> None:
    assert answer.status_code < 500, answer.text
    body = answer.json()
    if answer.status_code >= 400:
        assert isinstance(body.get("error"), str)
        assert body["error"]


@FUZZ
@given(body=JSON)
def test_predictor_takes_any_json_without_a_5xx(predictor: Server, body: Any) -> None:
    for path in ("/v1/models/engage:predict", "/v2/models/engage/infer"):
        _assert_client_error_or_ok(_post(predictor, path, body))


@FUZZ
@given(data=st.data())
def test_near_valid_rows_are_answered_or_refused_precisely(
    predictor: Server, valid_row: dict[str, Any], data: Any
) -> None:
    row = dict(valid_row)
    for name in data.draw(st.lists(st.sampled_from(sorted(row)), max_size=3, unique=True)):
        if data.draw(st.booleans()):
            row[name] = data.draw(ODD_VALUES)
        else:
            del row[name]
    answer = _post(predictor, "/v1/models/engage:predict", {"instances": [row]})
    _assert_client_error_or_ok(answer)
    if answer.status_code == 422:
        assert answer.json()["details"][0]["field"] in valid_row


@FUZZ
@given(body=st.binary(max_size=64))
def test_bytes_that_are_not_json_get_400(predictor: Server, body: bytes) -> None:
    answer = httpx.post(
        predictor.url + "/v1/models/engage:predict",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert answer.status_code in (200, 400, 413, 422), answer.text


@pytest.fixture(scope="module")
def explainer(model_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("fuzz") / "explainer.log"
    env = {"ENGAGE_EXPLAIN_LIME_SAMPLES": "200", "ENGAGE_EXPLAIN_COUNTERFACTUAL_SAMPLES": "200"}
    args = ["--model_dir", str(model_folder / "model"), "--licence_clean", "true"]
    with run_server("engage_serving.explainer", args, log, env=env) as server:
        yield server


@pytest.fixture(scope="module")
def drift_detector(model_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("fuzz") / "drift.log"
    args = ["--model_dir", str(model_folder / "model"), "--backend", "scipy"]
    with run_server("engage_serving.drift_detector", args, log) as server:
        yield server


def test_explainer_openapi_routes_never_answer_5xx(explainer: Server) -> None:
    assert "POST /v1/models/{model_name}:explain" in fuzz_openapi(explainer, examples=15)


def test_drift_detector_openapi_routes_never_answer_5xx(drift_detector: Server) -> None:
    fuzz_openapi(drift_detector, examples=15)


@FUZZ
@given(body=JSON, method=st.sampled_from(["tree_shap", "reasons", "lime", "nope", None]))
def test_explainer_takes_any_json_without_a_5xx(
    explainer: Server, valid_row: dict[str, Any], body: Any, method: Any
) -> None:
    _assert_client_error_or_ok(_post(explainer, "/v1/models/engage:explain", body))
    broken = {**valid_row, "plan": body} if isinstance(body, str | int | None) else {}
    request = {"instances": [broken], **({"method": method} if method else {})}
    _assert_client_error_or_ok(_post(explainer, "/v1/models/engage:explain", request))


@FUZZ
@given(
    body=JSON,
    kind=st.sampled_from(
        ["org.kubeflow.serving.inference.request", "org.kubeflow.serving.inference.response", "other"]
    ),
)
def test_drift_detector_takes_any_event_without_a_5xx(drift_detector: Server, body: Any, kind: str) -> None:
    content = json.dumps(body, allow_nan=True).encode()
    headers = {
        "content-type": "application/json",
        "ce-type": kind,
        "ce-id": "1",
        "ce-source": "fuzz",
        "ce-specversion": "1.0",
    }
    answer = httpx.post(drift_detector.url + "/", content=content, headers=headers, timeout=30)
    _assert_client_error_or_ok(answer)
    _assert_client_error_or_ok(_post(drift_detector, "/v1/models/engage:predict", body))
