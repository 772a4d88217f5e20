"""Data-quality metrics pushed by the real ``engage validate`` to a real Pushgateway on loopback."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engage.tables import write_table
from tests.integration.test_cli import ENGAGE, FRESH


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def pushgateway(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("prometheus-pushgateway") or shutil.which("pushgateway")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install prometheus-pushgateway (.ci/run does)")
        pytest.skip("prometheus-pushgateway is not installed (apt-get install prometheus-pushgateway)")
    address = f"127.0.0.1:{_free_port()}"
    proc = subprocess.Popen(
        [binary, f"--web.listen-address={address}", "--persistence.file="],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(f"http://{address}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield address
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_validate_pushes_documented_metrics(pushgateway: str, tmp_path: Path, spoiled: Any) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    table = write_table(spoiled.frame, tmp_path / "t.parquet")
    proc = subprocess.run(
        [ENGAGE, "validate", str(table), "--now", FRESH, "--no-gx", "--push-gateway", pushgateway],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr  # 1 % of each kind: the gate fails without remediation
    with urllib.request.urlopen(f"http://{pushgateway}/metrics", timeout=5) as r:
        text = r.read().decode()
    samples = {
        (s.name, s.labels.get("column"), s.labels.get("check")): (s.value, s.labels)
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name.startswith("engage_data_")
    }
    value, labels = samples[("engage_data_duplicate_count", None, None)]
    assert value == 40
    assert labels["job"] == "engage_data_quality"
    assert labels["instance"] == "customers"
    assert labels["table"] == "customers"
    assert samples[("engage_data_rows", None, None)][0] == len(spoiled.frame)
    assert samples[("engage_data_check_passed", None, "BR-003")][0] == 0
    assert samples[("engage_data_check_passed", None, "BR-010")][0] == 1
    assert samples[("engage_data_quality_gate_passed", None, None)][0] == 0
    assert samples[("engage_data_freshness_hours", None, None)][0] == pytest.approx(1.0)


def test_an_unreachable_pushgateway_is_one_clear_error(tmp_path: Path, clean: Any) -> None:
    table = write_table(clean.frame, tmp_path / "t.parquet")
    port = _free_port()
    proc = subprocess.run(
        [ENGAGE, "validate", str(table), "--now", FRESH, "--no-gx", "--push-gateway", f"127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .startswith(f"engage: error: cannot push metrics to the Pushgateway at 127.0.0.1:{port}")
    )
