"""Data-quality metrics pushed by the real ``engage validate`` to a real Pushgateway on loopback."""

from __future__ import annotations

import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engage.tables import write_table
from tests.integration.test_cli import ENGAGE, FRESH
from tests.serving_support import free_port


@pytest.fixture
def pushgateway() -> Iterator[str]:
    from tests.monitoring_support import pushgateway as real_pushgateway

    with real_pushgateway() as address:
        yield address


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
    port = free_port()
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
