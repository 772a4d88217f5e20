"""``engage run`` (``make run``), the main job: the whole pipeline under kfp.local, end to end, twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from engage.registry import Registry

ENGAGE = str(Path(sys.executable).parent / "engage")


def _run(tmp_path: Path, as_of: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ENGAGE_RUN_AS_OF": as_of,  # both runs generate the same table, even across an hour boundary
        "ENGAGE_RUN_ROWS": "20000",
        "ENGAGE_RUN_REGISTRY": str(tmp_path / "registry"),
        "ENGAGE_RUN_OUT_DIR": str(tmp_path / "run"),
    }
    return subprocess.run([ENGAGE, "run"], capture_output=True, text=True, env=env, timeout=900, check=False)


@pytest.mark.slow
def test_run_takes_a_table_through_every_gate_to_a_promoted_version_then_reuses_the_cache(
    tmp_path: Path,
) -> None:
    as_of = datetime.now(UTC).replace(minute=0, second=0, microsecond=0).isoformat()
    first = _run(tmp_path, as_of)
    assert first.returncode == 0, first.stderr + first.stdout[-3000:]
    out = first.stdout
    assert "Pipeline: SUCCEEDED" in out
    assert "Quality gate: PASS AFTER REMEDIATION" in out  # the run spoils 0.2 % of rows per defect kind
    for head in ("engagement_score", "churn", "ltv"):
        assert head in out
    assert "Fairness gate: PASS" in out
    assert "Promotion: PROMOTED sha256:" in out
    assert "kind: InferenceService" in out
    assert "Cost: $" in out
    assert "below the $4.42 target" in out
    assert "Review sample: 400 records in " in out
    registry = Registry(str(tmp_path / "registry"))
    production = registry.alias("production")
    assert production is not None
    assert f"PROMOTED {production.id}" in out
    outcome = json.loads(next((tmp_path / "run").glob("*/record-outcome/outcome")).read_text())
    assert outcome["state"] == "SUCCEEDED"
    assert len(outcome["steps"]) == 14  # 12 steps, the training step three times (one per head)
    assert "Rollout: skipped: no rollout_prometheus given" in out  # no Prometheus: no rollout task
    assert (
        "Batch scoring: warn: " in out or "Batch scoring: pass: " in out
    )  # every customer, production version
    scores = next((tmp_path / "run").glob("*/batch-score/scores/run_date=*/scores.parquet"))
    assert (
        json.loads(pq.ParquetFile(scores).schema_arrow.metadata[b"engage"])["model_version"] == production.id
    )

    # a second run of the same inputs within the hour: every step but promotion and batch scoring (they
    # act on the registry as it is now) comes from the cache
    second = _run(tmp_path, as_of)
    assert second.returncode == 0, second.stderr
    assert "2 step(s) ran (a step whose inputs did not change comes from the cache" in second.stdout
    assert "already in production: no alias moved" in second.stdout
    assert registry.alias("production") == production
