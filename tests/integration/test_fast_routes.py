"""The predictor's fast routes against KServe's own FastAPI routes: two real servers on loopback, one with
``--fast_routes true`` (the default) and one with ``--fast_routes false``, get the same V1, V2 and error
requests and must answer each with the same status and the same JSON body (a V2 answer without a
request ``id`` carries a fresh UUID on both, so that one value is compared by form)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serving_support import Server, run_server

MODULE = "engage_serving.predictor"
PREDICT = "/v1/models/engage:predict"
INFER = "/v2/models/engage/infer"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


@pytest.fixture(scope="module")
def servers(model_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    folder = tmp_path_factory.mktemp("fast-routes")
    args = ["--model_dir", str(model_folder / "model"), "--max_body_bytes", "200000", "--max_rows", "50"]
    with (
        run_server(MODULE, [*args, "--fast_routes", "true"], folder / "fast.log") as fast,
        run_server(MODULE, [*args, "--fast_routes", "false"], folder / "kserve.log") as kserve,
    ):
        yield {"fast": fast, "kserve": kserve}


@pytest.fixture(scope="module")
def rows(model_folder: Path) -> list[dict[str, Any]]:
    from engage.tables import read_table

    frame = read_table(model_folder / "drift_reference" / "reference.parquet")
    return list(json.loads(frame.head(20).to_json(orient="records")))


def _datatype(value: Any) -> str:
    return "BOOL" if isinstance(value, bool) else "BYTES" if isinstance(value, str) else "FP64"


def cases(rows: list[dict[str, Any]]) -> list[tuple[str, str, Any]]:
    """(name, path, body): a body of bytes is sent as it is, anything else as JSON."""

    def columns(n: int) -> list[dict[str, Any]]:
        return [
            {"name": c, "shape": [n], "datatype": _datatype(v), "data": [r[c] for r in rows[:n]]}
            for c, v in rows[0].items()
        ]

    width = len(rows[0])
    tensor = {"name": "input-0", "shape": [1, 1], "datatype": "FP32", "data": [0.0]}
    return [
        # V1: answers
        ("v1 one row", PREDICT, {"instances": rows[:1]}),
        ("v1 17 rows (compiled trees and xgboost)", PREDICT, {"instances": rows[:17]}),
        ("v1 a list in model order", PREDICT, {"instances": [list(rows[0].values())]}),
        ("v1 the id rides along", PREDICT, {"instances": [{**rows[0], "customer_id": "C-7"}]}),
        # V1: refusals
        ("v1 3 features of many", PREDICT, {"instances": [dict(list(rows[0].items())[:3])]}),
        ("v1 unknown category", PREDICT, {"instances": [{**rows[0], "plan": "platinum"}]}),
        ("v1 text for a number", PREDICT, {"instances": [{**rows[0], "sessions_30d": "many"}]}),
        ("v1 misspelt field", PREDICT, {"instances": [{**rows[0], "nps_scor": 3}]}),
        ("v1 a row of 3 values", PREDICT, {"instances": [[1, 2, 3]]}),
        ("v1 no instances", PREDICT, {}),
        ("v1 empty instances", PREDICT, {"instances": []}),
        ("v1 instances an object", PREDICT, {"instances": {"a": 1}}),
        ("v1 a list body", PREDICT, []),
        ("v1 too many rows", PREDICT, {"instances": [rows[0]] * 51}),
        ("v1 malformed JSON", PREDICT, b"{not json"),
        ("v1 another model", "/v1/models/other:predict", {"instances": rows[:1]}),
        # V2: answers
        ("v2 one tensor a feature", INFER, {"id": "r-1", "inputs": columns(3)}),
        ("v2 17 rows", INFER, {"id": "r-2", "inputs": columns(17)}),
        ("v2 no id", INFER, {"inputs": columns(2)}),
        ("v2 parameters", INFER, {"id": "r-3", "parameters": {"a": 1}, "inputs": columns(1)}),
        # V2: refusals
        ("v2 shape and data disagree", INFER,
         {"inputs": [{"name": "input-0", "shape": [2, width], "datatype": "FP32", "data": [0.0] * (2 * width - 1)}]}),
        ("v2 text matrix", INFER,
         {"inputs": [{"name": "input-0", "shape": [1, width], "datatype": "BYTES", "data": ["x"] * width}]}),
        ("v2 a feature missing", INFER, {"inputs": columns(2)[1:]}),
        ("v2 no body fields", INFER, {}),
        ("v2 empty inputs", INFER, {"inputs": []}),
        ("v2 inputs an object", INFER, {"inputs": {"a": 1}}),
        ("v2 a tensor without name", INFER, {"inputs": [{k: v for k, v in tensor.items() if k != "name"}]}),
        ("v2 shape not a list", INFER, {"inputs": [{**tensor, "shape": "a"}]}),
        ("v2 no data", INFER, {"inputs": [{k: v for k, v in tensor.items() if k != "data"}]}),
        ("v2 no datatype", INFER, {"inputs": [{k: v for k, v in tensor.items() if k != "datatype"}]}),
        ("v2 tensor parameters not an object", INFER, {"inputs": [{**tensor, "parameters": [1]}]}),
        ("v2 outputs not a list", INFER, {"inputs": [tensor], "outputs": 3}),
        ("v2 an output without name", INFER, {"inputs": [tensor], "outputs": [{}]}),
        ("v2 id a number", INFER, {"id": 5, "inputs": [tensor]}),
        ("v2 parameters a list", INFER, {"parameters": [1], "inputs": [tensor]}),
        ("v2 a list body", INFER, []),
        ("v2 malformed JSON", INFER, b"{not json"),
        ("v2 a model version", "/v2/models/engage/versions/3/infer", {"inputs": [tensor]}),
        ("v2 another model", "/v2/models/other/infer", {"inputs": [tensor]}),
        ("v2 over the body limit", INFER, b'{"inputs": [' + b"0," * 120_000 + b"0]}"),
    ]  # fmt: skip


def send(server: Server, path: str, body: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(
        server.url + path, content=content, headers={"content-type": "application/json"}, timeout=30
    )


def test_fast_routes_answer_as_kserves_own_routes(
    servers: dict[str, Server], rows: list[dict[str, Any]]
) -> None:
    differ: list[str] = []
    statuses: set[int] = set()
    for name, path, body in cases(rows):
        fast, kserve = (send(servers[k], path, body) for k in ("fast", "kserve"))
        statuses.add(fast.status_code)
        got = [(r.status_code, r.headers.get("content-type"), r.json()) for r in (fast, kserve)]
        if name == "v2 no id":
            for _, _, answer in got:
                assert UUID.match(answer.pop("id")), answer
        if got[0] != got[1]:
            differ.append(f"{name}:\n  fast:   {got[0]}\n  kserve: {got[1]}")
    assert not differ, "\n".join(differ)
    assert {200, 400, 403, 404, 413, 422} - statuses <= {403}  # every kind of answer was compared


def test_each_server_took_the_path_it_was_told(
    servers: dict[str, Server], rows: list[dict[str, Any]]
) -> None:
    """KServe's data plane times each request's preprocess step; the fast routes never reach it."""
    for server in servers.values():
        assert send(server, PREDICT, {"instances": rows[:2]}).status_code == 200

    def preprocessed(server: Server) -> float:
        text = httpx.get(server.url + "/metrics").text
        found = re.search(r'^request_preprocess_seconds_count\{model_name="engage"\} (\S+)$', text, re.M)
        return float(found.group(1)) if found else 0.0

    assert preprocessed(servers["fast"]) == 0
    assert preprocessed(servers["kserve"]) >= 1
