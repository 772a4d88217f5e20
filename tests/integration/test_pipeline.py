"""The whole pipeline under kfp.local on a small generated table: gates, parallel heads, promotion into a
registry, the exit handler's outcome and cost; the cache on a rerun; a failing step that moves nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from engage.registry import Registry
from engage_components import run_local

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "tests" / "fixtures" / "small_table_policy.yml"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("pipeline")
    # the table is extracted an hour ago: the quality gate judges freshness (BR-010) against the clock
    as_of = (datetime.now(UTC) - timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    params = {
        "rows": 4_000, "seed": 3, "max_rounds": 60, "as_of": as_of.isoformat(),
        "policy": str(POLICY), "registry": str(root / "registry"),
    }  # fmt: skip
    first = run_local(params, pipeline_root=root / "runs")
    return {"root": root, "params": params, "first": first}


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


def test_the_exit_handler_records_every_step_time_and_the_cost(workspace: dict[str, Any]) -> None:
    outcome = workspace["first"].outcome
    assert outcome["state"] == "SUCCEEDED"
    ran = [s["step"] for s in outcome["steps"]]
    assert ran.count("train-head") == 3  # the three heads, in parallel
    assert set(ran) == {"load-data", "validate", "features", "train-head", "evaluate", "drift-reference",
                        "fairness", "explain", "promote"}  # fmt: skip
    cost = outcome["cost"]
    assert 0 < cost["on_demand_usd"] < cost["target_usd"] / 10
    assert cost["spot_usd"] < cost["on_demand_usd"]
    events = [e["event"] for e in Registry(workspace["params"]["registry"]).audit()]
    assert "pipeline_run" in events


def test_a_rerun_reuses_the_cache_and_moves_nothing(workspace: dict[str, Any]) -> None:
    registry = Registry(workspace["params"]["registry"])
    before = registry.alias("production")
    again = run_local(workspace["params"], pipeline_root=workspace["root"] / "runs")
    assert again.state == "SUCCEEDED"
    assert [s["step"] for s in again.outcome["steps"]] == ["promote"]  # every other step came from the cache
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
