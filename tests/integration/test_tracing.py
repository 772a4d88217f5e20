"""Tracing of a real predictor process on loopback, read back by an in-process OTLP/HTTP receiver:
every error trace arrives, successes at the configured share (all at 1, the default's exact set by
trace id), a caller's ``traceparent`` is continued, and the logger's CloudEvents carry it on."""

from __future__ import annotations

import json
import random
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from engage.telemetry.tracing import within_ratio
from tests.serving_support import Server, flip_a_byte, run_server
from tests.tracing_support import KIND_SERVER, STATUS_ERROR, Receiver, otlp_receiver

MODULE = "engage_serving.predictor"
PREDICT = "/v1/models/engage:predict"
INFER = "/v2/models/engage/infer"
ROUTE = "POST /v1/models/{model}:predict"
LOW_64 = (1 << 64) - 1


@pytest.fixture(scope="module")
def rows(model_folder: Path) -> list[dict[str, Any]]:
    from engage.tables import read_table

    frame = read_table(model_folder / "drift_reference" / "reference.parquet")
    return list(json.loads(frame.head(20).to_json(orient="records")))


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with otlp_receiver() as r:
        yield r


def tracing_env(receiver: Receiver, ratio: float | None) -> dict[str, str]:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    if ratio is not None:
        env["ENGAGE_TRACING_SUCCESS_SAMPLE_RATIO"] = str(ratio)
    return env


def traceparent(trace_id: int, span_id: int = 0x00F067AA0BA902B7) -> dict[str, str]:
    return {"traceparent": f"00-{trace_id:032x}-{span_id:016x}-01"}


def servers_of(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [s for s in spans if s["kind"] == KIND_SERVER]


class _Events:
    """A stand-in for the drift detector: keeps the headers of each CloudEvent posted to it."""

    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []
        events = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", "0")))
                events.headers.append({k.lower(): v for k, v in self.headers.items()})
                self.send_response(202)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def events() -> Iterator[_Events]:
    stand_in = _Events()
    yield stand_in
    stand_in.close()


def test_every_success_at_ratio_one_with_its_attributes_children_and_the_callers_trace(
    model_folder: Path, rows: list[dict[str, Any]], receiver: Receiver, events: _Events, tmp_path: Path
) -> None:
    from engage.training import bundle_version

    receiver.clear()
    args = ["--model_dir", str(model_folder / "model"), "--logger_url", events.url, "--max_rows", "50"]
    with run_server(MODULE, args, tmp_path / "server.log", env=tracing_env(receiver, 1.0)) as server:
        for i in range(10):
            assert post(server, PREDICT, {"instances": rows[i : i + 2]}).status_code == 200
        caller = 0x0AF7651916CD43DD8448EB211C80319C
        assert post(server, PREDICT, {"instances": rows[:3]}, traceparent(caller)).status_code == 200
        v2 = {
            "inputs": [
                {"name": k, "shape": [1], "datatype": "BYTES", "data": [v]} for k, v in rows[0].items()
            ]
        }
        infer = post(server, INFER, v2)
        refused = post(server, PREDICT, {"instances": [{"tenure_months": "many"}]})
        too_many = post(server, PREDICT, {"instances": rows[:1] * 51})
        assert httpx.get(server.url + "/v2/health/ready").status_code == 200
        spans = receiver.wait_for(lambda s: len(servers_of(s)) >= 14)
    version = bundle_version(model_folder / "model")
    servers = servers_of(spans)
    predicts = [s for s in servers if s["name"] == ROUTE]
    assert len(predicts) == 13  # every request (the readiness probe is not traced)
    ok = [s for s in predicts if s["attributes"]["http.response.status_code"] == 200]
    assert len(ok) == 11
    for span in ok:
        attributes = span["attributes"]
        assert attributes["http.request.method"] == "POST"
        assert attributes["http.route"] == "/v1/models/{model}:predict"
        assert attributes["engage.model.name"] == "engage"
        assert attributes["engage.model.version"] == version
        assert attributes["engage.request.rows"] in (2, 3)
        assert span["status"] != STATUS_ERROR
        assert span["resource"]["service.name"] == "engage-predictor"
        assert span["resource"]["engage.model.version"] == version
        children = sorted(c["name"] for c in spans if c["parent_span_id"] == span["span_id"])
        assert children == ["decode", "encode", "predict"]
    (continued,) = (s for s in ok if s["trace_id"] == f"{caller:032x}")
    assert continued["parent_span_id"] == "00f067aa0ba902b7"
    assert continued["attributes"]["engage.request.rows"] == 3
    # the V2 route, and the refusals with their reason
    assert infer.status_code in (200, 422), infer.text
    (v2_span,) = (s for s in servers if s["name"] == "POST /v2/models/{model}/infer")
    assert v2_span["attributes"]["http.response.status_code"] == infer.status_code
    for answer in (refused, too_many):
        assert 400 <= answer.status_code < 500, answer.text
        (span,) = (s for s in predicts if s["attributes"]["http.response.status_code"] == answer.status_code)
        assert span["attributes"]["engage.rejection.reason"] == answer.json()["reason"]
        assert span["status"] != STATUS_ERROR
    # the logger's CloudEvents carry the request's trace on to the drift detector
    traces = {h["traceparent"].split("-")[1] for h in events.headers if "traceparent" in h}
    assert {s["trace_id"] for s in ok} <= traces


@pytest.mark.long  # a predictor of its own for 40 traced requests and two refusals: about 13 s (make test keeps the other tracing tests)
def test_the_default_share_keeps_exactly_the_trace_ids_within_it(
    model_folder: Path, rows: list[dict[str, Any]], receiver: Receiver, tmp_path: Path
) -> None:
    rng = random.Random(11)
    bound = round(0.1 * (LOW_64 + 1))
    # ten trace ids within the default 10 %, thirty outside it, shuffled
    ids = [(rng.getrandbits(64) << 64) | rng.randrange(0, bound) for _ in range(10)]
    ids += [(rng.getrandbits(64) << 64) | rng.randrange(bound, LOW_64 + 1) for _ in range(30)]
    rng.shuffle(ids)
    receiver.clear()
    args = ["--model_dir", str(model_folder / "model")]
    with run_server(MODULE, args, tmp_path / "server.log", env=tracing_env(receiver, None)) as server:
        for trace_id in ids:
            assert post(server, PREDICT, {"instances": rows[:1]}, traceparent(trace_id)).status_code == 200
        kept_refusal, dropped_refusal = ids[0] if within_ratio(ids[0], 0.1) else ids[1], None
        for trace_id in ids:
            if not within_ratio(trace_id, 0.1):
                dropped_refusal = trace_id
                break
        assert dropped_refusal is not None
        refusals = {}
        for trace_id in (kept_refusal, dropped_refusal):
            answer = post(server, PREDICT, {"instances": []}, traceparent(trace_id))
            assert 400 <= answer.status_code < 500
            refusals[trace_id] = answer.status_code
        unparented = 200
        for _ in range(unparented):
            assert post(server, PREDICT, {"instances": rows[:1]}).status_code == 200
    # the server stopped (SIGTERM): what it held was flushed on the way out
    spans = servers_of(receiver.snapshot())
    callers = {f"{i:032x}" for i in ids}
    arrived = {s["trace_id"] for s in spans if s["trace_id"] in callers}
    expected = {f"{i:032x}" for i in ids if within_ratio(i, 0.1)}
    assert len(expected) == 10
    assert arrived == expected
    assert f"{kept_refusal:032x}" in {s["trace_id"] for s in spans}  # a 4xx is sampled as a success
    assert f"{dropped_refusal:032x}" not in {s["trace_id"] for s in spans}
    others = [s for s in spans if s["trace_id"] not in callers and s["trace_id"] != f"{kept_refusal:032x}"]
    assert 4 <= len(others) <= 45, len(others)  # about 10 % of 200 (binomial: 20 +- 4.2)


def test_every_error_arrives_at_ratio_zero(
    model_folder: Path, rows: list[dict[str, Any]], receiver: Receiver, tmp_path: Path
) -> None:
    # a model that fails its SHA-256 check: the server stays up, not ready, and answers 503
    broken = tmp_path / "model"
    shutil.copytree(model_folder / "model", broken)
    target = broken / "churn" / "model.ubj"
    flip_a_byte(target)
    receiver.clear()
    rng = random.Random(5)
    failing = [rng.getrandbits(128) for _ in range(12)]
    refused = rng.getrandbits(128)
    args = ["--model_dir", str(broken)]
    log = tmp_path / "server.log"
    with run_server(MODULE, args, log, env=tracing_env(receiver, 0.0), ready=False) as server:
        for trace_id in failing:
            answer = post(server, PREDICT, {"instances": rows[:1]}, traceparent(trace_id))
            assert answer.status_code == 503, answer.text
        version_in_path = "/v2/models/engage/versions/7/infer"
        assert post(server, version_in_path, {"inputs": []}, traceparent(refused)).status_code == 400
        assert httpx.get(server.url + "/v2/health/ready").status_code == 503  # a probe: not traced
        spans = receiver.wait_for(lambda s: len(servers_of(s)) >= len(failing))
    spans = servers_of(receiver.snapshot())  # and after the flush at exit
    assert {s["trace_id"] for s in spans} == {f"{i:032x}" for i in failing}
    for span in spans:
        assert span["name"] == ROUTE
        assert span["status"] == STATUS_ERROR
        assert span["attributes"]["http.response.status_code"] == 503
        assert span["attributes"]["error.type"] == "503"
        assert span["resource"]["service.name"] == "engage-predictor"


def post(server: Server, path: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(server.url + path, json=body, headers=headers, timeout=30)
