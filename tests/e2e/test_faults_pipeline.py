"""A pipeline run killed mid-run (issue 19): ``engage run`` under kfp.local, killed with SIGKILL (its
whole process group, the run and the step it is running, as a node going away would) while the heads
train. No alias moves and no version appears; a rerun of the same inputs completes, and every step that
had finished before the kill comes from kfp.local's cache instead of running again."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess  # nosec B404 # the engage CLI, started by the test
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engage.registry import Registry

pytestmark = [pytest.mark.fault, pytest.mark.slow, pytest.mark.long]  # long: make test-long (make ci)

ROOT = Path(__file__).resolve().parents[2]
ENGAGE = [sys.executable, "-m", "engage", "run"]
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_FINISHED = re.compile(r"Task '([\w-]+)' finished with status SUCCESS")
_EXECUTING = re.compile(r"Executing task '([\w-]+)'")


def _log(out: Path) -> str:
    path = out / "run.log"
    return _ANSI.sub("", path.read_text(encoding="utf-8", errors="replace")) if path.is_file() else ""


def test_a_pipeline_killed_while_training_moves_no_alias_and_a_rerun_resumes_from_the_cache(
    tmp_path: Path,
) -> None:
    from tests.serving_support import build_model_folder

    # a registry with a production version (another model) that the killed run must not displace
    served = build_model_folder(tmp_path / "served", rows=2_000, max_rounds=30)
    uri = str(tmp_path / "registry")
    registry = Registry(uri)
    seeded = registry.publish(served / "model", attachments={"drift_reference": served / "drift_reference"})
    registry.promote(seeded.id, reason="in production before the run")
    versions, aliases = registry.versions(), registry.aliases()

    out = tmp_path / "run"
    # the table is extracted an hour ago (the quality gate judges freshness), the same for both runs
    as_of = (datetime.now(UTC) - timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    env = {
        **os.environ,
        "ENGAGE_RUN_ROWS": "4000", "ENGAGE_RUN_SEED": "3", "ENGAGE_RUN_MAX_ROUNDS": "60",
        "ENGAGE_RUN_AS_OF": as_of.isoformat(), "ENGAGE_RUN_REGISTRY": uri, "ENGAGE_RUN_OUT_DIR": str(out),
        "ENGAGE_RUN_POLICY": str(ROOT / "tests" / "fixtures" / "small_table_policy.yml"),
    }  # fmt: skip

    with (tmp_path / "first.out").open("w") as sink:
        first = subprocess.Popen(ENGAGE, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                 start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 600
        while "train-head" not in _EXECUTING.findall(_log(out)):
            assert first.poll() is None, (tmp_path / "first.out").read_text()[-3000:]
            assert time.monotonic() < deadline, "the run never reached training"
            time.sleep(0.2)
        time.sleep(1.0)  # the heads are training
        os.killpg(first.pid, signal.SIGKILL)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    killed_log = _log(out)
    # the steps that run once and had finished (a head that finished is cached too, but its name is
    # shared by the three heads of the loop)
    finished = set(_FINISHED.findall(killed_log)) - {"train-head"}
    assert _FINISHED.findall(killed_log).count("train-head") < 3, "killed after training, not during it"
    assert {"load-data", "validate", "features"} <= finished, killed_log[-3000:]
    assert "promote" not in _EXECUTING.findall(killed_log)

    assert registry.versions() == versions  # nothing published
    assert registry.aliases() == aliases  # nothing moved
    versions_dir = Path(uri) / registry.model / "versions"
    assert {p.name for p in versions_dir.iterdir()} == {seeded.hex}  # no half-written version, no staging

    rerun = subprocess.run(
        ENGAGE, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200, check=False
    )
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert "Pipeline: SUCCEEDED" in rerun.stdout
    # kfp.local logs a cache hit below the level its log shows: a step taken from the cache is one that
    # did not execute, whose outputs the rerun read from the killed run's folder
    executed = set(_EXECUTING.findall(_log(out)))
    assert executed, "the rerun's log shows no step"
    assert not executed & finished, f"ran again: {sorted(executed & finished)}"
    outcome_file = max(out.glob("*/**/record-outcome/outcome"), key=lambda p: p.stat().st_mtime)
    ran = {s["step"] for s in json.loads(outcome_file.read_text())["steps"]}
    assert not ran & finished, f"the exit handler recorded as run: {sorted(ran & finished)}"
    assert {"train-head", "promote"} <= ran  # killed mid-training: trained again, and judged
    rerun_folder = outcome_file.relative_to(out).parts[0]
    made = {p.name for p in (out / rerun_folder).iterdir()}
    assert not made & finished, f"the rerun wrote outputs of {sorted(made & finished)}"
    killed_folder = {p.name for p in out.iterdir() if p.is_dir() and p.name != rerun_folder} - {".cache"}
    assert len(killed_folder) == 1
    assert finished <= {p.name for p in (out / killed_folder.pop()).iterdir()}  # their outputs: the cache's
