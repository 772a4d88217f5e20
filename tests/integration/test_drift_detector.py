"""The drift detector server for real: ``python -m engage_serving.drift_detector`` on a loopback port,
fed CloudEvents as KServe's InferenceService logger posts them, on a small model trained here.

One server serves the module (window 400 rows, a test every 400 rows); a second one, started beside it on
a copy of the model with one byte flipped, shows the not-ready path.
"""

from __future__ import annotations

import base64
import json
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import orjson
import pandas as pd
import pytest

from engage.encoding import MISSING_FEATURE, describe
from tests.serving_support import Server, build_model_folder, flip_a_byte, run_server

MODULE = "engage_serving.drift_detector"
NAME = "engage"
WINDOW = 400
BATCH = 50
REQUEST = "org.kubeflow.serving.inference.request"
RESPONSE = "org.kubeflow.serving.inference.response"
MAX_BODY = 1_000_000


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model_folder(tmp_path_factory.mktemp("drift"), rows=2_000, max_rounds=30)


@pytest.fixture(scope="module")
def reference(folder: Path) -> pd.DataFrame:
    from engage.tables import read_table

    return read_table(folder / "drift_reference" / "reference.parquet")


@pytest.fixture(scope="module")
def servers(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    """The module's server, and one on a copy of the model with one byte flipped, started side by side
    (each spends most of its start-up importing)."""
    work = tmp_path_factory.mktemp("drift-servers")
    corrupted = work / "corrupted"
    shutil.copytree(folder / "model", corrupted / "model")
    shutil.copytree(folder / "drift_reference", corrupted / "drift_reference")
    target = corrupted / "model" / "churn" / "model.ubj"
    flip_a_byte(target)
    args = [
        "--model_dir",
        str(folder / "model"),
        "--window_size",
        str(WINDOW),
        "--test_every_rows",
        str(WINDOW),
    ]
    args += ["--max_body_bytes", str(MAX_BODY), "--max_rows", "1000"]
    env = {"ENGAGE_DRIFT_MIN_ROWS": "200", "ENGAGE_DRIFT_TEST_EVERY_SECONDS": "600"}
    good = run_server(MODULE, args, work / "server.log", env=env)
    bad = run_server(MODULE, ["--model_dir", str(corrupted / "model")], work / "corrupted.log", ready=False)
    with ExitStack() as stack, ThreadPoolExecutor(2) as pool:
        started = [pool.submit(stack.enter_context, server) for server in (good, bad)]
        yield started[0].result(), started[1].result()


@pytest.fixture(scope="module")
def server(servers: tuple[Server, Server]) -> Server:
    return servers[0]


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as a client sends them (JSON objects)."""
    parsed: list[dict[str, Any]] = json.loads(frame.to_json(orient="records"))
    return parsed


def predictions(folder: Path, frame: pd.DataFrame) -> list[dict[str, float]]:
    """What the predictor answers for ``frame`` (v1 ``predictions``)."""
    from engage.training import load_bundle

    scored = load_bundle(folder / "model").predict(frame.reset_index(drop=True))
    return [{str(k): float(v) for k, v in row.items()} for row in scored.to_dict(orient="records")]


def binary_event(client: httpx.Client, kind: str, payload: Any, path: str = "/") -> httpx.Response:
    """A CloudEvent in binary mode, as KServe's logger sends it."""
    headers = {
        "ce-specversion": "1.0",
        "ce-type": kind,
        "ce-source": "http://localhost:9081/",
        "ce-id": str(time.monotonic_ns()),
        "ce-inferenceservicename": "customers",
        "ce-component": "predictor",
        "content-type": "application/json",
    }
    return client.post(path, content=orjson.dumps(payload), headers=headers)


def send_traffic(client: httpx.Client, folder: Path, rows: pd.DataFrame) -> None:
    """Responses first, then requests: the window test (due at the last request) sees both."""
    instances, predicted = records(rows), predictions(folder, rows)
    for start in range(0, len(rows), BATCH):
        answer = binary_event(
            client, RESPONSE, {"predictions": predicted[start : start + BATCH], "model_version": "v"}
        )
        assert answer.status_code == 202, answer.text
    for start in range(0, len(rows), BATCH):
        batch = instances[start : start + BATCH]
        if start == 0:  # v2 request: one tensor per feature
            features = list(rows.columns)
            body = {
                "inputs": [
                    {"name": f, "shape": [len(batch)], "datatype": "BYTES", "data": [r[f] for r in batch]}
                    for f in features
                ]
            }
            answer = binary_event(client, REQUEST, body, "/events")
        elif start == BATCH:  # structured mode
            event = {
                "specversion": "1.0",
                "type": REQUEST,
                "source": "test",
                "id": "s1",
                "data": {"instances": batch},
            }
            answer = client.post(
                "/", content=orjson.dumps(event), headers={"content-type": "application/cloudevents+json"}
            )
        else:
            answer = binary_event(client, REQUEST, {"instances": batch})
        assert answer.status_code == 202, answer.text
        assert answer.json() == {"accepted": len(batch)}


def next_result(client: httpx.Client, after: str | None, timeout: float = 30.0) -> dict[str, Any]:
    """Wait for a window test newer than ``after`` (a ``tested_at``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result: dict[str, Any] = client.get(f"/v1/models/{NAME}/drift").json()
        if result["data"] is not None and result["meta"]["tested_at"] != after:
            return result
        time.sleep(0.1)
    raise AssertionError(f"no new window test within {timeout} s")


def gauges(client: httpx.Client, name: str, label: str | None = None) -> dict[str, float]:
    """One metric of this server's model on ``/metrics``, keyed by the value of ``label`` ("" without)."""
    found = {}
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + "{"):
            labels, value = line[len(name) + 1 :].rsplit("} ", 1)
            pairs = dict(pair.split("=", 1) for pair in labels.split(","))
            if pairs.get("model") == f'"{NAME}"':
                found[pairs[label].strip('"') if label else ""] = float(value)
    return found


def shifted(rows: pd.DataFrame) -> pd.DataFrame:
    """Older customers using the product far more, all on the premium plan."""
    moved = rows.copy()
    moved["tenure_days"] = moved["tenure_days"] + 700
    moved["sessions_30d"] = moved["sessions_30d"] * 3 + 10
    moved["plan"] = "premium"
    return moved


def test_logger_traffic_moves_the_gauges_only_when_it_drifts(
    server: Server, folder: Path, reference: pd.DataFrame
) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        before = client.get(f"/v1/models/{NAME}/drift").json()
        assert before["data"] is None
        assert before["meta"]["reason"].startswith("no test yet: ")
        assert before["meta"]["reason"].endswith(" of 200 rows")

        usual = reference.sample(WINDOW, random_state=3)
        send_traffic(client, folder, usual)
        calm = next_result(client, None)
        assert calm["data"]["window_rows"] == WINDOW
        assert calm["data"]["is_drift"] == 0, calm["data"]["p_val"]
        assert calm["meta"]["backend"] == "alibi-detect"
        assert {h: t["is_drift"] for h, t in calm["data"]["prediction_drift"].items()} == {
            "churn_probability": 0,
            "engagement_score": 0,
            "ltv": 0,
        }
        assert gauges(client, "engage_drift_detected") == {"": 0.0}
        assert gauges(client, "engage_drift_window_rows") == {"": float(WINDOW)}
        assert set(gauges(client, "engage_prediction_drift_p_value", "head")) == {
            "churn_probability",
            "engagement_score",
            "ltv",
        }

        send_traffic(client, folder, shifted(reference.sample(WINDOW, random_state=4)))
        drift = next_result(client, calm["meta"]["tested_at"])
        assert drift["data"]["is_drift"] == 1
        assert {f for f, flag in drift["data"]["feature_drift"].items() if flag} >= {
            "tenure_days",
            "sessions_30d",
            "plan",
        }
        assert gauges(client, "engage_drift_detected") == {"": 1.0}
        detected = gauges(client, "engage_drift_feature_detected", "feature")
        assert (detected["tenure_days"], detected["country"]) == (1.0, 0.0)
        assert gauges(client, "engage_drift_feature_p_value", "feature")["tenure_days"] < 1e-6
        assert set(gauges(client, "engage_drift_feature_statistic", "feature")) == set(reference.columns)
        assert gauges(client, "engage_drift_events_total", "type") == {"request": 16.0, "response": 16.0}
        assert gauges(client, "engage_drift_test_duration_seconds_count") == {"": 2.0}
        assert set(gauges(client, "engage_drift_outlier_share")) == {""}
    assert "drift test of 400 rows: DRIFT in " in server.log()


def test_direct_rows_are_tested_at_once(server: Server, reference: pd.DataFrame) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        calm = client.post(
            f"/v1/models/{NAME}:predict", json={"instances": records(reference.sample(300, random_state=5))}
        )
        moved = client.post(
            f"/v1/models/{NAME}:predict",
            json={"instances": records(shifted(reference.sample(300, random_state=6)))},
        )
    assert calm.status_code == moved.status_code == 200
    assert (calm.json()["data"]["is_drift"], moved.json()["data"]["is_drift"]) == (0, 1)
    assert moved.json()["data"]["window_rows"] == 300
    # the model scored the rows: prediction drift is tested too
    assert set(moved.json()["data"]["prediction_drift"]) == {"churn_probability", "engagement_score", "ltv"}


@pytest.mark.parametrize(
    ("headers", "body", "status", "reason", "detail"),
    [
        ({"ce-type": REQUEST}, b'{"instances": [', 400, "malformed_json", None),
        ({"ce-type": "org.example.unknown"}, b"{}", 400, "unknown_event", None),
        ({"content-type": "application/cloudevents+json"}, b'{"data": {}}', 400, "bad_event", None),
        ({"ce-type": REQUEST}, b'{"rows": []}', 400, "malformed_request", None),
        (
            {"ce-type": REQUEST},
            b'{"instances": [{"tenure_days": 3}]}',
            422,
            "missing_feature",
            {"row": 0, "field": "sessions_30d", "error": MISSING_FEATURE},
        ),
        (
            {"ce-type": RESPONSE},
            b'{"predictions": [1, 2]}',
            422,
            "wrong_type",
            {"row": 0, "field": None, "error": f"not an object: {describe(1)}"},
        ),
        (
            {},
            b'{"instances": [{"tenure_days": "long"}]}',
            422,
            "wrong_type",
            {"row": 0, "field": "tenure_days", "error": f"expected a number, got {describe('long')}"},
        ),
    ],
)
def test_bad_events_get_a_4xx_with_a_json_error(
    server: Server,
    headers: dict[str, str],
    body: bytes,
    status: int,
    reason: str,
    detail: dict[str, Any] | None,
) -> None:
    answer = httpx.post(
        server.url + "/events", content=body, headers={"content-type": "application/json", **headers}
    )
    assert answer.status_code == status
    assert answer.json()["reason"] == reason
    assert answer.json()["error"]
    if detail is not None:
        assert detail in answer.json()["details"]


def test_oversize_bodies_and_row_counts_get_413(server: Server, reference: pd.DataFrame) -> None:
    big = b'{"instances": [' + b" " * MAX_BODY + b"]}"
    answer = httpx.post(
        server.url + "/", content=big, headers={"ce-type": REQUEST, "content-type": "application/json"}
    )
    assert (answer.status_code, answer.json()["reason"]) == (413, "body_too_large")
    many: dict[str, list[dict[str, Any]]] = {"instances": [{}] * 1001}
    answer = httpx.post(f"{server.url}/v1/models/{NAME}:predict", json=many)
    assert (answer.status_code, answer.json()["reason"]) == (413, "too_many_rows")
    with httpx.Client(base_url=server.url) as client:
        assert gauges(client, "engage_request_rejected_total", "reason")["body_too_large"] >= 1


def test_a_corrupted_model_is_never_ready_and_says_why_once(servers: tuple[Server, Server]) -> None:
    bad = servers[1]
    ready = httpx.get(bad.url + "/v2/health/ready")
    event = httpx.post(bad.url + "/", json={"instances": []}, headers={"ce-type": REQUEST})
    drift = httpx.get(f"{bad.url}/v1/models/{NAME}/drift")
    assert (ready.status_code, ready.json()["reason"]) == (503, "not_ready")
    assert "churn" in ready.json()["error"]
    assert event.status_code == drift.status_code == 503
    log = bad.log()
    errors = [json.loads(line) for line in log.splitlines() if '"level": "ERROR"' in line]
    assert len(errors) == 1, log[-2000:]
    assert "NOT READY (corrupt or changed model files)" in errors[0]["message"]
    assert "model.ubj" in errors[0]["message"]


def test_a_structured_event_may_carry_its_data_in_base64(server: Server, reference: pd.DataFrame) -> None:
    """A structured CloudEvent may carry its data in ``data_base64``."""
    rows = records(reference.head(2))
    event = {
        "specversion": "1.0",
        "type": REQUEST,
        "data_base64": base64.b64encode(orjson.dumps({"instances": rows})).decode(),
    }
    answer = httpx.post(
        server.url + "/",
        content=orjson.dumps(event),
        headers={"content-type": "application/cloudevents+json"},
    )
    assert answer.status_code == 202
    assert answer.json() == {"accepted": 2}
