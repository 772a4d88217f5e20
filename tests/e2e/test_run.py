"""``engage run``, the main job, end to end on a small table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ENGAGE = str(Path(sys.executable).parent / "engage")


@pytest.mark.slow
def test_run_generates_checks_and_scores_the_defects(tmp_path: Path) -> None:
    env = {**os.environ, "ENGAGE_RUN_ROWS": "20000", "ENGAGE_RUN_DEFECT_RATE": "0.005"}
    proc = subprocess.run(
        [ENGAGE, "run", "--out-dir", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "Data: 20,100 rows x 33 columns" in out  # 100 duplicate copies (4 extracts of 5,000)
    assert "Injected defects against what the checks found" in out
    # the run spoiled rows on purpose: the gate finds them, quarantines them, and goes on
    assert "quality gate: PASS AFTER REMEDIATION" in out
    gate = json.loads((tmp_path / "out" / "quality" / "report.json").read_text())
    assert gate["verdict"] == "pass_after_remediation"
    assert gate["rows_quarantined"] == 700  # 7 critical row-level defect kinds x 100 rows
    report = gate["quality"]
    assert report["rows"] == 20_100
    failed = {r["id"] for r in report["results"] if not r["passed"]}
    assert {"BR-001", "BR-003", "BR-007", "BR-009"} <= failed
    assert (tmp_path / "out" / "customers.parquet").exists()
    assert (tmp_path / "out" / "quality" / "data_docs" / "index.html").exists()
    assert (tmp_path / "out" / "customers.defects.parquet").exists()
    recalls = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if len(cells) == 6 and cells[2].replace(",", "").isdigit():  # rows of the defect score table
            recalls[cells[0]] = (cells[4], cells[5])
    assert len(recalls) == 10, out
    assert set(recalls.values()) == {("1.000", "1.000")}  # recall and precision of every defect kind

    # then the three heads are trained on the remediated table and judged by the promotion policy
    training = tmp_path / "out" / "training"
    evaluation = json.loads((training / "evaluation.json").read_text())
    assert list(evaluation["heads"]) == ["engagement_score", "churn", "ltv"]
    assert evaluation["split"].startswith("time-aware on snapshot_at: test on the 1 latest extract(s)")
    assert evaluation["heads"]["churn"]["rows"]["test"] > 4_500  # the latest extract, less its quarantine
    assert "Promotion policy default 1.0.0:" in out
    assert "training outputs:" in out
    for name in ("model/manifest.json", "baseline/manifest.json", "report.html", "kfp/metrics.json"):
        assert (training / name).is_file(), name

    # and the fairness gate judges every head and writes its reports
    fairness = json.loads((tmp_path / "out" / "fairness" / "fairness.json").read_text())
    assert set(fairness["heads"]) == {"engagement_score", "churn", "ltv"}
    assert fairness["verdict"] in {"pass", "pass_after_mitigation", "fail"}
    assert "fairness outputs:" in out

    # then the model that would ship is explained, one customer gets their document, and the card is written
    run = tmp_path / "out"
    shipped = run / ("fairness/model" if fairness["verdict"] != "fail" else "training/model")
    summary = json.loads((run / "explanations" / "global.json").read_text())
    assert set(summary["data"]["heads"]) == {"engagement_score", "churn", "ltv"}
    documents = list((run / "explanations" / "customers").glob("*/explanation.md"))
    assert len(documents) == 1
    assert "## How to contest this prediction" in documents[0].read_text()
    card = json.loads((run / "card" / "model_card.json").read_text())
    version = summary["meta"]["model_version"]
    assert version == json.loads(documents[0].with_suffix(".json").read_text())["model_version"]
    assert version in (run / "card" / "model_card.md").read_text()
    assert (shipped / "manifest.json").is_file()
    assert card  # the card's own content is tested in tests/unit/test_modelcard.py
    assert out.strip().splitlines()[-1].startswith("model card:")
