"""Explanations of a real model trained on a small generated table: every method, the customer document,
global summaries, bad input, and the ``engage explain`` command."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from engage.encoding import MISSING_FEATURE, NOT_A_ROW, describe
from engage.errors import ExplainError, SchemaError
from engage.explain import (
    ADDITIVITY_TOLERANCE,
    Explainer,
    ExplainSettings,
    customer_explanation,
    global_summary,
)
from engage.features import design_matrix
from engage.policy import load_policy
from engage.training import ModelBundle, TrainConfig, load_bundle, train
from tests.integration.test_cli import ENGAGE, ROOT, one_error_line

FAST = TrainConfig(seed=5, max_rounds=120)
# small budgets: the methods' logic, not their precision, is under test here (make bench runs the defaults)
SMALL = ExplainSettings(background_rows=200, kernel_samples=400, lime_samples=500, counterfactual_samples=800)


@pytest.fixture(scope="module")
def trained(
    panel: Any, contract: Any, tmp_path_factory: pytest.TempPathFactory
) -> tuple[ModelBundle, ModelBundle, Path]:
    root = tmp_path_factory.mktemp("explain")
    result = train(panel.frame, contract, config=FAST)
    result.bundle("xgboost").save(root / "model")
    result.bundle("sklearn").save(root / "baseline")
    return load_bundle(root / "model"), load_bundle(root / "baseline"), root


@pytest.fixture(scope="module")
def explainer(trained: Any, panel: Any, contract: Any) -> Explainer:
    return Explainer(trained[0], contract, panel.frame, settings=SMALL)


@pytest.fixture(scope="module")
def risky(trained: Any, panel: Any) -> pd.DataFrame:
    """The customers with the highest churn risk (their counterfactuals have something to do)."""
    bundle = trained[0]
    p = bundle.heads["churn"].predict(design_matrix(panel.frame, bundle.features))
    return panel.frame.iloc[np.argsort(-p)[:5]].reset_index(drop=True)


@pytest.mark.parametrize("head", ["churn", "engagement_score", "ltv"])
def test_tree_shap_adds_up_to_the_margin_the_model_predicts_from(
    explainer: Explainer, panel: Any, head: str
) -> None:
    rows = panel.frame.iloc[:300]
    result = explainer.explain(rows, method="tree_shap", head=head).to_dict()
    data, meta = result["data"], result["meta"]
    model = explainer.bundle.heads[head]
    X = design_matrix(rows, explainer.bundle.features)
    values = np.array(data["values"])
    assert values.shape == (300, len(explainer.bundle.features.columns))
    # the margin is the model's own (sklearn wrapper, best iteration), and the attributions add up to it
    np.testing.assert_allclose(data["margin"], model.margin(X), atol=1e-5)
    np.testing.assert_allclose(
        values.sum(axis=1) + data["base_value"], model.margin(X), atol=ADDITIVITY_TOLERANCE
    )
    assert data["additivity"]["ok"]
    assert data["additivity"]["max_abs_error"] <= ADDITIVITY_TOLERANCE
    np.testing.assert_allclose(data["prediction"], model.predict(X), rtol=1e-6, atol=1e-7)
    assert data["ids"] == rows["customer_id"].astype(str).tolist()
    assert meta["model_version"] == explainer.bundle.version
    assert meta["model_version"].startswith("sha256:")
    assert meta["output_space"] == {"churn": "log-odds", "engagement_score": "logit", "ltv": "log"}[head]
    assert meta["licence"] == "Apache-2.0"
    assert meta["timings"]["rows"] == 300


def test_kernel_shap_agrees_with_exact_tree_shap(explainer: Explainer, risky: pd.DataFrame) -> None:
    rows = risky.iloc[:2]
    tree = explainer.explain(rows, method="tree_shap").data
    kernel = explainer.explain(rows, method="kernel_shap")
    assert kernel.meta.licence == "BSL-1.1"
    assert kernel.meta.params["samples"] == SMALL.kernel_samples
    k, t = np.array(kernel.data["values"]), np.array(tree["values"])
    assert kernel.data["additivity"]["ok"]  # efficiency: the sampled values add up too
    for i in range(2):
        # interventional (Kernel) and path-dependent (Tree) SHAP differ in detail, not in what matters
        assert np.corrcoef(k[i], t[i])[0, 1] > 0.8
        assert set(np.argsort(-np.abs(k[i]))[:3]) & set(np.argsort(-np.abs(t[i]))[:3])


def test_anchor_pins_the_decision_with_the_precision_asked(explainer: Explainer, risky: pd.DataFrame) -> None:
    result = explainer.explain(risky.iloc[:1], method="anchors")
    row = result.data["rows"][0]
    assert row["decision"] == "churn risk at or above 0.5"
    assert row["rules"]
    assert all(isinstance(r, str) for r in row["rules"])
    assert row["precision"] >= 0.9
    assert 0 <= row["coverage"] <= 1


def test_lime_fits_a_local_surrogate_of_the_prediction(explainer: Explainer, risky: pd.DataFrame) -> None:
    result = explainer.explain(risky.iloc[:2], method="lime")
    for row in result.data["rows"]:
        assert len(row["weights"]) == SMALL.top_features
        # the row lies in each of its own bins: the surrogate's value there is intercept + every weight
        assert row["local_prediction"] == pytest.approx(row["intercept"] + sum(w for _, w in row["weights"]))
        assert row["score"] <= 1
    assert result.meta.output_space == "prediction"
    assert result.meta.licence == "BSD-2-Clause"


def test_counterfactuals_reach_the_target_without_touching_immutable_features(
    explainer: Explainer, risky: pd.DataFrame, contract: Any
) -> None:
    result = explainer.explain(risky.iloc[:3], method="counterfactual")
    assert result.meta.params["held_fixed"] == ["tenure_days", "country", "acquisition_channel"]
    found = [r for r in result.data["rows"] if r["found"]]
    assert found, result.data
    for i, row in enumerate(result.data["rows"]):
        assert row["desired_range"] == [0.0, 0.5]
        for cf in row["counterfactuals"]:
            changed = set(cf["changes"])
            assert changed
            assert not changed & {"tenure_days", "country", "acquisition_channel"}
            # re-score the changed customer independently of the explainer
            customer = risky.iloc[[i]].copy()
            for feature, change in cf["changes"].items():
                customer[feature] = customer[feature].astype(object)
                customer.loc[customer.index[0], feature] = change["to"]
            p = explainer.bundle.predict(customer)["churn_probability"].iloc[0]
            assert p <= 0.5
            assert p == pytest.approx(cf["prediction"])
            assert customer["sessions_30d"].iloc[0] <= customer["sessions_90d"].iloc[0]  # BR-008 kept


def test_an_unreachable_target_says_no_counterfactual_within_budget(
    explainer: Explainer, risky: pd.DataFrame
) -> None:
    result = explainer.explain(risky.iloc[:1], method="counterfactual", desired=(0.0, 1e-6))
    row = result.data["rows"][0]
    assert row["found"] is False
    assert row["counterfactuals"] == []
    assert row["reason"].startswith("no counterfactual found within budget (800 random candidates")


def test_a_prediction_already_in_range_needs_no_counterfactual(
    explainer: Explainer, risky: pd.DataFrame
) -> None:
    row = explainer.explain(risky.iloc[:1], method="counterfactual", desired=(0.0, 1.0)).data["rows"][0]
    assert row["found"] is True
    assert row["reason"] == "the prediction is already in the desired range"


def test_reasons_of_a_scikit_learn_head_come_from_kernel_shap_unless_licence_clean(
    trained: Any, panel: Any, contract: Any
) -> None:
    baseline = trained[1]
    sample = panel.frame.iloc[:1]
    result = Explainer(baseline, contract, panel.frame, settings=SMALL).explain(sample, method="reasons")
    assert result.meta.params["from"] == "kernel_shap"
    assert result.data["rows"][0]["reasons"]
    clean = Explainer(
        baseline, contract, panel.frame, settings=SMALL.model_copy(update={"licence_clean": True})
    )
    with pytest.raises(ExplainError, match="kernel_shap uses alibi"):
        clean.explain(sample, method="reasons")
    with pytest.raises(ExplainError, match="tree_shap reads xgboost trees; head churn is a sklearn model"):
        clean.explain(sample, method="tree_shap")
    assert clean.explain(sample, method="lime").meta.licence == "BSD-2-Clause"


def test_bad_requests_are_named_errors(explainer: Explainer, panel: Any) -> None:
    with pytest.raises(SchemaError, match=re.escape(f"field 'sessions_90d': {MISSING_FEATURE}")):
        explainer.explain(panel.frame.iloc[:1].drop(columns=["sessions_90d"]))
    with pytest.raises(
        ExplainError, match="unknown head 'revenue'; this model has: churn, engagement_score, ltv"
    ):
        explainer.explain(panel.frame.iloc[:1], head="revenue")
    with pytest.raises(ExplainError, match="anchors explains at most 100 rows per call; got 101"):
        explainer.explain(panel.frame.iloc[:101], method="anchors")
    with pytest.raises(SchemaError, match="no rows to explain"):
        explainer.explain(panel.frame.iloc[:0])


def test_customer_document_gives_prediction_reasons_counterfactual_and_how_to_contest(
    explainer: Explainer, panel: Any, risky: pd.DataFrame, tmp_path: Path
) -> None:
    customer = str(risky["customer_id"].iloc[0])
    doc = customer_explanation(explainer, panel.frame, customer)
    text = doc.to_markdown()
    for section in (
        "## What the model predicted",
        "## The main reasons",
        "## What would change the result",
        "## The information we used",
        "## How to contest this prediction",
    ):
        assert section in text
    assert "churn risk" in text
    assert "GDPR Article 22(3)" in text
    assert doc.model_version in text
    assert len(doc.reasons["churn"]) == SMALL.top_features
    assert {e["meta"]["method"] for e in doc.evidence} == {"reasons", "counterfactual"}
    assert "Self-declared gender" in text  # named as not used
    written = doc.write(tmp_path / "doc")
    assert sorted(p.name for p in written.values()) == [
        "explanation.html",
        "explanation.json",
        "explanation.md",
    ]
    assert json.loads(written["explanation.json"].read_text())["customer_id"] == customer
    with pytest.raises(
        ExplainError, match=r"customer 'CUST-NOPE' is not in the table \(4,000 rows, key customer_id\)"
    ):
        customer_explanation(explainer, panel.frame, "CUST-NOPE")


def test_customer_document_html_escapes_values_from_the_data(
    explainer: Explainer, risky: pd.DataFrame
) -> None:
    table = risky.copy()
    table["customer_id"] = table["customer_id"].astype(object)
    table.loc[0, "customer_id"] = "<script>alert(1)</script>"
    html = customer_explanation(explainer, table, "<script>alert(1)</script>", counterfactual=False).to_html()
    assert "<script>" not in html
    assert "&lt;script&gt;" in html


def test_global_summary_ranks_features_by_mean_abs_shap_and_permutation(
    explainer: Explainer, panel: Any, contract: Any
) -> None:
    result = global_summary(explainer, panel.frame, contract, load_policy(), rows=1_000, repeats=2).to_dict()
    churn = result["data"]["heads"]["churn"]
    shap_rank = list(churn["mean_abs_shap"].values())
    assert shap_rank == sorted(shap_rank, reverse=True)
    assert len(shap_rank) == len(explainer.encoder.names)
    assert churn["permutation_metric"] == "auc_roc"
    perm = churn["permutation_importance"]
    assert next(iter(perm)) in list(churn["mean_abs_shap"])[:5]  # the two views agree on what matters most
    assert result["meta"]["method"] == "global_summary"
    assert result["meta"]["model_version"] == explainer.bundle.version


def _engage(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ENGAGE, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.slow
def test_engage_explain_writes_the_document_and_refuses_clearly(
    trained: Any, panel: Any, risky: pd.DataFrame
) -> None:
    from engage.tables import write_table

    root = trained[2]
    table = write_table(panel.frame, root / "customers.parquet")
    customer = str(risky["customer_id"].iloc[0])

    def explain(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return _engage("explain", str(table), "-m", str(root / "model"), *args, env=env)

    proc = explain("--customer", customer, "-o", str(root / "doc"), "--method", "lime")
    assert proc.returncode == 0, proc.stderr
    assert "raised the churn risk" in proc.stdout
    evidence = json.loads((root / "doc" / "explanation.json").read_text())["evidence"]
    methods = [e["meta"]["method"] for e in evidence]
    assert methods == ["reasons", "reasons", "reasons", "counterfactual", "lime"]

    missing = explain("--customer", "CUST-NOPE", "-o", str(root / "x"))
    assert "customer 'CUST-NOPE' is not in the table" in one_error_line(missing)
    assert not (root / "x").exists()

    clean = explain(
        "--customer", customer, "-o", str(root / "y"), "--method", "anchors",
        env={"ENGAGE_EXPLAIN_LICENCE_CLEAN": "true"},
    )  # fmt: skip
    assert "anchors uses alibi (BSL-1.1, not an OSI licence)" in one_error_line(clean)
    assert not (root / "y").exists()

    summary = explain("--global", "-o", str(root / "global"))
    assert summary.returncode == 0, summary.stderr
    heads = json.loads((root / "global" / "global.json").read_text())["data"]["heads"]
    assert set(heads) == {"engagement_score", "churn", "ltv"}


def test_rows_as_json_objects_explain_exactly_like_the_table(explainer: Explainer, panel: Any) -> None:
    rows = panel.frame.iloc[:20]
    records = json.loads(rows.to_json(orient="records", date_format="iso"))  # as a request carries them
    from_table = explainer.explain(rows, method="tree_shap").data
    from_json = explainer.explain(records, method="tree_shap").data
    np.testing.assert_allclose(from_json["values"], from_table["values"])
    assert from_json["ids"] == from_table["ids"]
    with pytest.raises(SchemaError, match=re.escape(f"row 1, field 'plan': {MISSING_FEATURE}")):
        explainer.explain([records[0], {k: v for k, v in records[1].items() if k != "plan"}])
    with pytest.raises(
        SchemaError,
        match=re.escape(f"row 0, field 'sessions_90d': expected a number, got {describe('many')}"),
    ):
        explainer.explain([{**records[0], "sessions_90d": "many"}])
    with pytest.raises(
        SchemaError, match=re.escape("row 0, " + NOT_A_ROW.format(lists="", kind=describe([])))
    ):
        explainer.explain([[1, 2, 3]])  # type: ignore[list-item]


@pytest.mark.slow
def test_licence_clean_mode_never_imports_alibi(trained: Any, panel: Any) -> None:
    from engage.tables import write_table

    root = trained[2]
    table = write_table(panel.frame.iloc[:500], root / "small.parquet")
    script = f"""
import sys, pandas as pd
from engage.contract import load_contract
from engage.explain import Explainer, ExplainSettings, available_methods
from engage.training import load_bundle
frame = pd.read_parquet({str(table)!r})
ex = Explainer(load_bundle({str(root / "model")!r}), load_contract(), frame, settings=ExplainSettings(counterfactual_samples=300))
for method in available_methods(ex.settings):
    ex.explain(frame.iloc[:1], method=method)
print(sorted(available_methods(ex.settings)), "alibi" in sys.modules, "shap" in sys.modules)
"""
    proc = subprocess.run(
        [str(Path(ENGAGE).parent / "python"), "-c", script],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "ENGAGE_EXPLAIN_LICENCE_CLEAN": "true"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [
        "['counterfactual',",
        "'lime',",
        "'reasons',",
        "'tree_shap']",
        "False",
        "False",
    ]
