"""The closed loop under kfp.local, for real: the engage-feedback pipeline on a small event store and its
outcomes, and a training run started by the retraining trigger (a whole pipeline run) with its audit record."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engage.governance import AuditTrail, open_database
from engage_components import run_local
from tests.unit.test_loop_steps import write_store

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.long


def test_the_feedback_pipeline_writes_the_report_and_its_verdict(tmp_path: Path) -> None:
    """1,200 logged predictions whose later half is shifted: the run succeeds (a crossed policy is a
    finding) and its report artifact says fail, prediction drift crossed; the step's line is in the log."""
    store, outcomes = write_store(tmp_path, shift=0.35)
    params = {"events_uri": str(store), "outcomes_uri": str(outcomes), "days": 0}
    summary = run_local(params, pipeline_root=tmp_path / "runs", pipeline="feedback")
    assert summary.state == "SUCCEEDED", summary.error
    report = json.loads((summary.outputs["feedback"] / "report.json").read_text())
    assert report["verdict"] == "fail"
    assert "prediction_drift" in report["crossed"]
    assert (report["predictions"], report["labelled"]) == (1200, 1200)
    assert (summary.outputs["feedback"] / "report.md").read_text().startswith("# Live report")
    assert not (summary.outputs["feedback"] / "retrain.json").exists()  # retrain is off by default
    log = summary.log.read_text(encoding="utf-8") if summary.log else ""
    assert "feedback: fail on 1,200 predictions, 1,200 with an outcome (coverage 100.0%)" in log


def test_the_trigger_starts_a_real_training_run_and_records_its_id(tmp_path: Path) -> None:
    """retrain_if_needed with the kfp.local runner: a whole engage-customers run on 2,000 generated
    customers (the churn head, 20 rounds) that SUCCEEDED, whose job id is on the verified audit trail."""
    from engage.contract import load_contract
    from engage.feedback import live_report, read_events
    from engage.policy import load_policy
    from engage.settings import RunSettings
    from engage.tables import read_table
    from engage_components._feedback import local_runner, retrain_if_needed

    store, outcomes = write_store(tmp_path, shift=0.35)
    report = live_report(read_events(str(store)), read_table(outcomes), load_contract(), load_policy())
    as_of = (datetime.now(UTC) - timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    settings = RunSettings(
        rows=2_000, seed=5, max_rounds=20, heads=["churn"], review_sample=0, as_of=as_of.isoformat(),
        policy=ROOT / "tests" / "fixtures" / "small_table_policy.yml", registry=str(tmp_path / "registry"),
        out_dir=tmp_path / "runs",
    )  # fmt: skip
    trail = AuditTrail(open_database(f"sqlite:///{tmp_path}/governance.db"))
    decision = retrain_if_needed(
        report, settings.pipeline_params(), runner=local_runner(tmp_path / "runs"), trail=trail, actor="test"
    )
    assert decision.triggered
    assert decision.state == "SUCCEEDED"
    assert decision.run_id
    assert (tmp_path / "runs" / decision.run_id).is_dir()
    (entry,) = trail.records(event="retraining.triggered")
    assert entry.seq == decision.audit_seq
    assert entry.payload is not None
    assert (entry.payload["run_id"], entry.payload["state"]) == (decision.run_id, "SUCCEEDED")
    assert "prediction_drift" in entry.payload["sections"]
    assert trail.verify().ok
    # the run went through promotion to batch scoring; no rollout task: no Prometheus here
    run = tmp_path / "runs" / decision.run_id
    assert list(run.glob("**/promote/promotion/promotion.json"))
    assert list(run.glob("**/batch-score/scores/report.json"))
    assert not list(run.glob("**/rollout/**"))
