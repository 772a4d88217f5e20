"""The promotion policy file and the contract-driven model inputs and split."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from engage.encoding import MISSING_FEATURE
from engage.errors import ConfigError, SchemaError
from engage.features import FeatureSet, design_matrix, fit_feature_set, time_split
from engage.policy import evaluate, load_policy


def test_default_policy_holds_the_issue_thresholds() -> None:
    policy = load_policy()
    rules = {h: {(r.metric, r.op, r.value) for r in rs} for h, rs in policy.heads.items()}
    assert ("r2", ">", 0.75) in rules["engagement_score"]
    assert ("rmse", "<", 0.15) in rules["engagement_score"]
    assert ("auc_roc", ">=", 0.80) in rules["churn"]
    assert policy.overfitting.min_test_to_train_ratio == 0.8
    fairness = policy.fairness
    churn = {(r.metric, r.op, r.value, r.scope) for r in fairness.rules("churn", "binary_classification")}
    assert ("demographic_parity_ratio", ">=", 0.80, "all") in churn
    assert ("equalized_odds_difference", "<=", 0.10, "attributes") in churn
    engagement = {(r.metric, r.op, r.value) for r in fairness.rules("engagement_score", "regression")}
    assert engagement == {("mae_ratio", "<=", 1.25), ("max_group_rmse", "<=", 0.15)}
    assert (fairness.min_group_size, fairness.decision_threshold) == (1000, 0.5)


def test_policy_verdict_lists_every_rule_with_observed_and_threshold() -> None:
    policy = load_policy()
    verdict = evaluate(
        policy,
        {"churn": {"auc_roc": 0.79, "ece": 0.01}},
        train_metrics={"churn": {"auc_roc": 0.99}},
        tasks={"churn": "binary_classification"},
    )
    assert not verdict.passed
    failed = {r.rule: (r.observed, r.threshold) for r in verdict.failures}
    assert failed["auc_roc >= 0.8"] == (0.79, 0.8)
    assert failed["test auc_roc >= 0.8 x train auc_roc"][0] == pytest.approx(0.79 / 0.99)
    assert {r.head for r in verdict.rules} == {"churn"}  # heads not trained are left out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "policy: p\nversion: 1.0.0\nheads: {}\noverfitting: {min_test_to_train_ratio: 0.8, primary_metric: {}}\nextra: 1\n",
            "extra: unknown key",
        ),
        (
            "policy: p\nversion: 1.0.0\nheads: {churn: [{metric: auc_roc, op: '>=', value: high}]}\noverfitting: {min_test_to_train_ratio: 0.8, primary_metric: {}}\n",
            "heads.churn.0.value",
        ),
        (
            "policy: p\nversion: 1.0.0\nheads: {churn: [{metric: auc_roc, op: '=>', value: 0.8}]}\noverfitting: {min_test_to_train_ratio: 0.8, primary_metric: {}}\n",
            "heads.churn.0.op: expected",
        ),
        (
            "policy: p\nversion: 1.0.0\nheads: {}\noverfitting: {min_test_to_train_ratio: 0.8, primary_metric: {}}\n"
            "fairness: {classification: [{metric: demographic_parity_ratio, op: '>=', value: 0.8, scope: some}]}\n",
            "fairness.classification.0.scope",
        ),
        ("[1, 2]\n", "expected a mapping"),
    ],
)
def test_a_broken_policy_fails_before_any_run(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "p.yml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=expected.replace(".", r"\.").replace("(", r"\(")):
        load_policy(path)


def test_only_features_reach_the_model(clean: Any, contract: Any) -> None:
    features = fit_feature_set(clean.frame, contract)
    assert set(features.columns) == set(contract.features)
    for name in (*contract.pii, *contract.protected, "customer_id", "churned", "ltv"):
        assert name not in features.columns
    assert features.categorical["plan"] == ["free", "basic", "premium"]  # declared levels
    X = design_matrix(clean.frame, features)
    assert list(X.columns) == features.columns
    assert all(X[c].dtype == np.float64 for c in features.numeric)
    assert all(isinstance(X[c].dtype, pd.CategoricalDtype) for c in features.categorical)
    assert FeatureSet.from_json(features.to_json()) == features


def test_unknown_levels_become_missing_and_missing_features_fail(clean: Any, contract: Any) -> None:
    features = fit_feature_set(clean.frame, contract)
    frame = clean.frame.head(3).copy()
    frame["device_type"] = frame["device_type"].astype("object")
    frame.loc[0, "device_type"] = "smart_fridge"
    X = design_matrix(frame, features)
    assert pd.isna(X.loc[0, "device_type"])
    with pytest.raises(SchemaError, match=re.escape(f"field 'plan': {MISSING_FEATURE}")):
        design_matrix(frame.drop(columns=["plan"]), features)


def test_a_prohibited_feature_is_refused(clean: Any, contract: Any) -> None:
    from tests.unit.test_quality import _contract_with

    variant = _contract_with(
        lambda d: d["columns"].update(religion={"type": "string", "role": "feature", "description": "x"})
    )
    with pytest.raises(
        SchemaError, match=r"refusing to train on prohibited attributes: religion \(religion\)"
    ):
        fit_feature_set(clean.frame.assign(religion="x"), variant)


def test_time_split_tests_on_the_latest_cohorts(clean: Any, contract: Any, telco_contract: Any) -> None:
    split = time_split(clean.frame, contract)
    n = len(clean.frame)
    assert len(split.train) + len(split.valid) + len(split.test) == n
    assert len(set(split.train) | set(split.valid) | set(split.test)) == n
    cohort = clean.frame[contract.cohort]
    assert cohort.iloc[split.train].max() <= cohort.iloc[split.valid].min()
    assert cohort.iloc[split.valid].max() <= cohort.iloc[split.test].min()
    assert "time-aware" in split.how
    from engage.tables import read_table
    from tests.conftest import TELCO_TABLE

    telco = read_table(TELCO_TABLE)
    random_split = time_split(telco, telco_contract, seed=3)
    assert "random" in random_split.how
    assert len(random_split.test) == 60


def test_several_extracts_split_on_extract_time(panel: Any, contract: Any) -> None:
    frame = panel.frame
    split = time_split(frame, contract, seed=5)
    times = frame["snapshot_at"]
    latest = times.max()
    # the test part is exactly the latest extract; validation is a sample of the earlier ones
    assert set(split.test) == set(np.flatnonzero((times == latest).to_numpy()))
    assert (times.iloc[split.valid] < latest).all()
    assert (times.iloc[split.train] < latest).all()
    assert len(split.valid) == 400
    assert len(set(split.train) | set(split.valid) | set(split.test)) == len(frame)
    assert split.how.startswith("time-aware on snapshot_at: test on the 1 latest extract(s)")
    # customers of every tenure are in both parts: training sees what the test holds
    tenure = frame["tenure_days"]
    assert tenure.iloc[split.train].min() < 30
    assert tenure.iloc[split.test].min() < 30
    again = time_split(frame, contract, seed=5)
    np.testing.assert_array_equal(split.valid, again.valid)


@pytest.mark.parametrize(
    ("share", "test_rows", "minimum"),
    [
        (None, 60, 1000),
        (0.1, 100_000, 1000),
        (0.1, 1_400, 140),
        (0.1, 60, 30),
        (0.1, 200, 30),
        (0.25, 1_000, 250),
    ],
)
def test_the_group_minimum_scales_with_the_test_split(
    share: float | None, test_rows: int, minimum: int
) -> None:
    from engage.policy import FairnessPolicy

    policy = FairnessPolicy(min_group_size=1000, min_group_share=share, min_group_floor=30)
    assert policy.group_minimum(test_rows) == minimum
    # a table with two groups of min_group_size rows keeps min_group_size: the share is for small tables
    assert policy.group_minimum(test_rows, second_largest=1_000) == 1000
    assert policy.group_minimum(test_rows, second_largest=999) == minimum


def test_threads_are_the_steps_share_of_its_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    from engage.errors import ConfigError
    from engage.threads import THREAD_VARIABLES, available_cpus, cap_threads, step_threads

    for name in (*THREAD_VARIABLES, "ENGAGE_THREADS", "ENGAGE_PARALLEL_STEPS"):
        monkeypatch.delenv(name, raising=False)
    cpus = available_cpus()
    assert step_threads() == cpus
    monkeypatch.setenv("ENGAGE_PARALLEL_STEPS", str(cpus * 2))
    assert step_threads() == 1  # never 0
    monkeypatch.setenv("ENGAGE_THREADS", "3")
    assert step_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the user's own setting stays
    assert cap_threads() == 3
    assert (os.environ["OMP_NUM_THREADS"], os.environ["OPENBLAS_NUM_THREADS"]) == ("2", "3")
    monkeypatch.setenv("ENGAGE_THREADS", "many")
    with pytest.raises(ConfigError, match="ENGAGE_THREADS='many': expected a whole number"):
        step_threads()
