"""The closed loop's pipeline steps as plain functions: the rollout after promotion (when it skips and why,
what it asks run_rollout), the feedback step (window, report, verdict) and ``submit``'s pipeline choice."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from engage.errors import ConfigError, DeployError
from engage.rollout import PrometheusError, RolloutDecision, RolloutPolicy, RolloutResult, Target
from engage_components._loop import (
    feedback_line,
    feedback_step,
    feedback_window,
    rollout_line,
    rollout_step,
)
from tests.serving_support import free_port

OLD, NEW = "sha256:" + "a" * 64, "sha256:" + "b" * 64


def promotion_folder(
    root: Path, *, promoted: bool = True, previous: str | None = OLD, canary: int | None = 10
) -> Path:
    """What the promote step leaves: promotion.json and the rendered InferenceService (the fields read)."""
    folder = root / "promotion"
    folder.mkdir()
    predictor: dict[str, Any] = {"minReplicas": 1}
    if canary is not None:
        predictor["canaryTrafficPercent"] = canary
    manifest = folder / "inferenceservice.yaml"
    manifest.write_text(
        json.dumps(
            {
                "apiVersion": "serving.kserve.io/v1beta1",
                "kind": "InferenceService",
                "metadata": {"name": "engage-customers", "namespace": "engage"},
                "spec": {"predictor": predictor},
            }
        )
    )
    moves = [
        {"alias": "candidate", "from_version": None, "to_version": NEW, "changed": True},
        {"alias": "production", "from_version": previous, "to_version": NEW, "changed": True},
    ]
    done = {
        "promoted": promoted,
        "version": NEW if promoted else None,
        "moves": moves if promoted else [],
        "inference_service": str(manifest) if promoted else None,
    }
    (folder / "promotion.json").write_text(json.dumps(done))
    return folder


@pytest.mark.parametrize(
    ("prometheus", "shape", "reason"),
    [
        ("", {}, "no rollout_prometheus given"),
        ("http://prometheus:9090", {"promoted": False}, "this run promoted no new version"),
        ("http://prometheus:9090", {"previous": None}, "no earlier production version"),
        ("http://prometheus:9090", {"canary": None}, "no canary split"),
    ],
)
def test_the_rollout_step_skips_with_its_reason(
    tmp_path: Path, prometheus: str, shape: dict[str, Any], reason: str
) -> None:
    def never(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("run_rollout must not be called when the step skips")

    done = rollout_step(
        tmp_path / "out", promotion=promotion_folder(tmp_path, **shape), prometheus=prometheus, rollout=never
    )
    assert done["outcome"] == "skipped"
    assert reason in done["reason"]
    assert json.loads((tmp_path / "out" / "summary.json").read_text()) == done
    assert rollout_line(done) == f"rollout: skipped: {done['reason']}"
    assert "\n" not in rollout_line(done)


def _decision(outcome: str) -> RolloutDecision:
    return RolloutDecision(
        outcome=outcome,  # type: ignore[arg-type]
        reason="every check passed for 60 s (3 evaluations)",
        stable="model_version=aaaaaaaaaaaa",
        canary="model_version=bbbbbbbbbbbb",
        started="2026-06-01T00:00:00.000Z",
        ended="2026-06-01T00:01:00.000Z",
        evaluations=3,
    )


def test_the_rollout_step_watches_the_versions_it_promoted_with_the_run_parameters(tmp_path: Path) -> None:
    """Defaults: the previous and the new production version's short ids as the model_version label, the
    rendered InferenceService; the period, interval and apply as given; the report in the step's folder."""
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def recorded(*args: Any, **kwargs: Any) -> RolloutResult:
        calls.append((args, kwargs))
        patch = {"spec": {"predictor": {"canaryTrafficPercent": 100}}}
        return RolloutResult(_decision("promote"), patch, ["kubectl"], True, "patched", None, 7)

    deployed: list[dict[str, Any]] = []

    def deploy(manifest: dict[str, Any]) -> str:
        assert not calls, "the canary is deployed before the watch"
        deployed.append(manifest)
        return "patched"

    db = f"sqlite:///{tmp_path}/governance.db"
    done = rollout_step(
        tmp_path / "out", promotion=promotion_folder(tmp_path), prometheus="http://prometheus:9090",
        period="90s", interval="15s", apply=True, governance_db=db, rollout=recorded, deploy=deploy,
    )  # fmt: skip
    # the rendered InferenceService, with its canary split, applied first
    ((manifest,),) = [deployed]
    assert manifest["metadata"]["name"] == "engage-customers"
    assert manifest["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert done["deployed"] == "patched"
    ((args, kwargs),) = calls
    url, stable, canary, policy = args
    assert url == "http://prometheus:9090"
    assert stable == Target("model_version", "a" * 12)
    assert canary == Target("model_version", "b" * 12)
    assert isinstance(policy, RolloutPolicy)
    assert (policy.period_seconds, policy.interval_seconds) == (90, 15)
    assert (kwargs["isvc"], kwargs["namespace"], kwargs["apply"]) == ("engage-customers", "engage", True)
    assert kwargs["out"] == tmp_path / "out" / "rollout.json"
    assert kwargs["actor"] == "pipeline"
    assert kwargs["trail"] is not None
    assert done["outcome"] == "promote"
    assert (done["audit_seq"], done["applied"], done["canary_percent"]) == (7, True, 10)
    assert rollout_line(done).startswith(
        "rollout: promote model_version=bbbbbbbbbbbb against model_version=aaaaaaaaaaaa (engage/engage-customers, applied"
    )

    # targets, InferenceService and policy file given: they win
    calls.clear()
    rules = tmp_path / "rollout.yml"
    rules.write_text("rollout:\n  period_seconds: 30s\n  min_requests: 5\n")
    rollout_step(
        tmp_path / "out2", promotion=tmp_path / "promotion", prometheus="http://p:9090",
        stable="revision=engage-predictor-00004", canary="revision=engage-predictor-00005",
        isvc="churn", namespace="prod", policy=str(rules), apply=False, rollout=recorded, deploy=deploy,
    )  # fmt: skip
    assert len(deployed) == 1  # without apply nothing is deployed: the canary is assumed in place
    ((args, kwargs),) = calls
    assert (args[1], args[2]) == (
        Target("revision", "engage-predictor-00004"),
        Target("revision", "engage-predictor-00005"),
    )
    assert (args[3].period_seconds, args[3].min_requests) == (30, 5)
    assert (kwargs["isvc"], kwargs["namespace"], kwargs["apply"]) == ("churn", "prod", False)


def test_the_rollout_step_refuses_bad_parameters_and_an_unreachable_prometheus_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    promotion = promotion_folder(tmp_path)
    with pytest.raises(ConfigError, match="rollout_canary 'nolabel'"):
        rollout_step(tmp_path / "a", promotion=promotion, prometheus="http://p:9090", canary="nolabel")
    with pytest.raises(ConfigError, match="rollout_period 'soon'"):
        rollout_step(tmp_path / "b", promotion=promotion, prometheus="http://p:9090", period="soon")

    # apply, outside a cluster and without a kubeconfig: the real deploy fails first, in one line, before
    # any watch; nothing is written
    def never(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("no watch without the canary deployed")

    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(DeployError, match="kubeconfig"):
        rollout_step(
            tmp_path / "d", promotion=promotion, prometheus="http://p:9090", apply=True, rollout=never
        )
    assert not (tmp_path / "d" / "summary.json").exists()
    # the real run_rollout against a closed port: the error names Prometheus, nothing is written
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(PrometheusError, match="cannot be reached"):
        rollout_step(
            tmp_path / "c", promotion=promotion, prometheus=url, apply=False,
            governance_db=f"sqlite:///{tmp_path}/g.db",
        )  # fmt: skip
    assert not (tmp_path / "c" / "summary.json").exists()
    assert not (tmp_path / "c" / "rollout.json").exists()


# ---- the feedback step ---------------------------------------------------------------------------------


def test_the_feedback_window() -> None:
    now = datetime(2026, 6, 30, tzinfo=UTC)
    assert feedback_window(7, "", "", now) == (datetime(2026, 6, 23, tzinfo=UTC), None)
    assert feedback_window(7, "", "2026-06-10", now) == (
        datetime(2026, 6, 3, tzinfo=UTC),
        datetime(2026, 6, 10, tzinfo=UTC),
    )
    assert feedback_window(0, "", "", now) == (None, None)
    assert feedback_window(7, "2026-06-01T06:00:00+02:00", "", now)[0] == datetime(2026, 6, 1, 4, tzinfo=UTC)
    with pytest.raises(ConfigError, match="days: must be 0"):
        feedback_window(-1, "", "", now)
    with pytest.raises(ConfigError, match="since: expected an ISO 8601"):
        feedback_window(1, "yesterday", "", now)
    with pytest.raises(ConfigError, match="must be before until"):
        feedback_window(1, "2026-06-02", "2026-06-01", now)


def write_store(root: Path, n: int = 1200, *, shift: float = 0.0, seed: int = 11) -> tuple[Path, Path]:
    """An event store of ``n`` logged predictions a minute apart on 2026-06-01 (``shift`` moves the later
    half's churn probabilities up) and their outcomes 30 days on, drawn from the predictions."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2026-06-01T00:00:00Z")
    churn = 1 / (1 + np.exp(-(2.5 * rng.normal(size=n) - 1.0)))
    churn = np.where(np.arange(n) >= n // 2, np.clip(churn + shift, 0, 1), churn)
    events = pd.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(n)],
            "row": 0,
            "event_time": start + pd.to_timedelta(np.arange(n), unit="min"),
            "model_name": "engage",
            "model_version": "v1",
            "customer_id": [f"c{i}" for i in range(n)],
            "gender": rng.choice(["female", "male"], size=n),
            "age": rng.integers(18, 80, size=n),
            "prediction__engagement_score": np.clip(0.5 + 0.15 * rng.normal(size=n), 0, 1),
            "prediction__churn_probability": churn,
            "prediction__ltv": np.exp(rng.normal(5, 1, size=n)),
        }
    )
    store = root / "store"
    (store / "date=2026-06-01").mkdir(parents=True)
    events.to_parquet(store / "date=2026-06-01" / "events-1.parquet")
    outcomes = pd.DataFrame(
        {
            "customer_id": events["customer_id"],
            "observed_at": events["event_time"] + pd.Timedelta(days=30),
            "churned": rng.random(n) < churn,
            "engagement_score": events["prediction__engagement_score"] + rng.normal(0, 0.03, n),
            "ltv": events["prediction__ltv"] * np.exp(rng.normal(0, 0.2, n)),
        }
    )
    outcomes.to_parquet(root / "outcomes.parquet")
    return store, root / "outcomes.parquet"


def test_the_feedback_step_writes_the_report_and_the_trigger_starts_a_run_on_a_shift(tmp_path: Path) -> None:
    store, outcomes = write_store(tmp_path, shift=0.35)
    started: list[dict[str, Any]] = []

    def runner(params: dict[str, Any]) -> tuple[str, str]:
        started.append(params)
        return "run-1", "SUBMITTED"

    db = f"sqlite:///{tmp_path}/governance.db"
    done = feedback_step(
        tmp_path / "out", events_uri=str(store), outcomes_uri=str(outcomes), until="2026-06-02",
        retrain=True, train_params={"rows": 2000, "registry": str(tmp_path / "registry")},
        governance_db=db, runner=runner,
    )  # fmt: skip
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert (tmp_path / "out" / "report.md").is_file()
    assert done["verdict"] == report["verdict"] == "fail"
    assert "prediction_drift" in done["crossed"]
    assert (done["predictions"], done["labelled"]) == (1200, 1200)
    assert done["since"] == "2026-05-03T00:00:00+00:00"  # 30 days before until
    # the trigger: the training run's parameters (the ENGAGE_RUN_* settings with the ones given), recorded
    ((params,),) = [started]
    assert (params["rows"], params["registry"]) == (2000, str(tmp_path / "registry"))
    retrain = json.loads((tmp_path / "out" / "retrain.json").read_text())
    assert retrain == done["retrain"]
    assert (retrain["triggered"], retrain["run_id"], retrain["state"]) == (True, "run-1", "SUBMITTED")
    from engage.governance import AuditTrail, open_database

    trail = AuditTrail(open_database(db))
    (entry,) = trail.records(event="retraining.triggered")
    assert entry.payload is not None
    assert entry.payload["run_id"] == "run-1"
    assert "prediction_drift" in entry.payload["sections"]
    assert trail.verify().ok
    assert entry.seq == retrain["audit_seq"]
    line = feedback_line(done)
    assert line.startswith("feedback: fail on 1,200 predictions, 1,200 with an outcome (coverage 100.0%)")
    assert "retraining run run-1 (SUBMITTED)" in line


def test_the_feedback_step_refuses_missing_inputs_before_reading(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs events_uri"):
        feedback_step(tmp_path, events_uri="", outcomes_uri="x.parquet")
    store, outcomes = write_store(tmp_path)
    with pytest.raises(ConfigError, match="kfp_host is empty"):
        feedback_step(
            tmp_path / "o",
            events_uri=str(store),
            outcomes_uri=str(outcomes),
            days=0,
            retrain=True,
            kfp_host="",
        )


def test_submit_and_compile_refuse_an_unknown_pipeline_before_any_call(tmp_path: Path) -> None:
    from engage_components import compile_pipeline, submit

    with pytest.raises(ConfigError, match="pipeline 'nope': expected one of engage, feedback"):
        submit(f"http://127.0.0.1:{free_port()}", {}, pipeline="nope")
    with pytest.raises(ConfigError, match="pipeline 'nope'"):
        compile_pipeline(tmp_path / "x.yaml", "nope")
    assert not (tmp_path / "x.yaml").exists()
