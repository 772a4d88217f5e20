"""``engage run`` (``make run``) on a table Engage did not generate, by its contract alone: the shipped
example contract (``contracts/examples/telco_contract.yml``, one ``churn`` head, a CSV with other column
names) on a 7,000-row table in the public Telco layout. No code or policy change."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, TELCO_CONTRACT

ENGAGE = str(Path(sys.executable).parent / "engage")


def _run(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "ENGAGE_RUN_CONTRACT": str(TELCO_CONTRACT),
        "ENGAGE_RUN_REGISTRY": str(tmp_path / "registry"),
        "ENGAGE_RUN_OUT_DIR": str(tmp_path / "run"),
        **env,
    }
    return subprocess.run(
        [ENGAGE, "run"], capture_output=True, text=True, env=environment, timeout=900, check=False
    )


def _output(tmp_path: Path, task: str, output: str) -> Path:
    found = sorted((tmp_path / "run").glob(f"*/**/{task}/{output}"))
    assert found, f"no {task}/{output} under {tmp_path / 'run'}"
    return found[-1]


@pytest.mark.slow
def test_a_csv_table_with_one_head_runs_through_every_step(tmp_path: Path) -> None:
    sys.path.insert(0, str(FIXTURES))
    import make_telco_fixture

    table = make_telco_fixture.write(tmp_path / "telco_customers.csv", n=7_000)
    done = _run(tmp_path, ENGAGE_RUN_DATA_URI=str(table))
    text = done.stdout + done.stderr
    assert "Quality gate: PASS" in text, text
    # exactly the contract's one head was trained, evaluated and judged
    training = json.loads((_output(tmp_path, "evaluate", "training") / "evaluation.json").read_text())
    assert set(training["heads"]) == {"churn"}
    fairness = json.loads((_output(tmp_path, "fairness", "fairness") / "fairness.json").read_text())
    assert set(fairness["heads"]) == {"churn"}
    churn = fairness["heads"]["churn"]
    # groups of a 1,400-row test split are judged (10 % of it, not the 1,000 rows a 100,000-row table
    # gives), so the real disparity on the senior-citizen groups is measured and named, not 'nan'
    unmitigated = next(c for c in churn["candidates"] if c["name"] == "unmitigated")
    parity = {
        r["rule"]: r["observed"] for r in unmitigated["rules"] if "demographic_parity_ratio" in r["rule"]
    }
    assert set(parity) == {
        f"{a}: demographic_parity_ratio >= 0.8" for a in ("gender", "SeniorCitizen", "gender&SeniorCitizen")
    }
    assert all(isinstance(v, float) and 0 < v <= 1 for v in parity.values()), parity
    failing = [rule for rule, v in parity.items() if v < 0.8]
    for rule in failing:  # the verdict's reason is the rule that really fails
        assert rule in churn["reason"], churn["reason"]
    assert ("fails" in churn["reason"]) == bool(failing)
    assert f"Fairness gate: {churn['verdict'].upper().replace('_', ' ')}" in text


@pytest.mark.slow
@pytest.mark.long  # a pipeline run up to its failing step: make test-long (make ci)
def test_a_failed_step_names_its_cause_on_the_console(tmp_path: Path) -> None:
    done = _run(
        tmp_path, ENGAGE_RUN_DATA_URI=str(FIXTURES / "telco_customers.csv"), ENGAGE_RUN_HEADS='["ltv"]'
    )
    assert done.returncode == 1
    text = done.stdout + done.stderr
    assert "ConfigError: --head: ltv not defined by contract telco_customers (it defines: churn)" in text, (
        text
    )
