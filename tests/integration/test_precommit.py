"""The pre-commit hook, run by the real pre-commit, refuses a prohibited attribute among the features."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, TELCO_CONTRACT


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def test_hook_refuses_a_prohibited_feature(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "contracts").mkdir(parents=True)
    shutil.copy(ROOT / ".pre-commit-config.yaml", repo)
    good = repo / "contracts" / "good.yml"
    good.write_text(TELCO_CONTRACT.read_text())
    bad = repo / "contracts" / "bad.yml"
    bad.write_text(
        TELCO_CONTRACT.read_text().replace(
            "  Churn: {type: boolean",
            "  ReligionCode: {type: category, role: feature, description: x}\n  Churn: {type: boolean",
        )
    )
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PRE_COMMIT_HOME": str(tmp_path / "cache"),
    }
    pre_commit = str(Path(sys.executable).parent / "pre-commit")

    def run(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [pre_commit, "run", "engage-contract", "--files", str(path.relative_to(repo))],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    ok = run(good)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    refused = run(bad)
    assert refused.returncode == 1, refused.stdout
    assert "columns.ReligionCode: feature is the prohibited attribute 'religion' (ML-005)" in refused.stdout
