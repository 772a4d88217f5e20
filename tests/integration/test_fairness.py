"""The fairness gate on generated data with the bias knob on and off, with the real learners."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engage.errors import SchemaError
from engage.fairness import assess_training, write_fairness
from engage.policy import load_policy
from engage.training import TrainConfig, load_bundle, train
from tests.conftest import AS_OF


@pytest.fixture(scope="module")
def policy() -> Any:
    base = load_policy()
    # a small table: judge groups from 300 test rows, fewer bootstrap replicates, and the 80 % rule alone
    # (on 3,000 test rows the equalized-odds gap is too noisy to test with; make bench measures the whole
    # default policy on 100,000 rows)
    fairness = base.fairness.model_copy(
        update={
            "min_group_size": 300,
            "bootstrap": 40,
            "classification": [
                r for r in base.fairness.classification if r.metric == "demographic_parity_ratio"
            ],
        }
    )
    return base.model_copy(update={"fairness": fairness})


def _table(bias: float) -> Any:
    from engage.synthetic import SyntheticConfig, generate_customers

    return generate_customers(
        SyntheticConfig(rows=12_000, seed=21, as_of=AS_OF, snapshots=4, bias=bias)
    ).frame


@pytest.fixture(scope="module")
def biased(contract: Any, policy: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, Path]:
    frame = _table(1.0)
    trained = train(
        frame,
        contract,
        config=TrainConfig(seed=1, max_rounds=150),
        heads=["churn", "engagement_score"],
        policy=policy,
    )
    result = assess_training(trained, frame)
    out = tmp_path_factory.mktemp("fair") / "out"
    write_fairness(result, out)
    return result, frame, out


def test_bias_fails_the_80_percent_rule_and_a_mitigation_passes_it(biased: tuple[Any, Any, Path]) -> None:
    result, _, _ = biased
    churn = result.heads["churn"]
    base = churn.candidates[0]
    assert base.name == "unmitigated"
    assert base.fairness["gender"].summary["demographic_parity_ratio"].value < 0.8
    assert not base.meets_policy
    assert churn.verdict == "pass_after_mitigation", churn.reason
    chosen = churn.candidate(churn.chosen)
    assert chosen.eligible
    assert chosen.meets_policy
    assert chosen.fairness["gender"].summary["demographic_parity_ratio"].value >= 0.8
    names = [c.name for c in churn.candidates]
    assert names == [
        "unmitigated",
        "reweighing",
        "exponentiated_gradient_dp",
        "exponentiated_gradient_eo",
        "threshold_optimizer",
        "group_offsets",
    ]
    cost = base.accuracy["auc_roc"] - chosen.accuracy["auc_roc"]
    assert cost < 0.05  # the aim is <= 0.02 (measured in make bench on 100K rows)
    assert f"({-cost:+.4f} against unmitigated)" in churn.reason


def test_group_dependent_error_fails_the_regression_and_the_run(biased: tuple[Any, Any, Path]) -> None:
    result, _, _ = biased
    engagement = result.heads["engagement_score"]
    assert engagement.verdict == "fail"
    assert engagement.candidates[0].fairness["gender"].summary["mae_ratio"].value > 1.25
    assert "no shippable candidate meets the policy" in engagement.reason
    assert result.verdict == "fail"
    assert result.chosen_bundle() is None


def test_outputs_say_why_and_nothing_is_promoted_on_fail(biased: tuple[Any, Any, Path]) -> None:
    _, _, out = biased
    data = json.loads((out / "fairness.json").read_text())
    assert data["verdict"] == "fail"
    churn = data["heads"]["churn"]
    assert churn["chosen"] == data["heads"]["churn"]["chosen"] != "unmitigated"
    gender = churn["candidates"][0]["fairness"]["gender"]
    assert {"low", "high", "value"} <= set(gender["summary"]["demographic_parity_ratio"])
    assert "# Fairness gate: FAIL" in (out / "summary.md").read_text()
    page = (out / "report.html").read_text()
    assert "Pareto plot" in page
    assert "reliability by group" in page
    assert not (out / "model").exists()


def test_the_chosen_post_processor_ships_inside_the_bundle(
    biased: tuple[Any, Any, Path], tmp_path: Path
) -> None:
    result, frame, _ = biased
    result.heads.pop("engagement_score")  # as if only churn were gated: its chosen model is promotable
    bundle = result.chosen_bundle()
    assert bundle is not None
    bundle.save(tmp_path / "model", metadata=bundle.metadata)
    loaded = load_bundle(tmp_path / "model")
    rows = frame.tail(500)
    np.testing.assert_allclose(
        loaded.predict(rows)["churn_probability"], bundle.predict(rows)["churn_probability"]
    )
    if "churn" in loaded.adjustments:
        assert (tmp_path / "model" / "churn" / "fairness.json").is_file()
        with pytest.raises(SchemaError, match="protected attribute 'gender' is not in the table"):
            loaded.predict(rows.drop(columns=["gender"]))


def test_without_bias_the_model_passes_unmitigated(contract: Any, policy: Any) -> None:
    frame = _table(0.0)
    # the bias knob acts on gender; age bands of ~300 test rows are too noisy to judge on a table this small
    by_gender = policy.fairness.model_copy(update={"attributes": ["gender"], "intersections": False})
    policy = policy.model_copy(update={"fairness": by_gender})
    trained = train(
        frame, contract, config=TrainConfig(seed=1, max_rounds=150), heads=["churn"], policy=policy
    )
    from engage.fairness import assess

    result = assess(
        frame, contract, trained.bundle(), trained.split, config=trained.config, policy=policy, mitigate=False
    )
    assert result.verdict == "pass", result.reason
    assert result.heads["churn"].chosen == "unmitigated"


def test_the_split_is_rebuilt_only_from_the_training_table(
    biased: tuple[Any, Any, Path], contract: Any
) -> None:
    from engage.fairness import split_for

    result, frame, _ = biased
    split, config = split_for(frame, contract, result.base)
    assert config.seed == 1
    assert len(split.test) == result.test_rows
    with pytest.raises(SchemaError, match=r"the table has 11,000 rows but the model was trained on 12,000"):
        split_for(frame.head(11_000), contract, result.base)


def test_the_cli_gate_on_a_contract_where_fairness_does_not_apply(tmp_path: Path) -> None:
    """``engage train`` / ``fairness`` / ``card`` on the Telco fixture through a contract with no protected
    column that states why fairness does not apply: exit 0, the verdict and the reason everywhere."""
    import subprocess
    import sys

    from tests.conftest import FIXTURES, TELCO_TABLE

    engage = str(Path(sys.executable).parent / "engage")
    contract = str(FIXTURES / "telco_no_fairness_contract.yml")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([engage, *args], capture_output=True, text=True, timeout=300, check=False)

    trained = run("train", str(TELCO_TABLE), "-c", contract, "-o", str(tmp_path / "train"))
    assert trained.returncode == 0, trained.stdout + trained.stderr
    gate = run("fairness", str(TELCO_TABLE), "-c", contract, "-m", str(tmp_path / "train" / "model"),
               "-o", str(tmp_path / "fair"))  # fmt: skip
    assert gate.returncode == 0, gate.stdout + gate.stderr
    text = " ".join(gate.stdout.split())
    assert "fairness: not applicable — Network-capacity planning model" in text
    assert "fairness gate: NOT APPLICABLE" in text
    data = json.loads((tmp_path / "fair" / "fairness.json").read_text())
    assert (data["verdict"], data["applicable"]) == ("not_applicable", False)
    assert data["reason"].startswith("Network-capacity planning model")
    card = run("card", str(tmp_path / "train"), "-f", str(tmp_path / "fair"), "-c", contract,
               "-o", str(tmp_path / "card"))  # fmt: skip
    assert card.returncode == 0, card.stdout + card.stderr
    md = (tmp_path / "card" / "model_card.md").read_text()
    assert "Fairness: not applicable — Network-capacity planning model" in " ".join(md.split())


# ---- exponentiated gradient ships as its deterministic best member -----------------------------------


@pytest.fixture(scope="module")
def only_reduction_meets(
    contract: Any, policy: Any, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Any, Any, Path]:
    """Gender bias on 12,000 seeded rows; post-processing forbidden (no protected attribute at scoring),
    so only the exponentiated-gradient candidates meet the 80 % rule: reweighing does not lift it."""
    frame = _table(1.0)
    fairness = policy.fairness.model_copy(
        update={"attributes": ["gender"], "intersections": False, "allow_protected_at_inference": False}
    )
    forbidding = policy.model_copy(update={"fairness": fairness})
    trained = train(
        frame, contract, config=TrainConfig(seed=1, max_rounds=150), heads=["churn"], policy=forbidding
    )
    result = assess_training(trained, frame, policy=forbidding)
    out = tmp_path_factory.mktemp("reduction") / "out"
    write_fairness(result, out)
    return result, trained, out


def test_only_the_reduction_meets_the_policy_and_it_is_chosen_and_saved(
    only_reduction_meets: tuple[Any, Any, Path],
) -> None:
    result, _, out = only_reduction_meets
    churn = result.heads["churn"]
    meeting = sorted(c.name for c in churn.candidates if c.meets_policy and c.eligible)
    assert meeting, churn.reason
    assert all(n.startswith("exponentiated_gradient_") for n in meeting), meeting
    for name in ("unmitigated", "reweighing"):
        assert not churn.candidate(name).meets_policy
    assert churn.verdict == "pass_after_mitigation", churn.reason
    chosen = churn.candidate(churn.chosen)
    assert chosen.name in meeting
    assert chosen.accuracy["auc_roc"] == max(churn.candidate(n).accuracy["auc_roc"] for n in meeting)
    assert chosen.candidate.model is not None  # one booster: the deterministic member
    assert chosen.candidate.model.estimator.get_booster().num_boosted_rounds() == 60
    data = json.loads((out / "fairness.json").read_text())
    rows = {c["name"]: c for c in data["heads"]["churn"]["candidates"]}
    assert rows[chosen.name]["decision"].startswith("chosen: the most accurate candidate that meets")
    assert rows[chosen.name]["notes"][0].startswith("ships booster ")
    assert rows["reweighing"]["decision"] == "not chosen: fails gender: demographic_parity_ratio >= 0.8"
    assert (
        rows["group_offsets"]["decision"]
        == "not chosen: meets the policy, but reads protected attributes at scoring (policy forbids)"
    )
    assert rows["threshold_optimizer"]["shippable"] is False
    assert rows["threshold_optimizer"]["why_not_shippable"].startswith("randomized: per group")
    assert sorted(c["accuracy_rank"] for c in rows.values()) == list(range(1, len(rows) + 1))
    page = (out / "report.html").read_text()
    assert "accuracy rank" in page
    assert "not shippable: randomized" in page
    assert (out / "model" / "churn" / "model.ubj").is_file()


def test_the_saved_member_reloads_verifies_and_predicts_as_in_memory(
    only_reduction_meets: tuple[Any, Any, Path], tmp_path: Path
) -> None:
    from engage.artifacts import verify_manifest
    from engage.errors import ArtifactError

    result, trained, out = only_reduction_meets
    churn = result.heads["churn"]
    chosen = churn.candidate(churn.chosen)
    verify_manifest(out / "model")  # every file's SHA-256 as the manifest lists it
    loaded = load_bundle(out / "model")
    assert loaded.metadata["fairness"] == {"churn": chosen.name}
    frame = _table(1.0)
    test_rows = frame.iloc[trained.split.test]
    labelled = test_rows[test_rows["churned"].notna()]
    np.testing.assert_allclose(
        loaded.predict(labelled)["churn_probability"].to_numpy(), chosen.candidate.predictions, rtol=1e-6
    )
    import shutil

    tampered = shutil.copytree(out / "model", tmp_path / "tampered")
    (tampered / "churn" / "model.ubj").write_bytes((tampered / "churn" / "model.ubj").read_bytes() + b" ")
    with pytest.raises(ArtifactError, match=r"model\.ubj"):
        verify_manifest(tampered)


def test_the_predictor_serves_the_member_as_the_library_predicts(
    only_reduction_meets: tuple[Any, Any, Path], tmp_path: Path
) -> None:
    import shutil

    import httpx

    from engage.registry import RegistrySettings
    from engage.signing import sign_bundle
    from tests.serving_support import rows, run_server

    _, _, out = only_reduction_meets
    # the servers load signed versions only: signed as the registry signs the version it publishes
    model = shutil.copytree(out / "model", tmp_path / "model")
    sign_bundle(model, model=RegistrySettings().model)
    bundle = load_bundle(model)
    sample = _table(1.0).tail(20)[bundle.features.columns]
    with run_server("engage_serving.predictor", ["--model_dir", str(model)], tmp_path / "log") as server:
        answer = httpx.post(
            server.url + "/v1/models/engage:predict", json={"instances": rows(sample, 20)}, timeout=30
        )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model_version"] == bundle.version
    got = np.array([p["churn_probability"] for p in body["predictions"]])
    np.testing.assert_allclose(
        got, bundle.predict(sample)["churn_probability"].to_numpy(), rtol=1e-6, atol=1e-6
    )
