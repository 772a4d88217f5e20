"""The whole pipeline under kfp.local on a small generated table: gates, parallel heads, promotion into a
registry, the exit handler's outcome and cost; the cache on a rerun; a failing step that moves nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from engage.governance import open_database
from engage.governance._review import ReviewQueue
from engage.registry import Registry
from engage_components import run_local

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workspace(pipeline_workspace: dict[str, Any]) -> dict[str, Any]:
    return pipeline_workspace


def test_a_run_passes_every_gate_and_promotes_into_the_registry(workspace: dict[str, Any]) -> None:
    first = workspace["first"]
    assert first.state == "SUCCEEDED", first.error
    promotion = first.promotion
    assert promotion is not None
    assert promotion["promoted"], promotion["failures"]
    sections = {r["section"] for r in promotion["rules"]}
    assert sections >= {"quality", "heads", "overfitting", "fairness", "drift"}
    registry = Registry(workspace["params"]["registry"])
    production = registry.alias("production")
    assert production is not None
    assert production.id == promotion["version"]
    assert registry.alias("candidate").id == production.id  # type: ignore[union-attr]
    assert {"model_card.md", "fairness.json", "evaluation.json", "drift_reference"} <= set(
        production.attachments
    )
    assert production.metadata["pipeline_run_id"]
    assert production.metadata["data_sha256"]
    manifest = yaml.safe_load(Path(promotion["inference_service"]).read_text())
    predictor = manifest["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 10  # the policy's canary
    env = {e["name"]: e["value"] for e in predictor["containers"][0]["env"]}
    assert env["STORAGE_URI"].endswith(f"/versions/{production.hex}/model")


def test_without_prometheus_no_rollout_task_runs(workspace: dict[str, Any]) -> None:
    """make run has no Prometheus: the pipeline's condition leaves the rollout task out (no process, no
    pod on a cluster); the step's own skips (no new version, no canary split) are tested in
    tests/unit/test_loop_steps.py."""
    first = workspace["first"]
    assert "rollout" not in first.outputs
    assert "rollout" not in {s["step"] for s in first.outcome["steps"]}
    assert "batch-score" in {s["step"] for s in first.outcome["steps"]}  # its sibling after promote ran


def test_the_exit_handler_records_every_step_time_and_the_cost(workspace: dict[str, Any]) -> None:
    outcome = workspace["first"].outcome
    assert outcome["state"] == "SUCCEEDED"
    ran = [s["step"] for s in outcome["steps"]]
    assert ran.count("train-head") == 3  # the three heads, in parallel
    assert set(ran) == {"load-data", "validate", "features", "train-head", "evaluate", "drift-reference",
                        "business-metrics", "fairness", "explain", "promote", "review-sample",
                        "batch-score"}  # fmt: skip
    cost = outcome["cost"]
    assert 0 < cost["on_demand_usd"] < cost["target_usd"] / 10
    assert cost["spot_usd"] < cost["on_demand_usd"]
    assert cost["month_to_date_usd"] >= cost["on_demand_usd"]
    events = [e["event"] for e in Registry(workspace["params"]["registry"]).audit()]
    assert "pipeline_run" in events


def test_the_steps_record_what_the_exit_handler_pushes(workspace: dict[str, Any]) -> None:
    """The model's test figures, the parity of what ships and the business figures, in the step records
    the exit handler pushes from (engage_model_metric, engage_fairness_parity_ratio, engage_business_*)."""
    by_step = {s["step"]: s for s in workspace["first"].outcome["steps"]}
    figures = by_step["evaluate"]["model_metrics"]
    assert set(figures) == {"engagement_score", "churn", "ltv"}
    assert {"r2", "rmse", "mae"} <= set(figures["ltv"])
    assert 0.5 < figures["churn"]["auc_roc"] <= 1.0
    parity = by_step["fairness"]["parity"]
    assert set(parity) == {"engagement_score", "churn", "ltv"}
    assert all(0.0 < r <= 1.0 for ratios in parity.values() for r in ratios.values())
    business = by_step["business-metrics"]["business"]
    assert business["table"] == "customers"
    assert business["customers"] > 3_000
    assert (
        business["active"]["1d"]
        <= business["active"]["7d"]
        <= business["active"]["30d"]
        <= business["customers"]
    )
    assert business["active"]["30d"] > 0
    assert 0.0 < business["churn_rate"] < 1.0
    assert business["ltv_mean"] > 0
    assert 0.0 < business["engagement_score_mean"] < 1.0


def test_the_run_puts_its_stratified_sample_in_the_review_queue(workspace: dict[str, Any]) -> None:
    """400 scored test rows of the model that shipped, in the queue of the tests' governance database
    (ENGAGE_GOVERNANCE_DATABASE_URL, which the steps inherit); the log line names no customer."""
    first = workspace["first"]
    run_id = first.job_dir.name
    sample = json.loads(first.outputs["review_sample"].read_text())
    assert sample["run_id"] == run_id
    assert sample["items"] == 400
    assert sample["model_version"] == first.promotion["version"]
    by_step = {s["step"]: s for s in first.outcome["steps"]}
    assert by_step["review-sample"]["items"] == 400
    items = ReviewQueue(open_database()).list(run_id=run_id, source="sample", limit=1000)
    assert len(items) == 400
    assert {i.model_version for i in items} == {first.promotion["version"]}
    assert len({i.customer_id for i in items}) == 400
    # the audit trail's promotion record names the same run: the review items link to it
    registry = Registry(workspace["params"]["registry"])
    promotion = next(r for r in registry.audit() if r["event"] == "promotion")
    assert promotion["pipeline_run"] == run_id
    assert promotion["version"] == first.promotion["version"]
    assert promotion["approver"].endswith("(automated)")
    assert promotion["data_sha256"]
    assert promotion["gates"]["policy"] == "pass"
    strata: dict[str, int] = {}
    for item in items:
        strata[str(item.stratum)] = strata.get(str(item.stratum), 0) + 1
    assert strata == sample["strata"]
    assert all(s.startswith("gender=") and ", age=" in s and ", churn_probability=q" in s for s in strata)
    log = first.log.read_text(encoding="utf-8")
    lines = [line for line in log.splitlines() if "review-sample: run " in line]
    assert lines
    assert "400 of" in lines[0]
    assert not any(str(i.customer_id) in line for i in items for line in lines)


def test_a_rerun_reuses_the_cache_and_moves_nothing(workspace: dict[str, Any]) -> None:
    registry = Registry(workspace["params"]["registry"])
    before = registry.alias("production")
    again = run_local(workspace["params"], pipeline_root=workspace["root"] / "runs")
    assert again.state == "SUCCEEDED"
    assert again.outcome is not None
    assert again.promotion is not None
    # every other step came from the cache: these two act on the registry as it is now
    assert sorted(s["step"] for s in again.outcome["steps"]) == ["batch-score", "promote"]
    assert again.job_dir is not None
    # review-sample came from the cache too: no second sample, under this run's id or any other
    queue = ReviewQueue(open_database())
    assert queue.list(status=None, run_id=again.job_dir.name) == []
    first = workspace["first"].job_dir.name
    assert len(queue.list(status=None, source="sample", run_id=first, limit=1000)) == 400
    assert again.promotion["note"] == "this model is already in production: no alias moved"
    assert registry.alias("production") == before
    assert len(registry.versions()) == 1


def test_a_failing_step_moves_no_alias_and_publishes_nothing(
    workspace: dict[str, Any], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.csv"
    broken.write_text("customer_id,plan\nCUST-1,free\n")  # lacks most contract columns
    registry = Registry(workspace["params"]["registry"])
    versions, production = registry.versions(), registry.alias("production")
    failed = run_local(
        {**workspace["params"], "data_uri": str(broken)}, pipeline_root=workspace["root"] / "runs"
    )
    assert failed.state == "FAILED"
    assert failed.outcome is not None
    assert failed.outcome["state"] == "FAILED"
    assert "validate" in json.dumps(failed.outcome["steps"])
    assert registry.versions() == versions
    assert registry.alias("production") == production
    assert registry.audit()[-1]["state"] == "FAILED"
