"""The local serving stack: three real servers from a registry's production alias, the predictor's
events reaching the drift detector, Prometheus scraping all three, and the predictor unaffected when
the explainer and the drift detector go down."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from engage_serving._stack import StackPorts, prepare_version, run_stack
from tests.serving_support import free_port

ROOT = Path(__file__).resolve().parents[2]
SMALL_DRIFT = {
    "ENGAGE_DRIFT_MIN_ROWS": "50",
    "ENGAGE_DRIFT_TEST_EVERY_ROWS": "50",
    "ENGAGE_DRIFT_BACKEND": "scipy",
}


@pytest.fixture(scope="module")
def registry(model_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    from engage.registry import Registry

    uri = str(tmp_path_factory.mktemp("registry"))
    version = Registry(uri).publish(
        model_folder / "model", attachments={"drift_reference": model_folder / "drift_reference"}
    )
    Registry(uri).promote(version.id, reason="serving test")
    return uri


def _rows(reference: Path, n: int) -> list[dict[str, Any]]:
    from engage.tables import read_table

    return json.loads(read_table(reference / "reference.parquet").head(n).to_json(orient="records"))


def _metric(url: str, name: str) -> float:
    total = 0.0
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith((name + "{", name + " ")):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_the_stack_serves_the_production_version_and_feeds_drift_and_prometheus(
    registry: str, tmp_path: Path
) -> None:
    model, reference, version = prepare_version(registry, "production", tmp_path / "versions")
    assert reference is not None
    ports = StackPorts(free_port(), free_port(), free_port(), free_port())
    with run_stack(
        model, reference, tmp_path, ports=ports, extra_env=SMALL_DRIFT, say=lambda _: None
    ) as stack:
        rows = _rows(reference, 120)
        for i in range(0, 120, 2):
            answer = httpx.post(
                stack.urls["predictor"] + "/v1/models/engage:predict", json={"instances": rows[i : i + 2]}
            )
            assert answer.status_code == 200
            assert answer.json()["model_version"] == version
        explained = httpx.post(
            stack.urls["explainer"] + "/v1/models/engage:explain", json={"instances": rows[:1]}
        )
        assert explained.status_code == 200
        assert explained.json()["meta"]["model_version"] == version
        drift = stack.urls["drift_detector"]
        deadline = time.monotonic() + 60
        while _metric(drift, "engage_drift_window_rows") < 50 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert (
            _metric(drift, "engage_drift_events_total") >= 120
        )  # requests and responses, from the predictor
        assert _metric(drift, "engage_drift_window_rows") >= 50  # a window test ran on the logged traffic
        if shutil.which("prometheus") is None:
            pytest.skip("prometheus is not installed: the scrape half of this test needs it")
        prometheus = stack.urls["prometheus"]
        deadline = time.monotonic() + 60
        up: list[str] = []
        while time.monotonic() < deadline:
            try:
                targets = httpx.get(prometheus + "/api/v1/targets").json()["data"]["activeTargets"]
            except (httpx.TransportError, ValueError, KeyError):
                targets = []
            up = [t["scrapeUrl"] for t in targets if t["health"] == "up"]
            if len(up) == 3:
                break
            time.sleep(1)
        assert len(up) == 3, up
        query = httpx.get(prometheus + "/api/v1/query", params={"query": "engage_model_ready"}).json()
        servers = {r["metric"]["server"] for r in query["data"]["result"]}
        assert servers == {"predictor", "explainer", "drift_detector"}


def test_engage_serve_check_starts_the_stack_from_the_registry(registry: str, tmp_path: Path) -> None:
    port = free_port()
    command = [sys.executable, "-m", "engage", "serve", "--registry", registry, "--check", "--no-prometheus",
               "--port", str(port), "--out", str(tmp_path / "serve")]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT, env={**os.environ})
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"predictor       http://127.0.0.1:{port}" in done.stdout
    assert "predict: 200" in done.stdout
    assert "explain: 200" in done.stdout


def test_stopping_engage_serve_stops_every_server(registry: str, tmp_path: Path) -> None:
    import signal

    port = free_port()
    command = [sys.executable, "-m", "engage", "serve", "--registry", registry, "--no-prometheus",
               "--port", str(port), "--out", str(tmp_path / "serve")]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port + 4}/v2/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert "stopping" in output
    for offset in (0, 2, 4):  # nothing answers on the servers' ports any more
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port + offset}/", timeout=2)
