"""``make soak``'s script, run for real and briefly: benchmarks/soak.py against a real predictor on
loopback (the session's model folder) for 5 s at 20 requests/s. It must pass its own verdict, write its
results, send every body kind, and leave no server behind."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# a predictor process and 5 s of load (~15 s in all); make soak is the measurement. long: make test-long
pytestmark = [pytest.mark.slow, pytest.mark.long]


def test_a_short_soak_passes_and_reports(model_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    command = [
        sys.executable, str(ROOT / "benchmarks" / "soak.py"), "--model_folder", str(model_folder),
        "--rps", "20", "--duration", "5", "--warmup", "1", "--sample_every", "0.5", "--rows", "1:3,16:1,64:1",
        "--out", str(out),
    ]  # fmt: skip
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "soak PASSED" in done.stdout

    results = json.loads(out.read_text())
    cases = results["cases"]
    assert results["benchmark"] == "soak"
    assert cases["verdict"]["pass"] is True
    load = cases["load"]
    assert load["scheduled"] == load["sent"] == load["answered"] == 100
    assert load["errors"] == 0
    assert set(load["requests_by_kind"]) == {"v1_objects", "v1_lists", "v2_columns", "v2_matrix"}
    assert 0 < load["latency_from_due_time"]["p50_ms"] <= load["latency_from_due_time"]["p95_ms"] < 200
    assert set(load["latency_by_rows_per_request"]) == {"rows_1", "rows_16", "rows_64"}
    server = cases["server"]
    assert len(server["samples"]) >= 9
    assert server["rss_mib"]["first"] > 50  # a real process holding xgboost and the model
    assert server["open_files_besides_connections_fit_after_warmup"]["samples"] >= 7
    assert cases["probes"]["/metrics ok"] >= 9
    assert cases["model"]["built_here"] is False

    pid = int(re.search(r"against pid (\d+)", done.stdout).group(1))  # type: ignore[union-attr]
    assert not Path(f"/proc/{pid}").exists(), "the predictor outlived the soak"
