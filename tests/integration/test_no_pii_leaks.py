"""Canary personal data through every path, and not one log line holds it.

A customer id, a full name, an e-mail address and a phone number that exist nowhere else go through the
CLI (subject rights, review), the governance API (a real server), the servers (a real predictor with
review routing, posting to a real drift detector) and the pipeline (``engage run`` on a table holding
them). Every line those processes log, and the whole audit trail, is searched for them: none may appear.
What a command prints as its answer (``engage subject access`` exports the customer's data, by design)
is not a log line; its stderr is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import AS_OF
from tests.serving_support import free_port, run_server

ENGAGE = str(Path(sys.executable).parent / "engage")
CANARY_ID = "CANARY-7f3a9c41-ID"
CANARY_NAME = "Zebulon Quillfeather-Canary"
CANARY_EMAIL = "zebulon.canary.7f3a@example.invalid"
CANARY_PHONE = "+15550107734"
CANARIES = (CANARY_ID, CANARY_NAME, CANARY_EMAIL, CANARY_PHONE)


def assert_clean(text: str, where: str) -> None:
    """No canary, whole or in its lowercase form, in ``text``."""
    lowered = text.lower()
    found = [c for c in CANARIES if c in text or c.lower() in lowered]
    assert not found, f"{where} holds personal data {found}:\n{text[-4000:]}"


def engage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ENGAGE, "-v", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, **env},
    )


def _trail_export(url: str) -> str:
    done = subprocess.run(
        [ENGAGE, "audit", "export", "--db", url], capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout


def _queue_canary(url: str) -> str:
    from engage.governance import NewReviewItem, ReviewQueue, open_database

    db = open_database(url)
    try:
        [item] = ReviewQueue(db).add(
            [
                NewReviewItem(
                    source="sample",
                    reason="stratified_sample",
                    customer_id=CANARY_ID,
                    features={"full_name": CANARY_NAME, "email": CANARY_EMAIL, "phone": CANARY_PHONE},
                    prediction={"churn_probability": 0.61, "ltv": 120.0},
                    run_id="run-canary",
                )
            ]
        )
    finally:
        db.dispose()
    return item


def test_the_cli_logs_no_personal_data(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/governance.db"
    env = {"ENGAGE_GOVERNANCE_DATABASE_URL": url}
    item = _queue_canary(url)
    calls = [
        ("subject", "opt-out", CANARY_ID, "--actor", "dpo"),
        ("review", "list", "--status", "all"),
        ("review", "show", item),
        (
            "review", "decide", item, "--override", "churn_probability=0.9",
            "--reason", "customer called", "--reviewer", "ann",
        ),
        ("review", "decide", item, "--approve", "--reason", "again", "--reviewer", "bob"),  # 409
        ("subject", "access", CANARY_ID, "--out", str(tmp_path / "export.json")),
        ("subject", "access", CANARY_ID + "-unknown"),  # 404: the error names no id
        ("subject", "delete", CANARY_ID, "--reason", "GDPR Art. 17 request"),
        ("subject", "delete", CANARY_ID, "--reason", "twice"),  # 404 now
        ("audit", "verify"),
    ]  # fmt: skip
    codes = []
    for call in calls:
        done = engage(*call, env=env)
        codes.append(done.returncode)
        assert_clean(done.stderr, f"stderr of engage {' '.join(call[:2])}")
    assert codes == [0, 0, 0, 0, 2, 0, 2, 0, 2, 0]
    export = json.loads((tmp_path / "export.json").read_text())
    assert CANARY_EMAIL in json.dumps(export)  # the export holds the data: the canary went through
    assert_clean(_trail_export(url), "the audit trail")


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """``engage governance serve`` on loopback; (base URL, admin token, its log file)."""
    from engage.governance import Tokens, open_database

    url = f"sqlite:///{tmp_path}/api.db"
    db = open_database(url)
    _, token = Tokens(db).create("pii-test", "admin", actor="test")
    db.dispose()
    port = free_port()
    log = tmp_path / "api.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [ENGAGE, "governance", "serve", "--port", str(port), "--db", url],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        from tests.monitoring_support import wait_ok

        wait_ok(f"{base}/healthz", timeout=60)
        yield base, token, log
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_governance_api_logs_no_personal_data(api: tuple[str, str, Path], tmp_path: Path) -> None:
    base, token, log = api
    _queue_canary(f"sqlite:///{tmp_path}/api.db")
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, timeout=30) as http:
        statuses = [
            http.post(f"/v1/subjects/{CANARY_ID}/opt-out", headers=auth).status_code,
            http.get(f"/v1/subjects/{CANARY_ID}", headers=auth).status_code,
            http.get(f"/v1/subjects/{CANARY_EMAIL}", headers=auth).status_code,  # unknown: 404
            http.get(
                f"/v1/subjects/{CANARY_ID}", headers={"Authorization": f"Bearer {CANARY_NAME}"}
            ).status_code,
            http.post(
                "/v1/holds", headers=auth, json={"reason": CANARY_NAME, "bogus": CANARY_PHONE}
            ).status_code,
            http.request(
                "DELETE", f"/v1/subjects/{CANARY_ID}", headers=auth, json={"reason": "erasure request"}
            ).status_code,
        ]
    assert statuses == [200, 200, 404, 401, 422, 200]
    assert_clean(log.read_text(errors="replace"), "the governance API's log")


@pytest.mark.long  # three real servers under traffic with PII in every request: about 20 s (make test keeps the CLI and governance API log checks)
def test_the_servers_log_no_personal_data(model_folder: Path, tmp_path: Path) -> None:
    """A predictor routing to review (opted-out customer, override delivered) and posting every request
    to a real drift detector; good rows, a row with a bad value, a malformed body."""
    from engage.governance import ReviewQueue, SubjectRights, open_database
    from engage.synthetic import SyntheticConfig, generate_customers

    url = f"sqlite:///{tmp_path}/serving.db"
    db = open_database(url)
    SubjectRights(db).opt_out(CANARY_ID, actor="dpo")
    frame = generate_customers(SyntheticConfig(rows=40, seed=5, as_of=AS_OF)).frame
    rows = json.loads(frame.head(3).to_json(orient="records", date_format="iso"))
    for row in rows:
        row.update(
            {"customer_id": CANARY_ID, "full_name": CANARY_NAME, "email": CANARY_EMAIL, "phone": CANARY_PHONE}
        )
    bad = {**rows[0], "tenure_days": CANARY_EMAIL}  # a value the contract refuses, holding PII
    drift_args = ["--model_dir", str(model_folder / "model")]
    with run_server("engage_serving.drift_detector", drift_args, tmp_path / "drift.log") as drift:
        args = [
            "--model_name", "engage", "--model_dir", str(model_folder / "model"),
            "--logger_url", drift.url, "--review", "true", "--governance_db", url,
        ]  # fmt: skip
        with run_server("engage_serving.predictor", args, tmp_path / "predictor.log") as predictor:
            predict = f"{predictor.url}/v1/models/engage:predict"
            first = httpx.post(predict, json={"instances": rows}, timeout=30)
            assert first.status_code == 200, first.text
            assert first.json()["predictions"][0]["automated"] is False  # opted out: a person decides
            item = _queued(db, CANARY_ID)
            ReviewQueue(db).decide(
                item.id,
                reviewer="ann",
                decision="override",
                reason="called",
                override={"churn_probability": 0.9},
            )
            second = httpx.post(predict, json={"instances": rows}, timeout=30)
            assert second.json()["predictions"][0]["override"]["churn_probability"] == 0.9
            refused = httpx.post(predict, json={"instances": [bad]}, timeout=30)
            assert refused.status_code == 422
            malformed = httpx.post(predict, content=f'{{"instances": ["{CANARY_NAME}"'.encode(), timeout=30)
            assert malformed.status_code == 400
            v2 = httpx.post(
                f"{predictor.url}/v2/models/engage/infer",
                json={
                    "inputs": [
                        {"name": "customer_id", "shape": [1], "datatype": "BYTES", "data": [CANARY_ID]}
                    ]
                },
                timeout=30,
            )
            assert v2.status_code in (400, 422)
            predictor_log = predictor.log()
        drift_log = drift.log()
    db.dispose()
    assert predictor_log.count("\n") > 3  # it did log: the search below is over real lines
    assert_clean(predictor_log, "the predictor's log")
    assert_clean(drift_log, "the drift detector's log")


def _queued(db: Any, customer_id: str) -> Any:
    """The edge item the predictor queued for the customer (written on its background thread)."""
    import time

    from engage.governance import ReviewQueue

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = [i for i in ReviewQueue(db).list(source="edge") if i.customer_id == customer_id]
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"the predictor queued no edge item for {customer_id}")


@pytest.mark.slow
@pytest.mark.long  # a whole pipeline run: make test-long (make ci runs it after make test)
def test_the_pipeline_logs_no_personal_data(tmp_path: Path) -> None:
    """``engage run`` on a 3,000-row table whose customers include the canary (twice: a duplicate key
    the quality gate reports), with the review sample going to a database of the test."""
    import pandas as pd

    table = tmp_path / "customers.parquet"
    made = engage("generate", "--rows", "3000", "--seed", "21", "--out", str(table), env={})
    assert made.returncode == 0, made.stderr
    frame = pd.read_parquet(table)
    for i in (0, 1, 2):
        frame.loc[i, ["full_name", "email", "phone"]] = [CANARY_NAME, CANARY_EMAIL, CANARY_PHONE]
    frame.loc[0, "customer_id"] = CANARY_ID
    frame.to_parquet(table)
    url = f"sqlite:///{tmp_path}/pipeline.db"
    env = {
        "ENGAGE_RUN_DATA_URI": str(table),
        "ENGAGE_RUN_MAX_ROUNDS": "40",
        "ENGAGE_RUN_POLICY": str(Path(__file__).parents[1] / "fixtures" / "small_table_policy.yml"),
        "ENGAGE_RUN_REGISTRY": str(tmp_path / "registry"),
        "ENGAGE_RUN_OUT_DIR": str(tmp_path / "run"),
        "ENGAGE_GOVERNANCE_DATABASE_URL": url,
    }
    done = engage("run", env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "review" in done.stdout.lower()  # the review-sample step ran
    assert_clean(done.stdout + done.stderr, "the pipeline's console and step logs")
    assert_clean(_trail_export(url), "the audit trail")
    logs: list[Any] = sorted((tmp_path / "run").rglob("*.log"))
    for path in logs:
        assert_clean(path.read_text(errors="replace"), str(path))
