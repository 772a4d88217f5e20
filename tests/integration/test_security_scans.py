"""`scripts/security.py scan` for real on a small git work tree with the project's bandit config and
detect-secrets settings: a clean tree with an audited false positive passes; a planted HIGH bandit finding
and a planted AWS key each fail it, named by file and line, and the key's value is never printed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "security.py"
# planted values are assembled here, so that this file itself holds no secret-shaped literal
PLANTED_KEYWORD_LINE = "pass" + 'word = "hunter2"\n'
AWS_DOCS_EXAMPLE_KEY = "AKIA" + "IOSFODNN7EXAMPLE"  # AWS's documented example access key id


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


def scan(root: Path) -> tuple[int, dict[str, Any], str]:
    out = root / "security.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "scan", "--root", str(root), "--no-pip-audit", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.returncode, json.loads(out.read_text()), proc.stdout + proc.stderr


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A work tree shaped like the project's (the three bandit targets), with .bandit, a secrets baseline
    made by `detect-secrets scan` from the project's settings, and one false positive audited in it."""
    root = tmp_path / "tree"
    for target in ("src/engage", "serving/engage_serving", "components"):
        (root / target).mkdir(parents=True)
    shutil.copy(ROOT / ".bandit", root / ".bandit")
    (root / "src" / "engage" / "ok.py").write_text("def add(a: int, b: int) -> int:\n    return a + b\n")
    (root / "tests").mkdir()
    (root / "tests" / "test_chart.py").write_text(PLANTED_KEYWORD_LINE)
    git(root, "init", "-q")
    git(root, "add", ".")
    baseline = subprocess.run(
        [str(Path(sys.executable).parent / "detect-secrets"), "scan"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(baseline.stdout)
    assert list(data["results"]) == ["tests/test_chart.py"]
    data["results"]["tests/test_chart.py"][0]["is_secret"] = False  # audited: not a secret
    (root / ".secrets.baseline").write_text(json.dumps(data, indent=2) + "\n")
    git(root, "add", ".secrets.baseline")
    return root


def test_a_clean_tree_with_an_audited_false_positive_passes(tree: Path) -> None:
    code, result, output = scan(tree)
    assert code == 0, output
    assert result["passed"] is True
    assert result["bandit"]["status"] == "passed"
    assert result["bandit"]["counts"] == {"HIGH": 0, "MEDIUM": 0, "LOW": 0}
    assert result["secrets"]["status"] == "passed"
    assert result["secrets"]["audited_false_positives"] == 1
    assert result["pip_audit"] == {"status": "skipped", "reason": "--no-pip-audit"}


def test_a_high_bandit_finding_and_a_new_secret_fail_the_scan(tree: Path) -> None:
    (tree / "serving" / "engage_serving" / "run.py").write_text(
        "import subprocess\n\n\ndef run(command: str) -> int:\n    return subprocess.call(command, shell=True)\n"
    )
    (tree / "deploy.env").write_text(f"AWS_ACCESS_KEY_ID={AWS_DOCS_EXAMPLE_KEY}\n")
    git(tree, "add", ".")
    code, result, output = scan(tree)
    assert code == 1
    assert result["passed"] is False
    bandit = result["bandit"]
    assert (bandit["status"], bandit["counts"]["HIGH"]) == ("failed", 1)
    (high,) = (f for f in bandit["findings"] if f["severity"] == "HIGH")
    assert (high["test_id"], high["file"], high["line"]) == ("B602", "serving/engage_serving/run.py", 5)
    secrets = result["secrets"]
    assert secrets["status"] == "failed"
    assert secrets["new"] == [{"file": "deploy.env", "line": 1, "type": "AWS Access Key"}]
    assert "new: deploy.env:1 AWS Access Key" in output
    assert AWS_DOCS_EXAMPLE_KEY not in output
    assert AWS_DOCS_EXAMPLE_KEY not in json.dumps(result)


def test_an_unaudited_baseline_entry_fails_the_scan(tree: Path) -> None:
    baseline = json.loads((tree / ".secrets.baseline").read_text())
    del baseline["results"]["tests/test_chart.py"][0]["is_secret"]
    (tree / ".secrets.baseline").write_text(json.dumps(baseline, indent=2) + "\n")
    code, result, _ = scan(tree)
    assert code == 1
    assert result["secrets"]["unaudited"] == [
        {"file": "tests/test_chart.py", "line": 1, "type": "Secret Keyword"}
    ]
    assert result["bandit"]["status"] == "passed"
