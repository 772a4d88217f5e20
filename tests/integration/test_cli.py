"""The real ``engage`` command in a subprocess: outputs, exit codes, and one-line errors."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, TELCO_CONTRACT, TELCO_TABLE

ENGAGE = str(Path(sys.executable).parent / "engage")
AS_OF = "2026-03-01T06:00:00Z"
FRESH = "2026-03-01T07:00:00Z"


def engage(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ENGAGE, *args], capture_output=True, text=True, cwd=cwd, timeout=300, check=False)


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr
    return lines[-1]


def test_help_answers_without_importing_the_data_stack() -> None:
    proc = engage("--help")
    assert proc.returncode == 0
    for command in ("generate", "validate", "train", "fairness", "explain", "card", "run", "contract"):
        assert command in proc.stdout
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, engage.cli; print(sorted({m.split('.')[0] for m in sys.modules}))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = set(json.loads(probe.stdout.replace("'", '"')))
    assert not loaded & {"numpy", "pandas", "pyarrow", "scipy", "sklearn", "yaml", "pydantic"}, loaded


def test_generate_is_reproducible_and_validate_passes(tmp_path: Path) -> None:
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    for out in (a, b):
        proc = engage("generate", "--rows", "2000", "--seed", "5", "--as-of", AS_OF, "--out", str(out))
        assert proc.returncode == 0, proc.stderr
        assert "2,000 rows x 33 columns" in proc.stdout
    assert hashlib.sha256(a.read_bytes()).hexdigest() == hashlib.sha256(b.read_bytes()).hexdigest()
    assert not (tmp_path / "a.defects.parquet").exists()

    report = tmp_path / "report.json"
    proc = engage("validate", str(a), "--now", FRESH, "--report", str(report), "--no-gx")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .startswith("quality gate: PASS: all critical checks passed on 2,000 rows")
    )
    data = json.loads(report.read_text())
    assert data["rows"] == 2000
    assert all(r["passed"] for r in data["results"])


def test_validate_fails_the_gate_on_critical_defects(tmp_path: Path) -> None:
    out = tmp_path / "spoiled.parquet"
    proc = engage(
        "generate", "-n", "2000", "--as-of", AS_OF, "--out", str(out), "--defect", "impossible_age=0.01",
        "--defect", "bad_email=0.02",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    truth = tmp_path / "spoiled.defects.parquet"
    assert truth.exists()
    proc = engage("validate", str(out), "--now", FRESH, "--only-failures", "--no-gx")
    assert proc.returncode == 1
    assert "BR-003" in proc.stdout
    assert "BR-004" in proc.stdout
    assert proc.stderr.strip().splitlines()[-1] == "quality gate: FAIL: 1 critical check(s) failed: BR-003"

    # with --out-dir the gate remediates: the 20 impossible ages are quarantined, the rest goes on
    gate_dir = tmp_path / "gate"
    proc = engage("validate", str(out), "--now", FRESH, "--out-dir", str(gate_dir))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "quality gate: PASS AFTER REMEDIATION" in proc.stderr
    assert "20 rows (1.00%) quarantined" in proc.stderr
    assert (gate_dir / "data_docs" / "index.html").exists()

    # a stale table cannot be remediated: the gate fails, and its report says why
    proc = engage(
        "validate", str(out), "--now", "2026-03-03T07:00:00Z", "--out-dir", str(gate_dir), "--no-gx"
    )
    assert proc.returncode == 1
    assert "BR-010 still fails after remediation" in proc.stderr.strip().splitlines()[-1]
    assert json.loads((gate_dir / "report.json").read_text())["verdict"] == "fail"


def test_the_second_table_validates_with_its_contract() -> None:
    proc = engage("validate", str(TELCO_TABLE), "--contract", str(TELCO_CONTRACT), "--no-gx")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "telco_customers" in proc.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ("validate", "missing.parquet", "--out-dir", "gate"),
            "engage: error: missing.parquet: no such file",
        ),
        (("validate", "README.md"), "engage: error: README.md: not a Parquet or CSV file"),
        (
            ("validate", str(TELCO_TABLE)),
            "engage: error: table lacks 32 column(s) that contract 'customers' requires",
        ),
        (
            ("contract", "check", "broken.yml"),
            "engage: error: broken.yml: line 2, column 1: not valid YAML: expected ',' or ']'",
        ),
        (("generate", "--out", "x.csv"), "engage: error: --out: expected a .parquet file name"),
        (
            ("generate", "--out", "x.parquet", "--rows", "0"),
            "engage: error: --rows: Input should be greater than or equal to 1",
        ),
        (
            ("generate", "--out", "x.parquet", "--defect", "typo=0.1"),
            "engage: error: --defect: unknown defect kind 'typo'",
        ),
        (
            ("generate", "--out", "x.parquet", "--defect", "bad_email=0.5"),
            "engage: error: --defects: defect rate for bad_email must be in [0, 0.2]",
        ),
        (
            ("generate", "--out", "x.parquet", "--as-of", "yesterday"),
            "engage: error: --as-of: expected an ISO 8601 date",
        ),
    ],
)
def test_errors_are_one_line_exit_2_and_write_nothing(
    tmp_path: Path, args: tuple[str, ...], expected: str
) -> None:
    (tmp_path / "README.md").write_text("# not a table\n")
    (tmp_path / "broken.yml").write_text("key: [unclosed\n")
    proc = engage(*args, cwd=tmp_path)
    assert one_error_line(proc).startswith(expected), proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "broken.yml"]


def test_a_contract_error_names_file_and_key_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(TELCO_CONTRACT.read_text().replace("role: target", "role: label"))
    proc = engage("contract", "check", str(bad))
    line = one_error_line(proc)
    assert line.startswith(f"engage: error: {bad}: columns.Churn.role: expected 'id', 'feature'")
    verbose = engage("--verbose", "contract", "check", str(bad))
    assert verbose.returncode == 2
    assert "Traceback" in verbose.stderr


def test_usage_errors_exit_2() -> None:
    proc = engage("generate", "--rows", "many", "--out", "x.parquet")
    assert proc.returncode == 2
    assert "Invalid value for '--rows'" in proc.stderr


def test_train_writes_the_model_and_challenges_a_champion(tmp_path: Path) -> None:
    table = tmp_path / "customers.parquet"
    proc = engage("generate", "-n", "3000", "--seed", "2", "--as-of", AS_OF, "--out", str(table))
    assert proc.returncode == 0, proc.stderr
    first = tmp_path / "first"
    proc = engage("train", str(table), "--now", FRESH, "--out-dir", str(first), "--max-rounds", "80")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Split: time-aware on snapshot_at: test on the 1 latest extract(s)" in proc.stdout
    for head in (
        "engagement_score (regression, reg:logistic)",
        "churn (binary classification",
        "ltv (regression, reg:tweedie)",
    ):
        assert head in proc.stdout
    assert "Promotion policy default 1.0.0:" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1].startswith("training: 3 head(s) trained;")
    assert (first / "model" / "manifest.json").is_file()
    assert (first / "report.html").is_file()

    proc = engage(
        "train", str(table), "--now", FRESH, "-o", str(tmp_path / "second"), "--max-rounds", "40", "--seed", "1",
        "--champion", str(first / "model"), "--head", "churn",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Champion / challenger:" in proc.stdout
    assert "churn: auc_roc challenger" in proc.stdout
    assert "champion test" in proc.stdout


def test_train_on_a_churn_only_table_and_refusals(tmp_path: Path) -> None:
    proc = engage("train", str(TELCO_TABLE), "-c", str(TELCO_CONTRACT), "-o", str(tmp_path / "telco"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (
        "note: head engagement_score skipped: contract telco_customers defines no 'engagement_score' target"
        in proc.stdout
    )
    assert "training: 1 head(s) trained;" in proc.stdout
    assert json.loads((tmp_path / "telco" / "evaluation.json").read_text())["heads"].keys() == {"churn"}

    spoiled = tmp_path / "spoiled.parquet"
    proc = engage(
        "generate", "-n", "2000", "--as-of", AS_OF, "--out", str(spoiled), "--defect", "duplicate=0.01"
    )
    assert proc.returncode == 0, proc.stderr
    proc = engage("train", str(spoiled), "--now", FRESH, "-o", str(tmp_path / "refused"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "refusing to train on" in proc.stderr
    assert "BR-001" in proc.stderr
    assert not (tmp_path / "refused").exists()

    line = one_error_line(engage("train", str(TELCO_TABLE), "-c", str(TELCO_CONTRACT), "--head", "ltv"))
    assert line == "engage: error: --head: ltv not defined by contract telco_customers (it defines: churn)"


@pytest.mark.long  # trains, then the fairness gate with mitigation, as processes (~27 s): make test-long
def test_fairness_judges_a_trained_model(tmp_path: Path) -> None:
    table, model = tmp_path / "customers.parquet", tmp_path / "train" / "model"
    assert (
        engage("generate", "-n", "6000", "--bias", "1", "--as-of", AS_OF, "--out", str(table)).returncode == 0
    )
    proc = engage(
        "train",
        str(table),
        "--now",
        FRESH,
        "-o",
        str(tmp_path / "train"),
        "--head",
        "churn",
        "--max-rounds",
        "80",
    )
    assert proc.returncode == 0, proc.stderr
    policy = tmp_path / "policy.yml"
    text = (ROOT / "policies" / "promotion_policy.yml").read_text()
    policy.write_text(
        text.replace("min_group_size: 1000", "min_group_size: 200").replace(
            "bootstrap: 200 ", "bootstrap: 20 "
        )
    )
    proc = engage(
        "fairness",
        str(table),
        "--model",
        str(model),
        "--now",
        FRESH,
        "--policy",
        str(policy),
        "-o",
        str(tmp_path / "fair"),
    )
    assert proc.returncode in (0, 1), proc.stderr
    assert "fairness: churn" in proc.stdout
    verdict = json.loads((tmp_path / "fair" / "fairness.json").read_text())["verdict"]
    assert proc.stdout.strip().splitlines()[-1] == f"fairness gate: {verdict.upper().replace('_', ' ')}"
    assert proc.returncode == (1 if verdict == "fail" else 0)
    assert (tmp_path / "fair" / "model").exists() == (verdict != "fail")

    line = one_error_line(engage("fairness", str(table), "--model", str(tmp_path / "nowhere")))
    assert line.startswith("engage: error: ")
    assert "manifest.json: missing" in line
