"""The feedback loop's library: the event store, the join, the live figures and the verdict."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from engage.contract import load_contract
from engage.errors import DataError, SchemaError
from engage.feedback import EventStore, live_report, pair_rows, read_events
from engage.policy import load_policy

START = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
OUTPUTS = ["engagement_score", "churn_probability", "ltv"]


@pytest.fixture(scope="module")
def contract() -> Any:
    return load_contract()


@pytest.fixture(scope="module")
def policy() -> Any:
    return load_policy()


def _events(n: int = 4000, *, shift: float = 0.0, seed: int = 5) -> pd.DataFrame:
    """``n`` logged predictions an hour apart in time order; ``shift`` moves the later half's churn
    probabilities up (a drifted prediction stream)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    churn = 1 / (1 + np.exp(-(2.5 * z - 1.0)))
    later = np.arange(n) >= n // 2
    churn = np.where(later, np.clip(churn + shift, 0, 1), churn)
    engagement = np.clip(0.5 + 0.15 * rng.normal(size=n), 0, 1)
    ltv = np.exp(rng.normal(5, 1, size=n))
    return pd.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(n)],
            "row": 0,
            "event_time": pd.to_datetime([START + timedelta(minutes=i) for i in range(n)], utc=True),
            "model_name": "engage",
            "model_version": "v1",
            "customer_id": [f"c{i}" for i in range(n)],
            "gender": rng.choice(["female", "male"], size=n),
            "age": rng.integers(18, 80, size=n),
            "prediction__engagement_score": engagement,
            "prediction__churn_probability": churn,
            "prediction__ltv": ltv,
        }
    )


def _outcomes(events: pd.DataFrame, *, bias: float = 0.0, seed: int = 6) -> pd.DataFrame:
    """Outcomes drawn from the predictions (a well-calibrated model); ``bias`` makes the women's churn
    disagree with the prediction in that share of their rows (the model is worse for them)."""
    rng = np.random.default_rng(seed)
    p = events["prediction__churn_probability"].to_numpy()
    churned = rng.random(len(p)) < p
    flip = (events["gender"].to_numpy() == "female") & (rng.random(len(p)) < bias)
    churned = np.where(flip, p < 0.5, churned)
    engagement = events["prediction__engagement_score"].to_numpy() + rng.normal(0, 0.03, len(p))
    ltv = events["prediction__ltv"].to_numpy() * np.exp(rng.normal(0, 0.2, len(p)))
    return pd.DataFrame(
        {
            "customer_id": events["customer_id"],
            "observed_at": events["event_time"] + pd.Timedelta(days=30),
            "churned": churned,
            "engagement_score": engagement,
            "ltv": ltv,
        }
    )


# ---- the store ------------------------------------------------------------------------------------------


def _pair(i: int) -> tuple[dict[str, Any], dict[str, Any]]:
    request = {"instances": [{"customer_id": f"c{i}", "gender": "male", "age": 30, "tenure_days": 100 + i}]}
    response = {
        "predictions": [{"churn_probability": 0.25, "ltv": 80.0}],
        "model_name": "m",
        "model_version": "v7",
    }
    return request, response


def test_the_store_writes_each_pair_once_whole_and_reads_it_back(tmp_path: Path) -> None:
    store = EventStore(
        str(tmp_path / "events"),
        model_name="m",
        columns=["customer_id", "gender", "age", "tenure_days"],
        inputs=["tenure_days"],
        outputs=["churn_probability", "ltv"],
        id_column="customer_id",
        flush_rows=3,
        flush_seconds=3600,
    )
    for i in range(4):
        request, response = _pair(i)
        assert store.add("response", f"id{i}", response) == 0  # the halves pair by ce-id, in any order
        assert store.add("request", f"id{i}", request) == 1
    # a V2 request (one tensor per column) and its V2 answer
    v2_request = {"inputs": [{"name": "customer_id", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]},
                             {"name": "tenure_days", "shape": [2], "datatype": "INT64", "data": [1, 2]}]}  # fmt: skip
    v2_answer = {"model_name": "m", "model_version": "v7", "outputs": [
        {"name": "churn_probability", "shape": [2], "datatype": "FP64", "data": [0.1, 0.9]}]}  # fmt: skip
    assert store.add("request", "v2", v2_request) == 0
    assert store.add("response", "v2", v2_answer) == 2
    store.close()
    files = sorted((tmp_path / "events").rglob("*"))
    parquet = [f for f in files if f.is_file()]
    assert all(f.parent.name.startswith("date=") and f.suffix == ".parquet" for f in parquet)
    assert len(parquet) == 2
    assert store.rows_written == 6
    events = read_events(str(tmp_path / "events"))
    assert events["customer_id"].tolist() == ["c0", "c1", "c2", "c3", "a", "b"]
    assert events["model_version"].unique().tolist() == ["v7"]
    assert events["prediction__churn_probability"].tolist() == [0.25] * 4 + [0.1, 0.9]
    assert events["prediction__ltv"].isna().tolist() == [False] * 4 + [True, True]
    cut = events["event_time"].iloc[4].to_pydatetime()
    assert read_events(str(tmp_path / "events"), since=cut)["customer_id"].tolist() == ["a", "b"]
    with pytest.raises(DataError, match="no event files between"):  # day folders outside the range: unread
        read_events(str(tmp_path / "events"), since=datetime.now(UTC) + timedelta(days=2))


def test_a_store_that_cannot_write_never_fails_ingestion(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    seen: list[BaseException] = []
    store = EventStore(
        str(blocker / "events"),
        model_name="m",
        columns=["customer_id"],
        inputs=[],
        outputs=["churn_probability"],
        id_column="customer_id",
        flush_rows=1,
        on_failure=seen.append,
    )
    request, response = _pair(0)
    store.add("request", "x", request)
    assert store.add("response", "x", response) == 1  # the rows were taken; their write failed
    store.add("request", "y", {"instances": "not rows"})
    store.add("response", "y", response)  # a pair that does not fit: counted, not raised
    store.close()
    assert len(seen) == 2
    assert store.files_written == 0


def test_reading_an_empty_store_says_so(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no event files"):
        read_events(str(tmp_path))


def test_pair_rows_keeps_only_the_named_columns() -> None:
    request, response = _pair(3)
    request["instances"][0]["email"] = "a@b.c"  # never stored: not an id, protected attribute or input
    rows = pair_rows("e", request, response, columns=["customer_id", "tenure_days"], inputs=["tenure_days"],
                     outputs=["churn_probability"], id_column="customer_id", model_name="m")  # fmt: skip
    assert "email" not in rows
    assert rows["customer_id"] == ["c3"]
    assert rows["tenure_days"] == [103]


# ---- the join and the figures ---------------------------------------------------------------------------


def test_times_of_another_resolution_join_alike(contract: Any, policy: Any) -> None:
    """Outcomes written by another tool (microsecond times) join as nanosecond ones do: found by the
    feedback-loop benchmark, where pandas' merge_asof refused the mix with a MergeError."""
    events = _events(600)
    outcomes = _outcomes(events)
    coarse = outcomes.assign(observed_at=outcomes["observed_at"].astype("datetime64[us, UTC]"))
    assert (
        live_report(events, coarse, contract, policy).coverage
        == live_report(events, outcomes, contract, policy).coverage
        == 1.0
    )


def test_an_outcome_joins_the_latest_prediction_before_it(contract: Any, policy: Any) -> None:
    events = _events(120)
    events.loc[1, "customer_id"] = "c0"  # c0 scored twice: at START and START + 1 min
    events.loc[1, "prediction__churn_probability"] = 0.99
    outcomes = pd.DataFrame(
        {
            "customer_id": ["c0", "c2", "c3"],
            "observed_at": [START + timedelta(seconds=90), START, START + timedelta(days=1)],
            "churned": [True, False, True],
        }
    )
    report = live_report(events, outcomes, contract, policy)
    churn = report.heads["churn"]
    # c0 takes its second prediction (0.99, before 90 s); c2's outcome precedes its prediction: no join
    assert churn.labelled == 2
    assert report.labelled == 2
    assert churn.business["predicted_mean"] == pytest.approx(
        (0.99 + events.loc[3, "prediction__churn_probability"]) / 2
    )
    assert report.coverage == pytest.approx(2 / 120)


def test_live_figures_pass_on_a_calibrated_unbiased_stream(contract: Any, policy: Any) -> None:
    events = _events()
    report = live_report(events, _outcomes(events), contract, policy)
    assert report.verdict == "pass", report.reasons
    assert report.coverage == 1.0
    churn = report.heads["churn"]
    assert churn.metrics["auc_roc"] > 0.8
    assert {r.section for r in report.rules} == {"live_accuracy", "live_fairness", "prediction_drift"}
    assert churn.business["realised_mean"] == pytest.approx(churn.business["predicted_mean"], abs=0.03)
    assert "gender" in churn.fairness
    assert "equalized_odds_difference" in churn.fairness["gender"]
    # the label-free estimate (CBPE) beside the realised figure: calibrated stream, so it covers it
    beside = churn.estimated["versus_realised"]["auc_roc"]
    assert beside["realised"] == pytest.approx(churn.metrics["auc_roc"])
    assert abs(beside["error"]) < 0.03


def test_a_bias_knob_on_the_outcomes_flips_the_live_fairness_verdict(contract: Any, policy: Any) -> None:
    events = _events()
    report = live_report(events, _outcomes(events, bias=0.3), contract, policy)
    assert report.verdict == "fail"
    failed = [r for r in report.failures if r.section == "live_fairness"]
    assert any(r.rule.startswith("gender: equalized_odds_difference") for r in failed), report.reasons
    assert "live_fairness" in report.crossed


def test_a_drifted_prediction_stream_flips_the_drift_verdict(contract: Any, policy: Any) -> None:
    events = _events(shift=0.25)
    report = live_report(events, _outcomes(events.iloc[:0]), contract, policy)
    assert report.verdict == "fail"
    assert report.crossed == ["prediction_drift"]
    assert report.heads["churn"].drift is not None
    assert report.heads["churn"].drift.psi > 0.2
    steady = _events()
    reference = {"churn_probability": steady["prediction__churn_probability"].to_numpy()}
    against = live_report(events, _outcomes(events.iloc[:0]), contract, policy, reference=reference)
    assert "training reference" in against.heads["churn"].drift.reference  # type: ignore[union-attr]
    assert "prediction_drift" in against.crossed


def test_no_outcomes_yet_is_a_verdict_not_a_crash(contract: Any, policy: Any) -> None:
    events = _events(400)
    report = live_report(events, _outcomes(events).iloc[:0], contract, policy)
    assert report.verdict == "no_labels"
    assert report.coverage == 0.0
    assert report.reasons[0].startswith("no labels yet")
    assert 0.5 < report.heads["churn"].estimated["metrics"]["auc_roc"] < 1.0  # before labels: the estimate
    assert report.to_json()["coverage"] == 0.0
    assert "no_labels" in report.markdown()


def test_tables_without_the_join_columns_are_refused(contract: Any, policy: Any) -> None:
    events = _events(60)
    with pytest.raises(SchemaError, match="observed_at"):
        live_report(events, pd.DataFrame({"customer_id": ["c1"]}), contract, policy)
    with pytest.raises(SchemaError, match="not an event store table"):
        live_report(events.drop(columns="event_id"), _outcomes(events), contract, policy)


# ---- the retraining trigger -----------------------------------------------------------------------------


def test_a_crossed_policy_starts_a_run_and_says_why_on_the_audit_trail(
    contract: Any, policy: Any, tmp_path: Path
) -> None:
    from engage.governance import AuditTrail, open_database
    from engage_components._feedback import RETRAIN_EVENT, retrain_if_needed

    trail = AuditTrail(open_database(f"sqlite:///{tmp_path}/governance.db"))
    started: list[dict[str, Any]] = []

    def runner(params: dict[str, Any]) -> tuple[str, str]:
        started.append(params)
        return f"run-{len(started)}", "SUCCEEDED"

    steady = _events()
    calm = live_report(steady, _outcomes(steady), contract, policy)
    assert not retrain_if_needed(calm, {"rows": 500}, runner=runner, trail=trail, actor="t").triggered
    assert started == []
    assert trail.records(event=RETRAIN_EVENT) == []

    biased = live_report(steady, _outcomes(steady, bias=0.3), contract, policy)
    decision = retrain_if_needed(biased, {"rows": 500}, runner=runner, trail=trail, actor="t")
    assert decision.triggered
    assert decision.run_id == "run-1"
    assert started == [{"rows": 500}]
    assert "live_fairness" in decision.sections
    (record,) = trail.records(event=RETRAIN_EVENT)
    assert record.seq == decision.audit_seq
    assert record.payload is not None
    assert record.payload["run_id"] == "run-1"
    assert any(r["rule"].startswith("gender: equalized_odds_difference") for r in record.payload["rules"])
    assert trail.verify().ok
