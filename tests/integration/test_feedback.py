"""The feedback loop for real: a predictor posting its traffic (``--logger_url``) to a drift detector with
``--event_store``, then ``engage feedback`` on the store and outcomes, pushing to a real Pushgateway."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pandas as pd

from engage.errors import DataError
from engage.feedback import read_events
from engage.tables import write_table
from tests.conftest import AS_OF
from tests.monitoring_support import pushgateway
from tests.serving_support import run_server

CUSTOMERS = 600
BATCH = 100
LABELLED = 450  # outcomes have come for these customers only


def _wait_for_rows(uri: str, rows: int, timeout: float = 30.0) -> pd.DataFrame:
    deadline = time.monotonic() + timeout
    while True:
        try:
            events = read_events(uri)
            if len(events) >= rows:
                return events
        except DataError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"the event store did not reach {rows} rows in {timeout:.0f} s")
        time.sleep(0.3)


def test_logged_traffic_joined_with_outcomes_is_reported_and_pushed(
    model_folder: Path, tmp_path: Path
) -> None:
    from engage.synthetic import SyntheticConfig, generate_customers

    store = tmp_path / "events"
    frame = generate_customers(SyntheticConfig(rows=CUSTOMERS, seed=21, snapshots=1, as_of=AS_OF)).frame
    targets = ["churned", "engagement_score", "ltv"]
    rows = json.loads(frame.drop(columns=targets).to_json(orient="records", date_format="iso"))
    drift_args = [
        "--model_dir", str(model_folder / "model"),
        "--event_store", str(store), "--event_store_flush_seconds", "1",
    ]  # fmt: skip
    answers: list[dict[str, object]] = []
    with run_server("engage_serving.drift_detector", drift_args, tmp_path / "drift.log") as drift:
        args = [
            "--model_name",
            "engage",
            "--model_dir",
            str(model_folder / "model"),
            "--logger_url",
            drift.url,
        ]
        with run_server("engage_serving.predictor", args, tmp_path / "predictor.log") as predictor:
            for i in range(0, CUSTOMERS, BATCH):
                answer = httpx.post(
                    f"{predictor.url}/v1/models/engage:predict",
                    json={"instances": rows[i : i + BATCH]},
                    timeout=30,
                )
                assert answer.status_code == 200, answer.text
                answers.append(answer.json())
            events = _wait_for_rows(str(store), CUSTOMERS)
            # the catalogue's event-store counter is exported from the start, and nothing failed
            scraped = httpx.get(f"{drift.url}/metrics", timeout=10).text
        assert "event store" in drift.log()
        assert re.search(r'^engage_event_store_failures_total\{model="[^"]+"\} 0\.0$', scraped, re.M), scraped

    # every scored customer once, with its id, protected attributes, inputs and the predictor's answer
    assert len(events) == CUSTOMERS
    assert events["event_id"].nunique() == CUSTOMERS // BATCH
    assert events["customer_id"].tolist() == frame["customer_id"].astype(str).tolist()
    assert events["gender"].tolist() == [r["gender"] for r in rows]
    assert events["tenure_days"].tolist() == frame["tenure_days"].astype(int).tolist()
    assert "email" not in events.columns  # personal data the contract marks pii is never stored
    answered = [p["churn_probability"] for a in answers for p in a["predictions"]]  # type: ignore[attr-defined]
    assert events["prediction__churn_probability"].tolist() == answered
    assert set(events["model_version"]) == {answers[0]["model_version"]}
    assert not [p for p in store.rglob("*") if p.is_file() and p.suffix != ".parquet"]  # no temp files left

    # the model's predictions on its drift reference rows: the training side of prediction drift
    from engage.training import load_bundle

    reference = pd.read_parquet(model_folder / "drift_reference" / "reference.parquet")
    write_table(load_bundle(model_folder / "model").predict(reference), tmp_path / "reference.parquet")
    observed = datetime.now(UTC) + timedelta(days=1)
    outcomes = frame[["customer_id", *targets]].head(LABELLED).assign(observed_at=observed)
    write_table(outcomes, tmp_path / "outcomes.parquet")
    with pushgateway() as gateway:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "engage",
                "feedback",
                "--events",
                str(store),
                "--outcomes",
                str(tmp_path / "outcomes.parquet"),
                "--out",
                str(tmp_path / "report"),
                "--pushgateway",
                gateway,
                "--reference",
                str(tmp_path / "reference.parquet"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        pushed = httpx.get(f"http://{gateway}/metrics", timeout=10).text
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert done.returncode == (1 if report["verdict"] == "fail" else 0), done.stderr
    assert report["predictions"] == CUSTOMERS
    assert report["labelled"] == LABELLED
    assert report["coverage"] == LABELLED / CUSTOMERS
    churn = report["heads"]["churn"]
    assert churn["labelled"] == LABELLED
    assert churn["business"]["realised_mean"] == outcomes["churned"].mean()
    assert {r["section"] for r in report["rules"]} >= {"live_accuracy", "live_fairness", "prediction_drift"}
    assert (tmp_path / "report" / "report.md").read_text().startswith("# Live report: engage")
    assert _sample(pushed, "engage_live_coverage") == LABELLED / CUSTOMERS
    assert (
        _sample(pushed, "engage_live_metric", head="churn", metric="auc_roc") == churn["metrics"]["auc_roc"]
    )
    psi = _sample(pushed, "engage_live_prediction_psi", head="churn")
    assert psi == churn["prediction_drift"]["psi"]
    assert "training reference" in churn["prediction_drift"]["reference"]
    assert _sample(pushed, "engage_live_verdict_passed") == (0.0 if report["verdict"] == "fail" else 1.0)


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of the one series ``name`` with ``labels`` the Pushgateway holds for engage feedback."""
    from prometheus_client.parser import text_string_to_metric_families

    found = [
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
        and s.labels.get("job") == "engage_feedback"
        and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) == 1, (name, labels, found)
    return float(found[0])
