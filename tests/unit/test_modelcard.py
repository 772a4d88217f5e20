"""The model card: sections, figures equal to the artifacts, version, escaping, refusals, atomic writes.

The inputs are small hand-written artifacts with the structure ``engage train`` and ``engage fairness``
write (two heads, two protected attributes); the bundles get real manifests from
:func:`engage.artifacts.write_manifest`, so the card verifies them as it would a trained model.
"""

from __future__ import annotations

import copy
import hashlib
import html
import json
import re
from pathlib import Path
from typing import Any

import pytest

from engage.artifacts import write_manifest
from engage.errors import ArtifactError, ConfigError
from engage.modelcard import ModelCard, build_model_card, write_model_card
from engage.modelcard._render import SECTIONS, _para

TRAINED_AT = "2026-03-01T06:00:00+00:00"
NUMERIC = ["tenure_days", "sessions_30d", "days_since_last_activity"]
CATEGORICAL = {"plan": ["free", "basic", "premium"], "country": ["DE", "FR"]}


# ---- hand-written artifacts ------------------------------------------------------------------------


def _classification(auc: float) -> dict[str, float]:
    return {"auc_roc": auc, "pr_auc": auc - 0.2, "log_loss": 0.41, "brier": 0.13, "ece": 0.016}


def _regression(r2: float) -> dict[str, float]:
    return {"r2": r2, "rmse": 0.113, "mae": 0.0829, "spearman": 0.877}


def _learner(objective: str, train: dict[str, float], test: dict[str, float]) -> dict[str, Any]:
    return {
        "objective": objective,
        "transform": "none",
        "calibrated": False,
        "iterations": 60,
        "seconds": 0.3,
        "train": train,
        "test": test,
    }


def _rule(head: str, rule: str, observed: float | None, threshold: float, passed: bool) -> dict[str, Any]:
    return {"head": head, "rule": rule, "observed": observed, "threshold": threshold, "passed": passed}


def evaluation() -> dict[str, Any]:
    rows = {"train": 1300, "validation": 200, "test": 500}
    return {
        "contract": {"name": "customers", "version": "1.0.0"},
        "trained_at": TRAINED_AT,
        "rows": 2000,
        "split": "time-aware on snapshot_at: test on the 1 latest extract(s) (25% of rows)",
        "features": {"numeric": NUMERIC, "categorical": list(CATEGORICAL)},
        "config": {"seed": 0, "max_rounds": 50, "calibrate": True},
        "heads": {
            "churn": {
                "column": "churned",
                "task": "binary_classification",
                "distribution": "continuous",
                "rows": rows,
                "primary_metric": "auc_roc",
                "better_learner": "xgboost",
                "models": {
                    "xgboost": _learner("binary:logistic", _classification(0.92), _classification(0.8321)),
                    "sklearn": _learner("log_loss", _classification(0.91), _classification(0.8299)),
                },
            },
            "engagement_score": {
                "column": "engagement_score",
                "task": "regression",
                "distribution": "unit_interval",
                "rows": rows,
                "primary_metric": "r2",
                "better_learner": "sklearn",
                "models": {
                    "xgboost": _learner("reg:logistic", _regression(0.85), _regression(0.7818)),
                    "sklearn": _learner("squared_error", _regression(0.84), _regression(0.7851)),
                },
            },
        },
        "notes": [
            "head churn (xgboost): kept the raw probabilities: isotonic calibration did not lower the log loss",
            "head churn (sklearn): kept the raw probabilities: isotonic calibration did not lower the log loss",
            "head ltv skipped: not asked for (--head)",
        ],
        "policy": {
            "policy": "default",
            "version": "1.0.0",
            "rules": [
                _rule("engagement_score", "r2 > 0.75", 0.7818, 0.75, True),
                _rule("churn", "auc_roc >= 0.8", 0.8321, 0.8, True),
                _rule("churn", "ece <= 0.05", 0.016, 0.05, True),
                _rule("churn", "test auc_roc >= 0.8 x train auc_roc", 0.9045, 0.8, True),
            ],
            "passed": True,
        },
        "champion": None,
        "seconds": 1.5,
    }


def _figure(value: float | None, spread: float = 0.01) -> dict[str, float | None]:
    if value is None:
        return {"value": None, "low": None, "high": None}
    return {"value": value, "low": value - spread, "high": value + spread}


def _attribute(name: str, groups: list[tuple[str, int, bool]], task: str, shift: float) -> dict[str, Any]:
    stats = ("selection_rate", "tpr", "fpr") if task == "binary_classification" else ("mae", "rmse")
    gaps = (
        ("demographic_parity_ratio", "equalized_odds_difference")
        if stats[0] == "selection_rate"
        else ("mae_ratio",)
    )
    return {
        "attribute": name,
        "task": task,
        "judged_groups": [g for g, _, judged in groups if judged],
        "summary": {gap: _figure(0.9 + shift if "ratio" in gap else 0.05 + shift) for gap in gaps},
        "groups": [
            {"group": g, "rows": n, "judged": judged, **{s: _figure(0.1 + i / 50 + shift) for s in stats}}
            for i, (g, n, judged) in enumerate(groups)
        ],
        "notes": [f"{name}: groups under 200 rows reported, not judged"],
    }


GENDER = [("female", 240, True), ("male", 230, True), ("non_binary", 12, False), ("unknown", 18, False)]
AGE = [("18-24", 90, False), ("25-34", 210, True), ("35-49", 200, True)]


def _candidate(
    name: str, stage: str, task: str, accuracy: dict[str, float], shift: float, **kw: Any
) -> dict[str, Any]:
    primary = "demographic_parity_ratio" if task == "binary_classification" else "mae_ratio"
    op = ">=" if task == "binary_classification" else "<="
    return {
        "name": name,
        "stage": stage,
        "description": kw.get("description", "the trained model"),
        "shippable": True,
        "reads_protected_attributes": kw.get("reads", False),
        "eligible": True,
        "why_not_eligible": None,
        "problem": None,
        "seconds": 0.1,
        "meets_policy": kw.get("meets", True),
        "accuracy": accuracy,
        "rules": [
            _rule("x", f"gender: {primary} {op} 0.8", 0.9 + shift, 0.8, kw.get("meets", True)),
            _rule("x", f"age: {primary} {op} 0.8", 0.9 + shift, 0.8, True),
        ],
        "fairness": {
            "gender": _attribute("gender", GENDER, task, shift),
            "age": _attribute("age", AGE, task, shift),
        },
        "offsets": kw.get("offsets"),
    }


OFFSETS = {
    "kind": "group_logit_offsets",
    "attributes": [{"name": "gender", "bins": None}, {"name": "age", "bins": [18.0, 25.0, 35.0, 50.0]}],
    "offsets": {"female & 25-34": -0.1, "male & 25-34": 0.1},
}


def fairness_report(ev: dict[str, Any]) -> dict[str, Any]:
    churn_test = ev["heads"]["churn"]["models"]["xgboost"]["test"]
    engagement_test = ev["heads"]["engagement_score"]["models"]["xgboost"]["test"]
    policy_fairness = {
        "attributes": [],
        "intersections": False,
        "min_group_size": 200,
        "bootstrap": 20,
        "decision_threshold": 0.5,
        "allow_protected_at_inference": True,
        "classification": [{"metric": "demographic_parity_ratio", "op": ">=", "value": 0.8, "scope": "all"}],
        "regression": [{"metric": "mae_ratio", "op": "<=", "value": 1.25, "scope": "all"}],
        "heads": {},
    }
    return {
        "verdict": "pass_after_mitigation",
        "reason": "churn: unmitigated fails gender; group_offsets meets the policy",
        "contract": {"name": "customers", "version": "1.0.0"},
        "policy": {"name": "default", "version": "1.0.0", "fairness": policy_fairness},
        "attributes": ["gender", "age"],
        "test_rows": 500,
        "seconds": 2.0,
        "heads": {
            "churn": {
                "task": "binary_classification",
                "verdict": "pass_after_mitigation",
                "reason": "unmitigated fails gender: demographic_parity_ratio >= 0.8",
                "chosen": "group_offsets",
                "primary_metric": "auc_roc",
                "candidates": [
                    _candidate("unmitigated", "none", "binary_classification", churn_test, -0.2, meets=False),
                    _candidate(
                        "group_offsets",
                        "post-processing",
                        "binary_classification",
                        {**churn_test, "auc_roc": 0.8301},
                        0.05,
                        reads=True,
                        description="a logit offset per protected cell",
                        offsets=OFFSETS,
                    ),
                ],
            },
            "engagement_score": {
                "task": "regression",
                "verdict": "pass",
                "reason": "the unmitigated model meets every fairness rule",
                "chosen": "unmitigated",
                "primary_metric": "r2",
                "candidates": [_candidate("unmitigated", "none", "regression", engagement_test, 0.1)],
            },
        },
        "notes": [],
    }


def write_bundle(directory: Path, ev: dict[str, Any], *, fairness: dict[str, str] | None = None) -> Path:
    """A bundle folder with placeholder model files and a real manifest over them."""
    directory.mkdir(parents=True)
    (directory / "features.json").write_text(json.dumps({"numeric": NUMERIC, "categorical": CATEGORICAL}))
    heads: dict[str, Any] = {}
    for name, h in ev["heads"].items():
        (directory / name).mkdir()
        (directory / name / "model.ubj").write_bytes(f"{name} trees".encode())
        adjusted = fairness is not None and fairness.get(name) == "group_offsets"
        if adjusted:
            (directory / name / "fairness.json").write_text(json.dumps(OFFSETS))
        heads[name] = {
            "column": h["column"],
            "task": h["task"],
            "distribution": h["distribution"],
            "positive": True if h["task"] == "binary_classification" else None,
            "output": "churn_probability" if name == "churn" else name,
            "learner": "xgboost",
            "objective": h["models"]["xgboost"]["objective"],
            "transform": "none",
            "calibrated": False,
            "best_iteration": 60,
            "adjustment": "group_logit_offsets" if adjusted else None,
        }
    metadata: dict[str, Any] = {
        "engage_version": "0.1.0",
        "learner": "xgboost",
        "trained_at": ev["trained_at"],
        "contract": ev["contract"],
        "policy": {"name": "default", "version": "1.0.0"},
        "policy_passed": True,
        "format": "engage-model/1",
        "heads": heads,
        **({"fairness": fairness} if fairness is not None else {}),
    }
    write_manifest(directory, metadata=metadata)
    return directory


@pytest.fixture
def run(tmp_path: Path) -> dict[str, Any]:
    """A training folder and a fairness folder (gate passed after mitigation, with its model)."""
    ev = evaluation()
    train, fair = tmp_path / "train", tmp_path / "fairness"
    write_bundle(train / "model", ev)
    (train / "evaluation.json").write_text(json.dumps(ev, indent=2))
    report = fairness_report(ev)
    write_bundle(fair / "model", ev, fairness={"churn": "group_offsets", "engagement_score": "unmitigated"})
    (fair / "fairness.json").write_text(json.dumps(report, indent=2))
    return {"train": train, "fairness": fair, "evaluation": ev, "report": report, "tmp": tmp_path}


@pytest.fixture
def card(run: dict[str, Any]) -> ModelCard:
    return build_model_card(run["train"], fairness_dir=run["fairness"])


EXPLANATIONS = {
    "data": {
        "heads": {
            "churn": {
                "output": "churn_probability",
                "output_space": "log-odds",
                "base_value": -1.2,
                "rows": 500,
                "mean_abs_shap": {"days_since_last_activity": 0.41, "sessions_30d": 0.22, "plan": 0.05},
                "permutation_importance": {"days_since_last_activity": {"mean": 0.08, "std": 0.004}},
            },
            "engagement_score": {"output": "engagement_score", "mean_abs_shap": {"sessions_30d": 0.3}},
        }
    },
    "meta": {"method": "global_summary", "model_version": "sha256:0000", "timings": {"total_s": 1.2}},
}


# ---- sections and figures ----------------------------------------------------------------------------


def test_every_section_is_in_the_markdown_and_the_html(card: ModelCard) -> None:
    md, page = card.to_markdown(), card.to_html()
    assert len(SECTIONS) == 9
    for heading in SECTIONS:
        assert f"\n## {heading}\n" in md
        assert f"<h2>{heading}</h2>" in page
    assert "### Explanations (global feature importance)" in md
    assert page.startswith("<!doctype html>")
    assert "<style>" in page
    assert "<link" not in page
    assert "<script" not in page
    assert "src=" not in page


def test_metrics_equal_evaluation_json(card: ModelCard, run: dict[str, Any]) -> None:
    ev = run["evaluation"]
    assert [h.head for h in card.metrics.heads] == list(ev["heads"])
    for h in card.metrics.heads:
        models = ev["heads"][h.head]["models"]
        assert h.primary_metric == ev["heads"][h.head]["primary_metric"]
        assert h.rows == ev["heads"][h.head]["rows"]
        assert {m.metric: m.model_test for m in h.metrics} == models["xgboost"]["test"]
        assert {m.metric: m.model_train for m in h.metrics} == models["xgboost"]["train"]
        assert {m.metric: m.baseline_test for m in h.metrics} == models["sklearn"]["test"]
        expected_rules = [r for r in ev["policy"]["rules"] if r["head"] == h.head]
        assert [r.model_dump() for r in h.policy_rules] == [
            {k: r[k] for k in ("rule", "observed", "threshold", "passed")} for r in expected_rules
        ]
    churn = card.metrics.heads[0]
    assert churn.shipped_candidate == "group_offsets"
    shipped = run["report"]["heads"]["churn"]["candidates"][1]["accuracy"]
    assert {m.metric: m.shipped_test for m in churn.metrics} == shipped
    assert churn.calibration == [
        "kept the raw probabilities: isotonic calibration did not lower the log loss"
    ]
    md = card.to_markdown()
    assert "| **`auc_roc`** | 0.8321 | 0.8299 | 0.9200 | 0.8301 |" in md
    assert "| auc\\_roc >= 0.8 | 0.8321 | 0.8000 | pass |" not in md  # intraword underscores stay as they are
    assert "| auc_roc >= 0.8 | 0.8321 | 0.8000 | pass |" in md
    assert card.evaluation_data.split == ev["split"]
    assert card.training_data.rows == ev["rows"]
    assert card.training_data.rows_by_head == {h: ev["heads"][h]["rows"] for h in ev["heads"]}


def test_groups_equal_fairness_json(card: ModelCard, run: dict[str, Any]) -> None:
    fairness = card.quantitative_analyses.fairness
    assert fairness.assessed
    assert fairness.verdict == run["report"]["verdict"]
    for h in fairness.heads:
        head = run["report"]["heads"][h.head]
        shipped = next(c for c in head["candidates"] if c["name"] == head["chosen"])
        assert h.shipped == head["chosen"]
        assert [a.attribute for a in h.attributes] == list(shipped["fairness"])
        for a in h.attributes:
            expected = shipped["fairness"][a.attribute]
            assert [g.model_dump(exclude={"stats"}) for g in a.groups] == [
                {k: g[k] for k in ("group", "rows", "judged")} for g in expected["groups"]
            ]
            for got, want in zip(a.groups, expected["groups"], strict=True):
                assert {k: f.model_dump() for k, f in got.stats.items()} == {
                    k: v for k, v in want.items() if k not in ("group", "rows", "judged")
                }
            assert {g.figure: g.shipped.model_dump() for g in a.gaps} == expected["summary"]
        assert [(r.rule, r.shipped, r.passed) for r in h.rules] == [
            (r["rule"], r["observed"], r["passed"]) for r in shipped["rules"]
        ]
    churn = fairness.heads[0]
    unmitigated = run["report"]["heads"]["churn"]["candidates"][0]
    assert [r.unmitigated for r in churn.rules] == [r["observed"] for r in unmitigated["rules"]]
    gender = churn.attributes[0]
    assert gender.gaps[0].unmitigated is not None
    assert (
        gender.gaps[0].unmitigated.value
        == unmitigated["fairness"]["gender"]["summary"]["demographic_parity_ratio"]["value"]
    )
    md = card.to_markdown()
    assert "| female | yes | 240 | 0.1500 [0.1400, 0.1600] | " in md
    assert "| non_binary | no | 12 |" in md


def test_the_version_is_the_sha256_of_the_described_manifest(run: dict[str, Any]) -> None:
    def digest(folder: Path) -> str:
        return "sha256:" + hashlib.sha256((folder / "manifest.json").read_bytes()).hexdigest()

    with_gate = build_model_card(run["train"], fairness_dir=run["fairness"])
    assert with_gate.model_details.version == digest(run["fairness"] / "model")
    assert with_gate.model_details.bundle == str(run["fairness"] / "model")
    trained = build_model_card(run["train"])
    assert trained.model_details.version == digest(run["train"] / "model")
    chosen = build_model_card(run["train"], fairness_dir=run["fairness"], model_dir=run["train"] / "model")
    assert chosen.model_details.version == digest(run["train"] / "model")
    assert any("chose group_offsets, but this bundle carries unmitigated" in c for c in chosen.caveats)
    assert with_gate.model_details.version in with_gate.to_markdown()


def test_a_changed_bundle_file_is_refused(run: dict[str, Any]) -> None:
    (run["fairness"] / "model" / "churn" / "model.ubj").write_bytes(b"tampered")
    with pytest.raises(
        ArtifactError, match=r"churn/model\.ubj.*SHA-256 mismatch|churn/model\.ubj.*size mismatch"
    ):
        build_model_card(run["train"], fairness_dir=run["fairness"])


def test_without_a_fairness_report_the_card_says_fairness_was_not_assessed(run: dict[str, Any]) -> None:
    card = build_model_card(run["train"])
    assert not card.quantitative_analyses.fairness.assessed
    md = card.to_markdown()
    assert "**Fairness was not assessed**" in md
    assert "Fairness: not assessed (no fairness report was given)." in md
    assert any(e.startswith("Fairness was not assessed") for e in card.ethical_considerations)
    assert card.metrics.heads[0].shipped_candidate is None
    assert "They are used only to measure fairness." in md


def test_the_card_states_how_protected_attributes_are_used(card: ModelCard) -> None:
    ethics = " ".join(card.ethical_considerations)
    assert "The protected attributes (gender, age) are not model inputs" in ethics
    assert "post-processor group_offsets" in ethics
    assert "it reads gender, age when scoring" in ethics
    assert "without human review of edge cases" in ethics
    assert "non_binary (12), unknown (18)" in ethics  # groups too small to judge, named with their size
    assert "race" in ethics
    assert "ML-005" in ethics
    factors = {p.name: p for p in card.factors.protected}
    assert factors["gender"].read_at_scoring_by == ["churn"]
    assert not factors["gender"].model_input
    excluded = {c.name: c.role for c in card.training_data.excluded}
    assert excluded["gender"] == "protected"
    assert excluded["email"] == "pii"
    assert "gender" not in {f.name for f in card.training_data.features}
    assert {f.name: f.levels for f in card.training_data.features}["plan"] == CATEGORICAL["plan"]
    caveats = " ".join(card.caveats)
    assert "do not record whether the table was production or synthetic" in caveats
    assert "head ltv skipped" in caveats


# ---- explanations ---------------------------------------------------------------------------------


def test_explanations_from_a_dict_or_a_file(card: ModelCard, run: dict[str, Any]) -> None:
    assert not card.quantitative_analyses.explanations.computed
    assert "Explanations were not computed for this card." in card.to_markdown()

    from_dict = build_model_card(run["train"], fairness_dir=run["fairness"], explanations=EXPLANATIONS)
    path = run["tmp"] / "explanations.json"
    path.write_text(json.dumps(EXPLANATIONS))
    from_file = build_model_card(run["train"], fairness_dir=run["fairness"], explanations=path)
    for built in (from_dict, from_file):
        e = built.quantitative_analyses.explanations
        assert e.computed
        assert e.method == "global_summary"
        churn = e.heads[0]
        assert [i.feature for i in churn.features] == ["days_since_last_activity", "sessions_30d", "plan"]
        assert churn.features[0].mean_abs_shap == 0.41
        assert churn.features[0].permutation_std == 0.004
        assert churn.features[1].permutation_mean is None
        assert e.matches_model is False  # computed on another model: said in the caveats
        assert any("not on the model this card describes" in c for c in built.caveats)
    md = from_file.to_markdown()
    assert "| `days_since_last_activity` | 0.4100 | 0.0800 ± 0.0040 |" in md
    assert "| `sessions_30d` | 0.2200 | n/a |" in md

    matching = copy.deepcopy(EXPLANATIONS)
    matching["meta"]["model_version"] = card.model_details.version
    built = build_model_card(run["train"], fairness_dir=run["fairness"], explanations=matching)
    assert built.quantitative_analyses.explanations.matches_model is True


def test_malformed_explanations_name_their_source(run: dict[str, Any]) -> None:
    bad = copy.deepcopy(EXPLANATIONS)
    del bad["data"]["heads"]["churn"]["mean_abs_shap"]
    with pytest.raises(
        ArtifactError, match=r"^explanations: data\.heads\.churn\.mean_abs_shap: required key"
    ):
        build_model_card(run["train"], explanations=bad)
    with pytest.raises(ArtifactError, match=r"nothing\.json: missing"):
        build_model_card(run["train"], explanations=run["tmp"] / "nothing.json")


# ---- refusals and writing ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda p: p.write_text('{"contract": '), r"evaluation\.json: not valid JSON"),
        (
            lambda p: p.write_text(json.dumps({k: v for k, v in evaluation().items() if k != "split"})),
            r"evaluation\.json: split: required key is missing",
        ),
        (lambda p: p.write_text(json.dumps({**evaluation(), "rows": "many"})), r"evaluation\.json: rows: "),
        (lambda p: p.unlink(), r"evaluation\.json: missing \(written by engage train\)"),
    ],
    ids=["bad-json", "missing-key", "wrong-type", "missing-file"],
)
def test_a_malformed_evaluation_is_refused_and_nothing_is_written(
    run: dict[str, Any], spoil: Any, message: str
) -> None:
    spoil(run["train"] / "evaluation.json")
    out = run["tmp"] / "card"
    with pytest.raises(ArtifactError, match=message) as caught:
        write_model_card(build_model_card(run["train"], fairness_dir=run["fairness"]), out)
    assert str(run["train"] / "evaluation.json") in str(caught.value)
    assert not out.exists()
    assert [p.name for p in run["tmp"].iterdir() if p.name.startswith(".card")] == []


def test_a_malformed_fairness_report_is_refused(run: dict[str, Any]) -> None:
    report = run["report"]
    del report["heads"]["churn"]["candidates"][0]["fairness"]["gender"]["groups"][0]["rows"]
    (run["fairness"] / "fairness.json").write_text(json.dumps(report))
    with pytest.raises(
        ArtifactError, match=r"fairness\.json: heads\.churn\.candidates\.0\.fairness\.gender\.groups\.0\.rows"
    ):
        build_model_card(run["train"], fairness_dir=run["fairness"])


def test_artifacts_of_different_runs_are_refused(run: dict[str, Any]) -> None:
    other = evaluation()
    other["heads"]["churn"]["models"]["xgboost"]["test"]["auc_roc"] = 0.7
    other["heads"]["churn"]["models"]["sklearn"]["test"]["auc_roc"] = 0.71
    (run["train"] / "evaluation.json").write_text(json.dumps(other))
    with pytest.raises(
        ArtifactError, match=r"head churn: the unmitigated model's test figures match no model"
    ):
        build_model_card(run["train"], fairness_dir=run["fairness"])
    other = {**evaluation(), "trained_at": "2026-04-01T06:00:00+00:00"}
    (run["train"] / "evaluation.json").write_text(json.dumps(other))
    with pytest.raises(
        ArtifactError, match=r"manifest\.json: the model was trained at 2026-03-01.*not the same run"
    ):
        build_model_card(run["train"])


def test_another_contract_is_refused(run: dict[str, Any], contract: Any) -> None:
    newer = contract.model_copy(update={"version": "2.0.0"})
    with pytest.raises(
        ConfigError,
        match=r"trained on contract customers 1\.0\.0, but the contract given is customers 2\.0\.0",
    ):
        build_model_card(run["train"], contract=newer)


def test_a_failed_render_leaves_the_previous_card(
    card: ModelCard, run: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = run["tmp"] / "card"
    written = write_model_card(card, out)
    assert sorted(p.name for p in out.iterdir()) == ["model_card.html", "model_card.json", "model_card.md"]
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert json.loads(written["json"].read_text())["model_details"]["version"] == card.model_details.version

    def broken(self: ModelCard) -> str:
        raise RuntimeError("renderer broke")

    monkeypatch.setattr(ModelCard, "to_html", broken)
    with pytest.raises(RuntimeError, match="renderer broke"):
        write_model_card(card, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in run["tmp"].iterdir() if p.name.startswith(".card")] == []


def test_the_card_never_replaces_a_folder_holding_other_files(card: ModelCard, run: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=r"holds other files \(evaluation\.json, model\)"):
        write_model_card(card, run["train"])
    assert (run["train"] / "evaluation.json").is_file()


def test_the_json_card_reads_back(card: ModelCard, run: dict[str, Any]) -> None:
    written = write_model_card(card, run["tmp"] / "card")
    assert ModelCard.model_validate_json(written["json"].read_text()) == card


# ---- escaping ------------------------------------------------------------------------------------


def test_html_escapes_text_from_the_contract(run: dict[str, Any], contract: Any) -> None:
    evil = '<script>alert("x")</script> & <b>bold</b> | *not emphasis* [link](http://x)'
    column = contract.columns["tenure_days"].model_copy(update={"description": evil})
    spoiled = contract.model_copy(update={"columns": {**contract.columns, "tenure_days": column}})
    card = build_model_card(run["train"], fairness_dir=run["fairness"], contract=spoiled)
    page = card.to_html()
    assert "<script>" not in page
    assert "<b>bold</b>" not in page
    assert "<a " not in page
    cells = re.findall(r"<td>(&lt;script.*?)</td>", page)
    assert cells
    assert all(html.unescape(c) == evil for c in cells)
    md = card.to_markdown()
    assert "\\<script>" in md
    assert "\\|" in md
    assert "\\*not emphasis\\*" in md


@pytest.mark.parametrize(
    "text",
    [
        '<script>alert("x")</script>',
        "a *b* _c_ `d` [e](f) <g> & h ~~i~~ &amp; j_k",
        "- not a list",
        "1. not a list either",
        "> not a quote",
        "# not a heading",
    ],
)
def test_escaped_text_renders_to_itself(text: str) -> None:
    import mistune

    rendered = str(mistune.create_markdown(escape=True, plugins=["table"])(_para(text))).strip()
    assert rendered.startswith("<p>")
    assert rendered.endswith("</p>")
    inner = rendered.removeprefix("<p>").removesuffix("</p>")
    assert "<" not in inner
    assert html.unescape(inner) == text


# ---- the command ------------------------------------------------------------------------------------


def test_the_card_command(run: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    from engage.cli import main

    out = run["tmp"] / "card"
    with pytest.raises(SystemExit) as done:
        main(["card", str(run["train"]), "--fairness", str(run["fairness"]), "-o", str(out)])
    assert done.value.code == 0
    assert (out / "model_card.html").is_file()
    assert "model card: Engage customers model sha256:" in capsys.readouterr().out

    (run["train"] / "evaluation.json").write_text("[")
    with pytest.raises(SystemExit) as failed:
        main(["card", str(run["train"]), "-o", str(run["tmp"] / "other")])
    assert failed.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("engage: error: ")
    assert "evaluation.json: not valid JSON" in err[-1]
    assert not (run["tmp"] / "other").exists()


# ---- what the card takes from the policy, the champion and the contract ------------------------------


def test_a_champion_comparison_is_shown(run: dict[str, Any]) -> None:
    ev = evaluation()
    ev["champion"] = {
        "champion": "/models/prod",
        "problem": None,
        "winner": "champion",
        "min_improvement": 0.01,
        "heads": {
            "churn": {
                "metric": "auc_roc",
                "champion": 0.84,
                "challenger": 0.8321,
                "delta": -0.0079,
                "winner": "champion",
            }
        },
    }
    (run["train"] / "evaluation.json").write_text(json.dumps(ev))
    card = build_model_card(run["train"])
    champion = card.metrics.champion
    assert champion is not None
    assert champion.winner == "champion"
    assert [(h.head, h.champion, h.challenger, h.delta) for h in champion.heads] == [
        ("churn", 0.84, 0.8321, -0.0079)
    ]
    md = card.to_markdown()
    assert "| `churn` | `auc_roc` | 0.8400 | 0.8321 | -0.0079 | champion |" in md
    assert "Champion / challenger against /models/prod: the champion wins." in card.caveats


def test_a_given_policy_is_compared_and_lists_the_fairness_rules_not_yet_checked(run: dict[str, Any]) -> None:
    from engage.policy import load_policy

    shipped = load_policy()
    card = build_model_card(run["train"], policy=shipped)
    rules = card.quantitative_analyses.fairness.required_rules
    assert "churn: demographic_parity_ratio >= 0.8 (scope: all)" in rules
    assert not any("policy given" in c for c in card.caveats)
    other = shipped.model_copy(update={"version": "2.0.0"})
    card = build_model_card(run["train"], policy=other)
    assert any(
        "The policy given (default 2.0.0) is not the one the model was judged by" in c for c in card.caveats
    )


def test_the_comparison_bundle_is_not_described_as_judged_by_the_policy(run: dict[str, Any]) -> None:
    ev = run["evaluation"]
    manifest = json.loads((run["train"] / "model" / "manifest.json").read_text())
    metadata = {**manifest["metadata"], "learner": "sklearn", "policy_passed": None}
    metadata["heads"] = {n: {**h, "learner": "sklearn"} for n, h in metadata["heads"].items()}
    folder = run["tmp"] / "baseline"
    write_bundle(folder, ev)
    write_manifest(folder, metadata=metadata)
    card = build_model_card(run["train"], model_dir=folder)
    assert card.metrics.model_learner == "sklearn"
    assert card.metrics.baseline_learner == "xgboost"
    assert not card.metrics.judged_by_policy
    assert all(h.policy_rules == [] for h in card.metrics.heads)
    churn = card.metrics.heads[0]
    assert {m.metric: m.model_test for m in churn.metrics} == ev["heads"]["churn"]["models"]["sklearn"][
        "test"
    ]
    assert "not applied to this model" in card.to_markdown()


def test_the_data_source_is_stated_only_when_an_artifact_says_it(run: dict[str, Any], contract: Any) -> None:
    synthetic = contract.model_copy(update={"description": "Synthetic customers from engage generate."})
    card = build_model_card(run["train"], contract=synthetic)
    assert card.training_data.source is not None
    assert card.training_data.source.startswith("synthetic data (the contract customers says:")
    assert card.caveats[0].startswith("Training data: synthetic data")
