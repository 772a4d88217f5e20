"""The promotion policy, judged rule by rule; policy files that fail before a run; the cost estimate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engage.errors import ConfigError
from engage.policy import load_policy
from engage.promotion import RunArtifacts, judge
from engage_components import RESOURCES, CostSettings, estimate_cost

ROOT = Path(__file__).resolve().parents[2]


def _write(folder: Path, name: str, data: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(data))
    return folder


def _head(task: str, test: dict[str, float], train: dict[str, float]) -> dict[str, Any]:
    return {"task": task, "models": {"xgboost": {"test": test, "train": train}}}


@pytest.fixture
def run(tmp_path: Path) -> RunArtifacts:
    """A run whose every artifact meets the default policy."""
    evaluation = {
        "heads": {
            "engagement_score": _head("regression", {"r2": 0.81, "rmse": 0.10}, {"r2": 0.85, "rmse": 0.09}),
            "churn": _head(
                "binary_classification", {"auc_roc": 0.85, "ece": 0.01}, {"auc_roc": 0.88, "ece": 0.01}
            ),
            "ltv": _head("regression", {"spearman": 0.82, "r2": 0.78}, {"spearman": 0.85, "r2": 0.83}),
        },
        "champion": None,
    }
    return RunArtifacts(
        training=_write(tmp_path / "training", "evaluation.json", evaluation),
        quality=_write(
            tmp_path / "quality",
            "report.json",
            {"verdict": "pass_after_remediation", "rows_in": 1000, "rows_quarantined": 10},
        ),
        fairness=_write(
            tmp_path / "fairness",
            "fairness.json",
            {"verdict": "pass", "heads": {"churn": {"verdict": "pass"}}},
        ),
        drift=_write(
            tmp_path / "drift", "summary.json", {"rows": 5000, "available_rows": 70000, "features": ["a"]}
        ),
    )


def test_a_run_meeting_every_rule_passes_and_each_section_is_listed(run: RunArtifacts) -> None:
    verdict = judge(load_policy(), run)
    assert verdict.passed, verdict.failures
    assert {r.section for r in verdict.rules} == {"quality", "heads", "overfitting", "fairness", "drift"}
    share = next(r for r in verdict.rules if r.rule.startswith("quarantined share"))
    assert share.observed == pytest.approx(0.01)
    assert share.threshold == 0.05


def test_each_failing_section_is_named_with_observed_value_and_threshold(run: RunArtifacts) -> None:
    _write(run.quality, "report.json", {"verdict": "fail", "rows_in": 1000, "rows_quarantined": 300})  # type: ignore[arg-type]
    _write(run.fairness, "fairness.json", {"verdict": "fail", "heads": {"churn": {"verdict": "fail"}}})  # type: ignore[arg-type]
    _write(run.drift, "summary.json", {"rows": 50, "available_rows": 70000, "features": []})  # type: ignore[arg-type]
    evaluation = json.loads((run.training / "evaluation.json").read_text())
    evaluation["champion"] = {"winner": "champion", "problem": None}
    evaluation["heads"]["churn"]["models"]["xgboost"]["test"]["auc_roc"] = 0.6
    _write(run.training, "evaluation.json", evaluation)
    failures = {
        (r.section, r.head, r.rule): (r.observed, r.threshold) for r in judge(load_policy(), run).failures
    }
    assert failures[("quality", "table", "gate verdict in pass, pass_after_remediation")][0] == "fail"
    assert failures[("quality", "table", "quarantined share <= 0.05")] == (0.3, 0.05)
    assert failures[("heads", "churn", "auc_roc >= 0.8")] == (0.6, 0.8)
    assert ("overfitting", "churn", "test auc_roc >= 0.8 x train auc_roc") in failures
    assert failures[("fairness", "churn", "fairness verdict is not fail")][0] == "fail"
    assert failures[("champion", "all", "challenger beats the production model")][0] == "champion"
    assert failures[("drift", "all", "reference rows >= 5000")] == (50, 5000)


def test_missing_artifacts_are_failed_rules_not_crashes(tmp_path: Path, run: RunArtifacts) -> None:
    bare = RunArtifacts(training=run.training)
    rules = {r.rule for r in judge(load_policy(), bare).failures}
    assert rules == {"quality report present", "fairness gate ran", "drift reference present"}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ('    - {metric: r2, op: ">", value: 0.75}', '    - {metric: r3, op: ">", value: 0.75}'),
            "unknown metric 'r3'",
        ),
        (
            ('    - {metric: r2, op: ">", value: 0.75}', '    - {metric: r2, op: ">", value: high}'),
            "heads.engagement_score.0.value",
        ),
        (("  canary_percent: 10 ", "  canary_percent: 150 "), "promotion.canary_percent"),
        (("  p_value: 0.05 ", "  p_value: 0.05\n  window: 7 "), "drift.window"),
        (
            (
                '    - {metric: mae_ratio, op: "<=", value: 1.25}',
                '    - {metric: mae_gap, op: "<=", value: 1.25}',
            ),
            "unknown fairness figure 'mae_gap'",
        ),
    ],
)
def test_a_bad_policy_file_fails_before_any_run(tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    text = (ROOT / "policies" / "promotion_policy.yml").read_text()
    assert edit[0] in text
    bad = tmp_path / "policy.yml"
    bad.write_text(text.replace(edit[0], edit[1]))
    with pytest.raises(ConfigError, match=message):
        load_policy(bad)


def test_cost_prices_each_step_as_its_share_of_a_node() -> None:
    prices = CostSettings(node_vcpu=4, node_memory_gib=16, on_demand_per_hour=0.2, spot_per_hour=0.08)
    steps = [{"step": "train-head", "seconds": 3600}, {"step": "promote", "seconds": 1800}]
    cost = estimate_cost(steps, prices)
    # train-head: 2 vCPU of 4 (0.5 of a node) for an hour; promote: 1 GiB of 16 vs 0.5 vCPU of 4 -> 1/8, half an hour
    assert cost["on_demand_usd"] == pytest.approx(0.5 * 0.2 + 0.125 * 0.5 * 0.2)
    assert cost["spot_usd"] == pytest.approx(0.5 * 0.08 + 0.125 * 0.5 * 0.08)
    assert cost["below_target_by"] == pytest.approx(4.42 / cost["on_demand_usd"])
    assert estimate_cost([])["on_demand_usd"] == 0
    assert set(RESOURCES) >= {"load-data", "validate", "train-head", "promote", "record-outcome"}


def _mitigated(run: RunArtifacts, test: dict[str, float], train: dict[str, float] | None) -> None:
    """The fairness gate ships group offsets for churn: its model folder and figures (test, and train
    when given) as the gate writes them; the trained model's figures stay those of the fixture."""
    assert run.fairness is not None
    shipped = {"candidate": "group_offsets", "mitigated": True, "test_rows": 1200, "test": test}
    shipped["train"] = train or {}
    head = {"verdict": "pass_after_mitigation", "chosen": "group_offsets", "shipped": shipped}
    _write(run.fairness, "fairness.json", {"verdict": "pass_after_mitigation", "heads": {"churn": head}})
    _write(run.fairness / "model", "manifest.json", {"files": {}})


def test_a_mitigated_model_below_the_floor_is_refused_on_its_own_figures(
    run: RunArtifacts, tmp_path: Path
) -> None:
    """The trained churn model meets the AUC floor (0.85), the mitigated one the gate ships does not
    (0.708): the verdict judges the one that ships, and the refusal says whose figures failed."""
    from engage.promotion import promote
    from engage.registry import Registry

    _mitigated(run, {"auc_roc": 0.708, "ece": 0.02}, {"auc_roc": 0.74, "ece": 0.02})
    verdict = judge(load_policy(), run)
    failures = {(r.section, r.head, r.rule): r for r in verdict.failures}
    assert set(failures) == {("heads", "churn", "auc_roc >= 0.8")}
    auc = failures[("heads", "churn", "auc_roc >= 0.8")]
    assert (auc.observed, auc.threshold) == (0.708, 0.8)
    assert auc.judged_on == "mitigated model group_offsets (fairness gate's figures on 1,200 test rows)"
    ratio = next(r for r in verdict.rules if r.section == "overfitting" and r.head == "churn")
    assert ratio.observed == pytest.approx(0.708 / 0.74)
    assert ratio.judged_on == auc.judged_on
    others = {r.judged_on for r in verdict.rules if r.head in ("engagement_score", "ltv")}
    assert others == {"trained model (evaluation.json)"}

    registry = Registry(str(tmp_path / "registry"))
    result = promote(load_policy(), run, registry=registry, run_id="r1", out_dir=tmp_path / "promotion")
    assert not result.promoted
    (record,) = [r for r in registry.audit() if r["event"] == "promotion_refused"]
    (line,) = record["failures"]
    assert line.startswith("heads/churn: auc_roc >= 0.8 (observed 0.708; judged on the mitigated model")
    assert record["fairness"]["shipped"] == {"churn": "group_offsets"}
    assert "mitigated model group_offsets" in (tmp_path / "promotion" / "promotion.md").read_text()


def test_a_mitigated_model_is_judged_only_when_it_ships(run: RunArtifacts) -> None:
    """Without train figures of the shipped model the overfitting rule fails (the trained model's are not
    its); without the gate's model folder the trained model ships, and its figures are judged."""
    _mitigated(run, {"auc_roc": 0.83, "ece": 0.02}, None)
    failures = {(r.section, r.head): r.observed for r in judge(load_policy(), run).failures}
    assert failures == {("overfitting", "churn"): None}
    assert run.fairness is not None
    (run.fairness / "model" / "manifest.json").unlink()
    verdict = judge(load_policy(), run)
    assert verdict.passed, verdict.failures
    auc = next(r for r in verdict.rules if r.rule == "auc_roc >= 0.8")
    assert (auc.observed, auc.judged_on) == (0.85, "trained model (evaluation.json)")
