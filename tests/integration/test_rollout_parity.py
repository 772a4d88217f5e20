"""The rollout's live parity query, evaluated by Prometheus' own engine (``promtool test rules``) on
counters as the predictor exports them: rates by group, the minimum of predictions, ``other`` left out, a
group without a positive series at rate 0, one revision's series only, two groups needed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from engage.rollout import parity_query
from tests.monitoring_support import binary

pytestmark = pytest.mark.integration

#: per minute, by (revision, head, attribute, group, decision)
RATES = {
    ("canary", "churn_probability", "gender", "female", "positive"): 6,
    ("canary", "churn_probability", "gender", "female", "negative"): 6,  # rate 0.5
    ("canary", "churn_probability", "gender", "male", "positive"): 3,
    ("canary", "churn_probability", "gender", "male", "negative"): 9,  # rate 0.25
    ("canary", "churn_probability", "gender", "non_binary", "positive"): 1,  # 5 in the window: too few
    ("canary", "churn_probability", "gender", "other", "negative"): 100,  # outside the contract: left out
    ("canary", "churn_probability", "age", "18-24", "negative"): 10,  # no positive series: rate 0
    ("canary", "churn_probability", "age", "25-34", "positive"): 5,
    ("canary", "churn_probability", "age", "25-34", "negative"): 5,
    ("canary", "engagement", "gender", "female", "positive"): 12,  # one group only: no ratio
    ("stable", "churn_probability", "gender", "female", "positive"): 12,  # another revision: not mixed in
}


def test_the_parity_query_on_prometheus_engine(tmp_path: Path) -> None:
    promtool = binary("promtool", package="prometheus")
    series = [
        {
            "series": (
                f'engage_prediction_group_total{{job="{job}",model="engage",head="{head}",attribute="{attr}",'
                f'group="{group}",decision="{decision}"}}'
            ),
            "values": f"0+{per_minute}x10",
        }
        for (job, head, attr, group, decision), per_minute in RATES.items()
    ]
    expected = [
        {"labels": '{head="churn_probability",attribute="gender"}', "value": 0.5},
        {"labels": '{head="churn_probability",attribute="age"}', "value": 0},
    ]
    case = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "promql_expr_test": [
                    {
                        "expr": parity_query('job="canary"', "5m", 20),
                        "eval_time": "10m",
                        "exp_samples": expected,
                    }
                ],
            }
        ],
    }
    (tmp_path / "parity_test.yml").write_text(yaml.safe_dump(case))
    done = subprocess.run(
        [promtool, "test", "rules", "parity_test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout
