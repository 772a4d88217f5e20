"""The gate: Great Expectations suite from the contract, remediation, verdicts, outputs, metrics, lineage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from engage.quality import QUARANTINE_REASONS, remediate, run_gate, validate
from engage.tables import write_table
from tests.conftest import AS_OF, CHECKED_AT

pytestmark = pytest.mark.slow  # Great Expectations takes ~10 s to import


@pytest.fixture(scope="module")
def spoiled_gate(spoiled: Any, contract: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("gate")
    table = write_table(spoiled.frame, folder / "customers.parquet")
    # 7 critical defect kinds at 1 % each: allow 10 % quarantine instead of the contract's 5 %
    lenient = contract.model_copy(
        update={"remediation": contract.remediation.model_copy(update={"max_quarantine_share": 0.10})}
    )
    return run_gate(table, lenient, out_dir=folder / "out", now=CHECKED_AT)


def test_the_suite_is_generated_from_the_contract(contract: Any) -> None:
    from engage.quality._gx import expectations_for

    pairs = expectations_for(contract)
    ids = {i for i, _ in pairs}
    # every rule GX can express, and every declared column constraint
    assert {
        "BR-001",
        "BR-002",
        "BR-003",
        "BR-004",
        "BR-005",
        "BR-006",
        "BR-008",
        "BR-009",
        "ML-001",
        "ML-003",
    } <= ids
    assert {"BR-007", "BR-010", "ML-002", "ML-004", "ML-005", "ML-006"}.isdisjoint(ids)  # checked in code
    assert "schema.plan.categories" in ids
    assert "schema.age.not_null" in ids
    assert all(e.meta["check_id"] == i for i, e in pairs)


def test_gx_and_engage_code_agree_on_every_check(spoiled_gate: Any, spoiled: Any, contract: Any) -> None:
    native = validate(spoiled.frame, contract, now=CHECKED_AT).report
    by_gx = [r for r in spoiled_gate.report.results if r.engine == "great_expectations"]
    assert len(by_gx) > 40
    for r in by_gx:
        assert r.passed == native.result(r.id).passed, r
        assert "GX decides" not in r.message


def test_remediation_quarantines_exactly_the_critical_rows(spoiled_gate: Any, spoiled: Any) -> None:
    gate = spoiled_gate
    assert gate.verdict == "pass_after_remediation"
    defects = spoiled.defects
    critical_kinds = set(defects["kind"]) - {
        "bad_email",
        "bad_phone",
        "duplicate",
    }  # warnings stay; copies drop
    quarantined = set(gate.remediated.quarantine["customer_id"])
    expected = set(defects.loc[defects["kind"].isin(critical_kinds), "customer_id"])
    assert quarantined == expected
    assert gate.remediated.quarantine[QUARANTINE_REASONS].str.len().gt(0).all()
    actions = {(a.action, a.column): a.rows for a in gate.actions}
    assert actions[("drop_exact_duplicates", None)] == (defects["kind"] == "duplicate").sum()
    assert gate.rows_out + gate.rows_quarantined + actions[("drop_exact_duplicates", None)] == len(
        spoiled.frame
    )
    assert gate.remediated.after.report.passed
    assert gate.remediated.table["customer_id"].is_unique


def test_outputs_are_complete_and_carry_no_personal_data(spoiled_gate: Any, spoiled: Any) -> None:
    out = spoiled_gate.outputs["report.json"].parent
    names = {p.name for p in out.iterdir()}
    assert names == {
        "report.json", "summary.md", "summary.html", "remediated.parquet", "quarantine.parquet",
        "metrics.prom", "lineage.jsonl", "data_docs",
    }  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    assert report["verdict"] == "pass_after_remediation"
    assert report["rows_quarantined"] == spoiled_gate.rows_quarantined
    emails = spoiled.frame["email"].dropna().astype(str).tolist()[:200]
    texts = [(out / n).read_text() for n in ("report.json", "summary.md", "summary.html", "lineage.jsonl")]
    texts += [p.read_text(errors="ignore") for p in (out / "data_docs").rglob("*.html")]
    for text in texts:
        assert not any(e in text for e in emails)
    assert "PASS after remediation" in (out / "summary.md").read_text()
    assert "<table>" in (out / "summary.html").read_text()


def test_lineage_links_input_hash_checks_and_outputs(spoiled_gate: Any) -> None:
    from engage._io import sha256_file

    out = spoiled_gate.outputs["lineage.jsonl"].parent
    start, complete = (json.loads(line) for line in (out / "lineage.jsonl").read_text().splitlines())
    assert (start["eventType"], complete["eventType"]) == ("START", "COMPLETE")
    assert start["run"]["runId"] == complete["run"]["runId"]
    (source,) = complete["inputs"]
    assert source["facets"]["version"]["datasetVersion"] == f"sha256:{spoiled_gate.input_sha256}"
    assertions = source["inputFacets"]["dataQualityAssertions"]["assertions"]
    assert len(assertions) == len(spoiled_gate.report.results)
    assert {a["name"] for a in assertions if not a["success"]} >= {"BR-001", "BR-003"}
    outputs = {Path(o["name"]).name: o for o in complete["outputs"]}
    assert set(outputs) == {"remediated.parquet", "quarantine.parquet", "report.json"}
    assert outputs["remediated.parquet"]["facets"]["version"]["datasetVersion"] == "sha256:" + sha256_file(
        out / "remediated.parquet"
    )
    facet = complete["run"]["facets"]["engage_gate"]
    assert facet["verdict"] == "pass_after_remediation"
    assert {t["action"] for t in facet["transformations"]} >= {
        "drop_exact_duplicates",
        "quarantine",
        "impute",
    }


def test_metrics_text_has_the_documented_series(spoiled_gate: Any) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    text = spoiled_gate.outputs["metrics.prom"].read_text()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }
    assert samples[("engage_data_duplicate_count", (("table", "customers"),))] == 40
    assert (
        samples[("engage_data_quarantined_rows", (("table", "customers"),))] == spoiled_gate.rows_quarantined
    )
    assert samples[("engage_data_freshness_hours", (("table", "customers"),))] == pytest.approx(1.0)
    assert samples[("engage_data_schema_violations", (("column", "plan"), ("table", "customers")))] > 0
    assert samples[
        ("engage_data_outlier_rate", (("column", "age"), ("table", "customers")))
    ] == pytest.approx(0.01, abs=1e-3)
    assert 0 < samples[("engage_data_null_rate", (("column", "nps_score"), ("table", "customers")))] < 1


def test_a_failure_midway_leaves_no_output(
    tmp_path: Path, clean: Any, contract: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = write_table(clean.frame, tmp_path / "c.parquet")
    import engage.quality._summary as summary

    def boom(*_: object) -> str:
        raise RuntimeError("disk full")

    monkeypatch.setattr(summary, "render_html", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        run_gate(table, contract, out_dir=tmp_path / "out", now=CHECKED_AT, great_expectations=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.parquet"]


def test_keep_latest_cap_and_impute(clean: Any, contract: Any) -> None:
    frame = clean.frame.head(50).copy()
    older = frame.iloc[[0]].copy()
    older["snapshot_at"] = older["snapshot_at"] - pd.Timedelta(hours=2)
    older["sessions_30d"] = 0  # a different, older record of the same customer
    frame = pd.concat([older, frame], ignore_index=True)
    frame.loc[5, "active_days_30d"] = 45  # capped at 30
    frame.loc[6, "nps_score"] = pd.NA
    validation = validate(frame, contract, now=CHECKED_AT)
    assert "BR-001" in {r.id for r in validation.report.critical_failures}
    fixed = remediate(validation, contract, now=CHECKED_AT)
    actions = {(a.action, a.column): a.rows for a in fixed.actions}
    assert actions[("keep_latest_per_key", None)] == 1
    assert actions[("cap", "active_days_30d")] == 1
    assert actions[("impute", "nps_score")] >= 1
    assert len(fixed.table) == 50
    assert fixed.table["customer_id"].is_unique
    row = fixed.table.set_index("customer_id").loc[frame.loc[1, "customer_id"]]
    assert row["sessions_30d"] == frame.loc[1, "sessions_30d"]  # the latest record survived
    assert fixed.table["active_days_30d"].max() <= 30
    assert fixed.table["nps_score"].notna().all()
    assert len(fixed.quarantine) == 0
    assert frame.loc[5, "active_days_30d"] == 45  # the input is not modified


def test_too_much_quarantine_fails_the_gate(tmp_path: Path, contract: Any) -> None:
    from engage.synthetic import DefectKind, SyntheticConfig, generate_customers

    bad = generate_customers(
        SyntheticConfig(rows=1_000, seed=3, as_of=AS_OF, defects={DefectKind.impossible_age: 0.08})
    )
    table = write_table(bad.frame, tmp_path / "bad.parquet")
    gate = run_gate(table, contract, out_dir=tmp_path / "out", now=CHECKED_AT, great_expectations=False)
    assert gate.verdict == "fail"
    assert "above the 5% limit" in gate.reason
    assert np.isclose(gate.rows_quarantined / 1000, 0.08)
