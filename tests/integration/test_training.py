"""Training with the real learners on a small generated table: outputs, bundles, refusals, champion."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from engage.errors import ArtifactError, TableRefused, TrainingError
from engage.training import TrainConfig, TrainResult, load_bundle, train, train_table
from tests.conftest import AS_OF

FAST = TrainConfig(seed=3, max_rounds=150)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, panel: Any, contract: Any) -> tuple[TrainResult, Path]:
    from engage.tables import write_table

    root = tmp_path_factory.mktemp("train")
    table = write_table(panel.frame, root / "customers.parquet")
    out = root / "out"
    return train_table(table, contract, out, now=AS_OF, config=FAST), out


def test_every_head_is_trained_with_both_learners_and_judged(trained: tuple[TrainResult, Path]) -> None:
    result, out = trained
    assert list(result.heads) == ["engagement_score", "churn", "ltv"]
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["split"].startswith("time-aware on snapshot_at")
    for name, head in evaluation["heads"].items():
        assert set(head["models"]) == {"xgboost", "sklearn"}, name
        assert head["rows"]["test"] == 1000  # the latest of 4 extracts
        for model in head["models"].values():
            assert set(model) >= {"train", "test", "objective", "iterations", "seconds"}
    models = evaluation["heads"]
    assert models["engagement_score"]["models"]["xgboost"]["objective"] == "reg:logistic"
    assert models["ltv"]["models"]["xgboost"]["objective"] == "reg:tweedie"
    assert models["ltv"]["models"]["sklearn"]["transform"] == "log1p"
    assert set(models["churn"]["models"]["xgboost"]["test"]) >= {
        "auc_roc", "pr_auc", "log_loss", "brier", "ece", "lift_top_decile", "capture_top_decile",
    }  # fmt: skip
    assert set(models["ltv"]["models"]["xgboost"]["test"]) >= {
        "r2",
        "rmse",
        "mae",
        "spearman",
        "top_decile_capture",
    }
    # the policy judged every head, overfitting included, and the figures are real ones
    rules = {(r["head"], r["rule"]) for r in evaluation["policy"]["rules"]}
    assert ("engagement_score", "r2 > 0.75") in rules
    assert (
        "churn",
        "test auc_roc >= 0.8 x train auc_roc",
    ) in rules
    assert 0.6 < models["churn"]["models"]["xgboost"]["test"]["auc_roc"] < 0.99
    assert 0.5 < models["engagement_score"]["models"]["xgboost"]["test"]["r2"] < 0.99


def test_kfp_metric_files_and_report(trained: tuple[TrainResult, Path]) -> None:
    result, out = trained
    metrics = json.loads((out / "kfp" / "metrics.json").read_text())
    assert metrics["churn.auc_roc"] == pytest.approx(result.heads["churn"].test_metrics()["auc_roc"])
    assert "ltv.baseline.spearman" in metrics
    assert all(isinstance(v, float) for v in metrics.values())
    classification = json.loads((out / "kfp" / "classification_metrics.json").read_text())
    assert list(classification) == ["churn"]
    roc = classification["churn"]["roc"]
    assert len(roc["fpr"]) == len(roc["tpr"]) == len(roc["threshold"]) >= 2
    assert (roc["fpr"][0], roc["tpr"][-1]) == (0.0, 1.0)
    matrix = classification["churn"]["confusion_matrix"]["matrix"]
    assert sum(map(sum, matrix)) == 1000
    html = (out / "report.html").read_text()
    assert html.count("<img") >= 3 + 3 + 2
    assert "Cumulative capture" in html
    assert "Reliability diagram" in html
    assert "time-aware on snapshot_at" in html


def test_predictions_hold_no_personal_or_protected_column(
    trained: tuple[TrainResult, Path], contract: Any
) -> None:
    _result, out = trained
    predictions = pd.read_parquet(out / "test_predictions.parquet")
    assert list(predictions.columns[:2]) == ["customer_id", "snapshot_at"]
    assert {
        "churn_probability",
        "churn_probability_baseline",
        "churn_label",
        "ltv",
        "engagement_score",
    } <= set(predictions.columns)
    assert len(predictions) == 1000
    features = json.loads((out / "model" / "features.json").read_text())
    inputs = set(features["numeric"]) | set(features["categorical"])
    assert inputs <= set(contract.features)
    assert not inputs & (
        {"gender", "age", "email", "full_name", "phone", "customer_id"} | set(contract.targets)
    )


def test_a_bundle_loads_back_to_the_same_predictions(trained: tuple[TrainResult, Path], panel: Any) -> None:
    result, out = trained
    rows = panel.frame.iloc[result.split.test]
    for folder, learner in (("model", "xgboost"), ("baseline", "sklearn")):
        bundle = load_bundle(out / folder)
        assert bundle.learner == learner
        predicted = bundle.predict(rows)
        for _name, r in result.heads.items():
            np.testing.assert_allclose(predicted[r.head.output], r.predictions[learner], rtol=1e-6)
    manifest = json.loads((out / "model" / "manifest.json").read_text())
    listed = {f["path"] for f in manifest["files"]}
    assert listed == {"features.json", "churn/model.ubj", "engagement_score/model.ubj", "ltv/model.ubj"}
    assert manifest["metadata"]["contract"] == {"name": "customers", "version": "1.0.0"}
    assert not list(out.rglob("*.pkl"))
    assert not list(out.rglob("*.pickle"))


@pytest.mark.parametrize("target", ["churn/model.ubj", "features.json", "ltv/model.ubj"])
def test_one_changed_byte_refuses_the_bundle(
    trained: tuple[TrainResult, Path], tmp_path: Path, target: str
) -> None:
    _, out = trained
    copy = shutil.copytree(out / "model", tmp_path / "model")
    path = copy / target
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=f"{target}: SHA-256 mismatch"):
        load_bundle(copy)


def test_a_calibrator_travels_with_its_bundle(
    trained: tuple[TrainResult, Path], panel: Any, tmp_path: Path
) -> None:
    from sklearn.isotonic import IsotonicRegression

    result, _ = trained
    bundle = result.bundle("xgboost")
    churn = bundle.heads["churn"]
    X = panel.frame.iloc[result.split.valid]
    from engage.features import design_matrix
    from engage.training import head_labels

    churn.calibrator = IsotonicRegression(out_of_bounds="clip").fit(
        churn.raw(design_matrix(X, bundle.features)), head_labels(X, churn.head)
    )
    try:
        bundle.save(tmp_path / "calibrated")
        again = load_bundle(tmp_path / "calibrated")
        rows = panel.frame.iloc[result.split.test]
        np.testing.assert_allclose(
            again.predict(rows)["churn_probability"], bundle.predict(rows)["churn_probability"]
        )
        assert (tmp_path / "calibrated" / "churn" / "calibrator.skops").is_file()
    finally:
        churn.calibrator = None


def test_same_seed_same_models(panel: Any, contract: Any) -> None:
    config = TrainConfig(seed=7, max_rounds=60)
    first = train(panel.frame, contract, config=config, heads=["churn"])
    second = train(panel.frame, contract, config=config, heads=["churn"])
    np.testing.assert_array_equal(
        first.heads["churn"].predictions["xgboost"], second.heads["churn"].predictions["xgboost"]
    )
    np.testing.assert_array_equal(
        first.heads["churn"].predictions["sklearn"], second.heads["churn"].predictions["sklearn"]
    )


def test_the_champion_is_scored_on_the_same_test_rows(
    trained: tuple[TrainResult, Path], panel: Any, contract: Any, telco_contract: Any, tmp_path: Path
) -> None:
    _, out = trained
    result = train(
        panel.frame,
        contract,
        config=TrainConfig(seed=4, max_rounds=40),
        heads=["churn", "ltv"],
        champion=out / "model",
    )
    comparison = result.champion
    assert comparison is not None
    assert comparison.problem is None
    assert list(comparison.champion_metrics) == ["churn", "ltv"]
    delta = (
        comparison.challenger_metrics["churn"]["auc_roc"] - comparison.champion_metrics["churn"]["auc_roc"]
    )
    assert comparison.delta("churn") == pytest.approx(delta)
    assert comparison.winner in {"champion", "challenger"}
    assert all(" -> " in line and "wins" in line for line in comparison.lines())
    # a champion that cannot be scored is reported, not fatal
    broken = shutil.copytree(out / "model", tmp_path / "broken")
    (broken / "features.json").write_text("{}")
    result = train(panel.frame, contract, config=TrainConfig(max_rounds=20), heads=["churn"], champion=broken)
    assert result.champion is not None
    assert "features.json: size mismatch" in (result.champion.problem or "")
    assert result.champion.winner == "challenger"


def test_a_table_failing_its_contract_is_refused_before_training(
    spoiled: Any, contract: Any, tmp_path: Path
) -> None:
    from engage.tables import write_table

    table = write_table(spoiled.frame, tmp_path / "spoiled.parquet")
    with pytest.raises(
        TableRefused,
        match=r"refusing to train on .*spoiled.parquet: it fails data contract customers \(.*BR-001",
    ):
        train_table(table, contract, tmp_path / "out", now=AS_OF, config=FAST)
    assert not (tmp_path / "out").exists()


def test_unusable_targets_name_their_head(panel: Any, contract: Any) -> None:
    frame = panel.frame.assign(churned=pd.array([False] * len(panel.frame), dtype="boolean"))
    with pytest.raises(TrainingError, match="head churn: the label 'churned' has a single class"):
        train(frame, contract, config=FAST)
    with pytest.raises(TrainingError, match="head ltv: its target column 'ltv' is not in the table"):
        train(panel.frame.drop(columns=["ltv"]), contract, config=FAST)
    with pytest.raises(TrainingError, match="head engagement_score: too few labelled rows for the split"):
        train(panel.frame.head(150), contract, config=FAST)
