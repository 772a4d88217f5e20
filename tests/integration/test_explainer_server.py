"""The explainer as a real KServe server process on loopback: the ``:explain`` answers of the methods,
bad input refused precisely, the bounded pool of sampling methods (429 when busy, 504 past the budget,
fast methods unaffected), metrics, and a model that fails its checks."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serving_support import Server, flip_a_byte, run_server

MODULE = "engage_serving.explainer"
EXPLAIN = "/v1/models/engage:explain"
MAX_BODY = 32_768
MAX_ROWS = 30
#: small sample budgets: the sampling methods answer in well under a second a row
BUDGETS = {
    "ENGAGE_EXPLAIN_KERNEL_SAMPLES": "300",
    "ENGAGE_EXPLAIN_KERNEL_BACKGROUND_ROWS": "20",
    "ENGAGE_EXPLAIN_LIME_SAMPLES": "300",
    "ENGAGE_EXPLAIN_COUNTERFACTUAL_SAMPLES": "500",
    "ENGAGE_EXPLAIN_BACKGROUND_ROWS": "100",
}


@pytest.fixture(scope="module")
def rows(model_folder: Path) -> list[dict[str, Any]]:
    from engage.tables import read_table

    reference = read_table(model_folder / "drift_reference" / "reference.parquet")
    return json.loads(reference.head(100).to_json(orient="records"))


@pytest.fixture(scope="module")
def server(model_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("explainer") / "server.log"
    args = ["--model_dir", str(model_folder / "model"), "--max_body_bytes", str(MAX_BODY)]
    args += ["--max_rows", str(MAX_ROWS), "--max_concurrent_slow", "1"]
    with run_server(MODULE, args, log, env=BUDGETS) as s:
        yield s


def explain(server: Server, body: Any, **kwargs: Any) -> httpx.Response:
    return httpx.post(server.url + EXPLAIN, json=body, timeout=60, **kwargs)


def metric(server: Server, name: str) -> float | None:
    """The value of the sample ``name`` (with its labels, as printed) on ``/metrics``."""
    for line in httpx.get(server.url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


def wait_for(server: Server, name: str, value: float, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while metric(server, name) != value:
        assert time.monotonic() < deadline, f"{name} never reached {value}"
        time.sleep(0.02)


IN_FLIGHT = 'engage_explain_slow_in_flight{model="engage"}'


def test_tree_shap_is_the_default_and_adds_up(
    server: Server, model_folder: Path, rows: list[dict[str, Any]]
) -> None:
    from engage.training import bundle_version

    answer = explain(server, {"instances": rows[:3]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"data", "meta"}
    assert body["meta"]["method"] == "tree_shap"
    assert body["meta"]["head"] == "churn"
    assert body["meta"]["model_version"] == bundle_version(model_folder / "model")
    assert body["data"]["additivity"]["ok"] is True
    assert len(body["data"]["values"]) == 3
    assert len(body["data"]["values"][0]) == len(body["data"]["feature_names"])


def test_reasons_for_another_head(server: Server, rows: list[dict[str, Any]]) -> None:
    answer = explain(server, {"instances": rows[:2], "method": "reasons", "head": "ltv"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["meta"]["head"] == "ltv"
    assert [len(r["reasons"]) for r in body["data"]["rows"]] == [5, 5]
    assert all(r["text"] for r in body["data"]["rows"][0]["reasons"])


def test_lime_runs_in_the_pool_with_the_budget_of_the_environment(
    server: Server, rows: list[dict[str, Any]]
) -> None:
    answer = explain(server, {"instances": rows[:1], "method": "lime"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["meta"]["method"] == "lime"
    assert body["meta"]["params"]["samples"] == 300
    assert body["data"]["rows"][0]["weights"]
    assert metric(server, IN_FLIGHT) == 0


def test_unknown_method_and_head_are_400_naming_the_known_ones(
    server: Server, rows: list[dict[str, Any]]
) -> None:
    answer = explain(server, {"instances": rows[:1], "method": "shapley"})
    assert answer.status_code == 400
    assert answer.json()["reason"] == "ExplainError"
    assert "'shapley'" in answer.json()["error"]
    for known in ("tree_shap", "kernel_shap", "anchors", "lime", "counterfactual", "reasons"):
        assert known in answer.json()["error"]
    answer = explain(server, {"instances": rows[:1], "method": "lime", "head": "nope"})
    assert answer.status_code == 400
    assert "churn" in answer.json()["error"]


@pytest.mark.parametrize("method", ["tree_shap", "lime"])
def test_a_missing_feature_is_422_naming_the_row_and_the_feature(
    server: Server, rows: list[dict[str, Any]], method: str
) -> None:
    broken = [rows[0], {k: v for k, v in rows[1].items() if k != "plan"}]
    answer = explain(server, {"instances": broken, "method": method})
    assert answer.status_code == 422, answer.text
    assert "row 1" in answer.json()["error"]
    assert "plan" in answer.json()["error"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({}, 'no "instances"'),
        ({"instances": []}, "empty"),
        ({"instances": [{}], "method": 3}, '"method" must be a string'),
        ({"instances": [{}], "desired": [0.5]}, '"desired" must be'),
        ({"instances": [{}], "mehtod": "lime"}, "unknown key(s) mehtod"),
    ],
)
def test_bodies_that_are_not_explain_requests_are_400(server: Server, body: Any, says: str) -> None:
    answer = explain(server, body)
    assert answer.status_code == 400, answer.text
    assert says in answer.json()["error"]


def test_malformed_json_is_400(server: Server) -> None:
    for kind in ("application/json", "text/plain"):
        answer = httpx.post(
            server.url + EXPLAIN, content=b'{"instances": [', headers={"content-type": kind}, timeout=30
        )
        assert answer.status_code == 400, (kind, answer.text)
        assert "error" in answer.json()


def test_limits_are_413(server: Server, rows: list[dict[str, Any]]) -> None:
    big = json.dumps({"instances": rows * 2}).encode()
    assert len(big) > MAX_BODY
    answer = httpx.post(server.url + EXPLAIN, content=big, headers={"content-type": "application/json"})
    assert answer.status_code == 413
    assert answer.json()["reason"] == "body_too_large"

    answer = explain(server, {"instances": rows[: MAX_ROWS + 1]})
    assert answer.status_code == 413
    assert answer.json()["reason"] == "too_many_rows"
    assert f"{MAX_ROWS} rows" in answer.json()["error"]

    answer = explain(server, {"instances": rows[:21], "method": "counterfactual"})
    assert answer.status_code == 413
    assert answer.json()["reason"] == "too_many_rows"
    assert "counterfactual explains at most 20 rows" in answer.json()["error"]


def test_a_second_slow_request_is_429_at_once_and_fast_ones_still_answer(
    server: Server, rows: list[dict[str, Any]]
) -> None:
    explain(server, {"instances": rows[:1], "method": "lime"})  # lime imported and fitted
    start = threading.Barrier(2)
    answers: list[httpx.Response] = []

    def slow() -> None:
        start.wait()
        answers.append(explain(server, {"instances": rows[:10], "method": "lime"}))

    threads = [threading.Thread(target=slow) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        wait_for(server, IN_FLIGHT, 1)
        began = time.perf_counter()
        fast = explain(server, {"instances": rows[:1]})
        took = time.perf_counter() - began
    finally:
        for t in threads:
            t.join(timeout=120)
    assert fast.status_code == 200
    assert took < 1.0, f"tree_shap took {took:.2f} s while a slow method ran"
    assert sorted(a.status_code for a in answers) == [200, 429]
    busy = next(a for a in answers if a.status_code == 429).json()
    assert busy["reason"] == "busy"
    assert "retry after" in busy["error"]
    assert len(next(a for a in answers if a.status_code == 200).json()["data"]["rows"]) == 10
    wait_for(server, IN_FLIGHT, 0)
    assert (metric(server, 'engage_explain_refused_total{model="engage",reason="busy"}') or 0) >= 1


def test_metrics(server: Server, rows: list[dict[str, Any]]) -> None:
    assert explain(server, {"instances": rows[:1]}).status_code == 200
    text = httpx.get(server.url + "/metrics", timeout=10).text
    assert 'engage_explain_duration_seconds_bucket{le="0.005",method="tree_shap",model="engage"}' in text
    assert (
        metric(server, 'engage_explain_duration_seconds_count{method="tree_shap",model="engage"}') or 0
    ) >= 1
    assert metric(server, 'engage_model_ready{model="engage",server="explainer"}') == 1
    assert 'engage_model_info{heads="churn,engagement_score,ltv",learner="xgboost"' in text


@pytest.mark.slow
def test_past_its_budget_a_slow_call_is_504_and_holds_its_slot_until_it_ends(
    model_folder: Path, rows: list[dict[str, Any]], tmp_path: Path
) -> None:
    args = ["--model_dir", str(model_folder / "model"), "--slow_timeout_seconds", "0.05"]
    with run_server(MODULE, args, tmp_path / "server.log", env=BUDGETS) as server:
        answer = explain(server, {"instances": rows[:2], "method": "lime"})
        assert answer.status_code == 504, answer.text
        assert answer.json()["reason"] == "timeout"
        assert "0.05 s" in answer.json()["error"]
        # the thread still runs: its slot is taken until it ends
        assert metric(server, IN_FLIGHT) == 1
        assert explain(server, {"instances": rows[:1], "method": "lime"}).status_code == 429
        assert explain(server, {"instances": rows[:1]}).status_code == 200
        wait_for(server, IN_FLIGHT, 0)
        assert metric(server, 'engage_explain_refused_total{model="engage",reason="timeout"}') == 1


def test_a_corrupted_model_is_never_ready(
    model_folder: Path, rows: list[dict[str, Any]], tmp_path: Path
) -> None:
    copy = tmp_path / "version"
    shutil.copytree(model_folder / "model", copy / "model")
    shutil.copytree(model_folder / "drift_reference", copy / "drift_reference")
    target = copy / "model" / "churn" / "model.ubj"
    flip_a_byte(target)

    args = ["--model_dir", str(copy / "model")]
    with run_server(MODULE, args, tmp_path / "server.log", ready=False) as server:
        ready = httpx.get(server.url + "/v2/health/ready", timeout=10)
        assert ready.status_code == 503
        assert "churn/model.ubj" in ready.json()["error"]
        assert explain(server, {"instances": rows[:1]}).status_code == 503
        assert metric(server, 'engage_model_ready{model="engage",server="explainer"}') == 0
        log = server.log()
    errors = [line for line in log.splitlines() if '"level": "ERROR"' in line and "churn/model.ubj" in line]
    assert len(errors) == 1, log[-3000:]
    assert "NOT READY" in errors[0]
