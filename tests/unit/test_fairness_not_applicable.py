"""Fairness "not applicable" is a contract decision with a reason: the contract's section and its errors,
the gate's verdict, the reports, the model card and the registry's audit record of the promotion.

The model is real: the churn head trained on the 300-row Telco fixture through a contract that declares
no protected column and states ``fairness: {applicable: false, reason: ...}``.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import numpy as np
import pytest
import yaml

from engage.contract import load_contract, parse_contract
from engage.contract._load import _FAIRNESS_CONTRADICTED
from engage.contract._model import FAIRNESS_REASON_REQUIRED
from engage.errors import ContractError, SchemaError
from tests.conftest import FIXTURES, TELCO_CONTRACT, TELCO_TABLE

NO_FAIRNESS = FIXTURES / "telco_no_fairness_contract.yml"
REASON = (
    "Network-capacity planning model: it ranks subscriber lines for a hardware upgrade and no decision "
    "about a person follows from it; the owner holds no protected attribute for it."
)
BASE: dict[str, Any] = yaml.safe_load(NO_FAIRNESS.read_text(encoding="utf-8"))


def _parse(data: dict[str, Any]) -> Any:
    return parse_contract(yaml.safe_dump(data, sort_keys=False), source="bad.yml")


def _exactly(message: str) -> str:
    return f"^{re.escape(message)}$"


# ---- the contract ------------------------------------------------------------------------------------


def test_the_section_is_read_with_its_reason() -> None:
    spec = load_contract(NO_FAIRNESS)
    assert spec.protected == []
    assert spec.fairness_applicable is False
    assert spec.fairness.reason == REASON
    assert load_contract(TELCO_CONTRACT).fairness_applicable is True  # no section: fairness applies


@pytest.mark.parametrize("reason", [None, "", "   "])
def test_not_applicable_without_a_reason_is_refused(reason: str | None) -> None:
    data = copy.deepcopy(BASE)
    data["fairness"] = {"applicable": False} if reason is None else {"applicable": False, "reason": reason}
    with pytest.raises(
        ContractError, match=_exactly(f"bad.yml: fairness.reason: {FAIRNESS_REASON_REQUIRED}")
    ):
        _parse(data)


def test_not_applicable_beside_protected_columns_is_refused_as_contradictory() -> None:
    data = yaml.safe_load(TELCO_CONTRACT.read_text(encoding="utf-8"))
    data["fairness"] = {"applicable": False, "reason": REASON}
    expected = _FAIRNESS_CONTRADICTED.format(columns="'gender', 'SeniorCitizen'")
    with pytest.raises(ContractError, match=_exactly(f"bad.yml: {expected}")):
        _parse(data)


def test_an_unknown_key_in_the_section_is_refused() -> None:
    data = copy.deepcopy(BASE)
    data["fairness"]["why"] = "x"
    with pytest.raises(ContractError, match=re.escape("bad.yml: fairness.why: unknown key")):
        _parse(data)


# ---- the gate, its outputs, the card, the promotion ------------------------------------------------


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from engage.fairness import assess, write_fairness
    from engage.policy import load_policy
    from engage.tables import conform, read_table
    from engage.training import TrainConfig, train, write_outputs

    root = tmp_path_factory.mktemp("not_applicable")
    spec = load_contract(NO_FAIRNESS)
    frame = conform(read_table(TELCO_TABLE), spec).frame
    policy = load_policy(FIXTURES / "small_table_policy.yml")
    trained = train(frame, spec, config=TrainConfig(seed=3, max_rounds=30), policy=policy)
    write_outputs(trained, frame, root / "train")
    result = assess(frame, spec, trained.bundle(), trained.split, config=trained.config, policy=policy)
    write_fairness(result, root / "fairness")
    return {
        "root": root,
        "spec": spec,
        "frame": frame,
        "policy": policy,
        "trained": trained,
        "result": result,
    }


def test_without_the_section_a_contract_with_no_protected_column_stays_an_error(run: dict[str, Any]) -> None:
    from engage.fairness import assess

    applies = run["spec"].model_copy(update={"fairness": type(run["spec"].fairness)()})
    with pytest.raises(SchemaError, match=r"^contract telco_customers declares no protected attribute: "):
        assess(run["frame"], applies, run["trained"].bundle(), run["trained"].split, policy=run["policy"])


def test_the_gate_says_not_applicable_with_the_reason_and_ships_the_trained_model(
    run: dict[str, Any],
) -> None:
    result = run["result"]
    assert result.verdict == "not_applicable"
    assert result.reason == REASON
    churn = result.heads["churn"]
    assert (churn.verdict, churn.reason, churn.chosen) == ("not_applicable", REASON, "unmitigated")
    assert [c.name for c in churn.candidates] == ["unmitigated"]  # nothing measured, no mitigation tried
    assert churn.candidates[0].fairness == {}
    # the unmitigated model's accuracy is the training run's own test figure (the card checks this)
    trained_auc = run["trained"].heads["churn"].test_metrics()["auc_roc"]
    assert churn.candidates[0].accuracy["auc_roc"] == pytest.approx(trained_auc)
    shipped = result.chosen_bundle()
    assert shipped is not None
    rows = run["frame"].head(50)
    np.testing.assert_array_equal(
        shipped.predict(rows)["churn_probability"], run["trained"].bundle().predict(rows)["churn_probability"]
    )


def test_the_reports_record_the_decision(run: dict[str, Any]) -> None:
    out = run["root"] / "fairness"
    data = json.loads((out / "fairness.json").read_text())
    assert (data["verdict"], data["applicable"], data["reason"]) == ("not_applicable", False, REASON)
    assert data["heads"]["churn"]["verdict"] == "not_applicable"
    summary = (out / "summary.md").read_text()
    assert summary.startswith("# Fairness gate: NOT APPLICABLE\n")
    assert f"Fairness: not applicable — {REASON}" in summary
    assert "Pareto" not in (out / "report.html").read_text()
    assert (out / "model" / "manifest.json").is_file()  # the model to promote: unmitigated


def test_the_card_says_not_applicable_with_the_reason(run: dict[str, Any]) -> None:
    from engage.modelcard import build_model_card

    card = build_model_card(
        run["root"] / "train", fairness_dir=run["root"] / "fairness", contract=run["spec"]
    )
    line = f"Fairness: not applicable — {REASON.rstrip('.')}."
    assert line in card.summary
    fairness = card.quantitative_analyses.fairness
    assert (fairness.assessed, fairness.applicable, fairness.reason) == (True, False, REASON)
    assert fairness.heads == []
    assert fairness.required_rules == []
    assert card.factors.fairness_not_applicable == REASON
    md = card.to_markdown()
    assert "**Fairness: not applicable** — Network-capacity planning model" in md
    for misleading in ("Verdict:", "Fairness gate verdict", "not assessed", "no group was measured."):
        assert misleading not in md
    page = card.to_html()
    assert "Fairness: not applicable — Network-capacity planning model" in page
    assert any(e.startswith(line) for e in card.ethical_considerations)


def test_promotion_does_not_block_and_the_audit_record_carries_the_reason(run: dict[str, Any]) -> None:
    from engage.promotion import RunArtifacts, promote
    from engage.registry import Registry

    root = run["root"]
    (root / "quality").mkdir()
    (root / "quality" / "report.json").write_text(
        json.dumps({"verdict": "pass", "rows_in": 300, "rows_quarantined": 0, "input_sha256": "ab" * 32})
    )
    (root / "drift").mkdir()
    (root / "drift" / "summary.json").write_text(
        json.dumps({"rows": 200, "available_rows": 200, "features": []})
    )
    policy = run["policy"]
    lenient = policy.model_copy(
        update={"heads": {}}
    )  # 300 rows: the head's quality rules are not this test's
    run_dir = RunArtifacts(training=root / "train", quality=root / "quality", fairness=root / "fairness",
                           drift=root / "drift")  # fmt: skip
    registry = Registry(str(root / "registry"))
    result = promote(lenient, run_dir, registry=registry, run_id="run-na", out_dir=root / "promotion")
    fairness_rules = [r for r in result.verdict.rules if r.section == "fairness"]
    assert [(r.head, r.observed, r.passed) for r in fairness_rules] == [("churn", "not_applicable", True)]
    assert result.promoted, result.verdict.failures
    decision = {
        "verdict": "not_applicable",
        "applicable": False,
        "reason": REASON,
        "shipped": {"churn": "unmitigated"},
    }
    record = next(r for r in registry.audit() if r["event"] == "promotion")
    assert record["fairness"] == decision
    assert record["version"] == result.version
    assert record["pipeline_run_id"] == "run-na"
    version = registry.get(result.version or "")
    assert (version.metadata["fairness_verdict"], version.metadata["fairness_applicable"]) == (
        "not_applicable",
        False,
    )
    assert version.metadata["fairness_reason"] == REASON
