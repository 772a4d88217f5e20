"""Human review on SQLite and on a real PostgreSQL server: the queue (bulk add, dedupe, decisions, the
optimistic lock under a real race, overrides delivered once), the ``engage review`` command, and the
predictor routing edge cases to the queue as a real server process on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serving_support import Server, free_port, run_server

ENGAGE = str(Path(sys.executable).parent / "engage")
MODULE = "engage_serving.predictor"
PREDICT = "/v1/models/engage:predict"
INFER = "/v2/models/engage/infer"
CANARY = "CANARY-7f3a9c-customer"


def _edge(customer: str, reason: str = "near_threshold", **kw: Any) -> Any:
    from engage.governance import NewReviewItem

    return NewReviewItem("edge", reason, customer, prediction={"churn_probability": 0.52, "ltv": 120.0}, **kw)


def _sample(customer: str, run_id: str = "run-1") -> Any:
    from engage.governance import NewReviewItem

    return NewReviewItem(
        "sample",
        "stratified_sample",
        customer,
        features={"plan": "basic", "tenure_days": 40},
        prediction={"churn_probability": 0.3, "engagement_score": 0.6, "ltv": 99.5},
        run_id=run_id,
        model_version="sha256:abc",
        stratum="basic|low",
    )


def _opt_out(db: Any, *customers: str) -> None:
    from engage.governance._tables import OptOut

    with db.session() as s:
        for c in customers:
            s.add(OptOut(customer_id=c, subject_key=db.subject_key(c), at=datetime.now(UTC), actor="test"))


def _raises(status: int, call: Callable[[], Any]) -> str:
    from engage.errors import GovernanceError

    with pytest.raises(GovernanceError) as info:
        call()
    assert info.value.http_status == status, info.value
    return info.value.message


# --- the queue on both databases ----------------------------------------------------------------------


def test_add_is_bulk_dedupes_pending_edge_items_and_audits_one_record_without_ids(governance_db: Any) -> None:
    from engage.governance import AuditTrail, ReviewQueue

    queue, trail = ReviewQueue(governance_db), AuditTrail(governance_db)
    ids = queue.add([_sample(f"{CANARY}-{i}") for i in range(400)])
    assert len(ids) == 400
    assert len(set(ids)) == 400
    first = queue.add([_edge("C1"), _edge("C1"), _edge("C1", "opted_out"), _edge("C2")])
    assert len(first) == 3  # the second C1 near_threshold in the same batch is a duplicate
    again = queue.add([_edge("C1"), _edge("C2", "outlier")])
    assert len(again) == 1  # C1 is pending for near_threshold already; C2 has no pending outlier
    records = trail.records(event="review.enqueued")
    assert [r.subject for r in records] == ["run:run-1", "review:edge", "review:edge"]
    assert records[0].payload == {
        "added": 400,
        "skipped_duplicates": 0,
        "by_source_reason": {"sample": {"stratified_sample": 400}},
        "skipped_by_source_reason": {},
        "runs": ["run-1"],
        "model_versions": ["sha256:abc"],
    }
    assert records[2].payload is not None
    assert records[2].payload["skipped_by_source_reason"] == {"edge": {"near_threshold": 1}}
    assert not any(CANARY in json.dumps(r.to_json()) for r in trail.records())
    item = queue.get(ids[0])
    assert item.customer_id is not None
    assert item.customer_id.startswith(CANARY)
    assert item.created_at.tzinfo is not None
    assert item.status == "pending"
    assert item.lock_version == 1
    assert item.features == {"plan": "basic", "tenure_days": 40}
    assert queue.add([]) == []
    assert trail.verify().ok


def test_list_filters_by_status_source_and_run_and_pages(governance_db: Any) -> None:
    from engage.governance import ReviewQueue

    queue = ReviewQueue(governance_db)
    queue.add([_sample(f"S{i}", run_id="run-a") for i in range(5)])
    queue.add([_sample(f"T{i}", run_id="run-b") for i in range(3)])
    queue.add([_edge("E1")])
    assert len(queue.list()) == 9
    assert len(queue.list(run_id="run-a")) == 5
    assert [i.customer_id for i in queue.list(source="edge")] == ["E1"]
    page = queue.list(limit=4) + queue.list(limit=4, offset=4) + queue.list(limit=4, offset=8)
    assert len({i.id for i in page}) == 9
    decided = queue.list(run_id="run-b")[0]
    queue.decide(decided.id, reviewer="ann", decision="approve", reason="looks right")
    assert [i.id for i in queue.list(status="approved")] == [decided.id]
    assert len(queue.list(status=None)) == 9
    assert len(queue.list()) == 8
    _raises(400, lambda: queue.list(status="done"))
    _raises(400, lambda: queue.list(limit=0))


def test_decisions_are_audited_in_their_transaction_and_made_once(governance_db: Any) -> None:
    from engage.governance import AuditTrail, ReviewQueue

    queue, trail = ReviewQueue(governance_db), AuditTrail(governance_db)
    a, b = queue.add([_sample(CANARY), _sample("C-2")])
    approved = queue.decide(a, reviewer="ann", decision="approve", reason="agreed")
    assert (approved.status, approved.lock_version, approved.decided_by) == ("approved", 2, "ann")
    overridden = queue.decide(
        b, reviewer="bob", decision="override", reason="called us", override={"churn_probability": 0.9}
    )
    assert overridden.status == "overridden"
    assert overridden.override == {"churn_probability": 0.9}
    assert overridden.decided_at is not None
    assert overridden.decided_at.tzinfo is not None
    assert "already" in _raises(409, lambda: queue.decide(a, reviewer="cy", decision="approve", reason="x"))
    assert queue.get(a).decided_by == "ann"
    records = {r.event: r for r in trail.records(event="review.")}
    record = records["review.override"]
    assert record.subject == f"review:{b}"
    assert record.payload is not None
    assert record.payload["override"] == {"churn_probability": 0.9}
    assert record.payload["reviewer"] == "bob"
    assert record.payload["reason"] == "called us"
    assert record.payload["model_version"] == "sha256:abc"
    assert record.payload["run_id"] == "run-1"
    assert records["review.approve"].subject == f"review:{a}"
    assert not any(CANARY in json.dumps(r.to_json()) for r in trail.records())
    # the trail keeps the customer's keyed hash: a data-subject request finds the decision
    mine = trail.records(subject_key=governance_db.subject_key(CANARY))
    assert [r.event for r in mine] == ["review.approve"]
    assert trail.verify().ok


def test_unknown_items_are_404_and_bad_decisions_400_with_nothing_written(governance_db: Any) -> None:
    from engage.errors import GovernanceError
    from engage.governance import AuditTrail, ReviewQueue

    queue, trail = ReviewQueue(governance_db), AuditTrail(governance_db)
    (item,) = queue.add([_sample("C-1")])
    head = trail.head()
    _raises(404, lambda: queue.get("no-such-item"))
    _raises(404, lambda: queue.decide("no-such-item", reviewer="a", decision="approve", reason="r"))
    bad: list[dict[str, Any] | None] = [None, {}, {"churn_probability": "high"}, {"ltv": float("nan")}]
    for override in bad:
        with pytest.raises(GovernanceError) as info:
            queue.decide(item, reviewer="a", decision="override", reason="r", override=override)
        assert info.value.http_status == 400
    assert "no output 'churn'" in _raises(
        400, lambda: queue.decide(item, reviewer="a", decision="override", reason="r", override={"churn": 1})
    )
    _raises(400, lambda: queue.decide(item, reviewer="a", decision="approve", reason="  "))
    _raises(400, lambda: queue.decide(item, reviewer="", decision="approve", reason="r"))
    _raises(400, lambda: queue.decide(item, reviewer="a", decision="maybe", reason="r"))  # type: ignore[arg-type]
    assert "version 1, not 7" in _raises(
        409, lambda: queue.decide(item, reviewer="a", decision="approve", reason="r", expected_version=7)
    )
    assert trail.head() == head
    assert queue.get(item).status == "pending"
    done = queue.decide(item, reviewer="a", decision="approve", reason="r", expected_version=1)
    assert done.lock_version == 2


def _racer(queue: Any, item: str, barrier: threading.Barrier, outcomes: list[Any]) -> Callable[[str], None]:
    """A reviewer overriding ``item`` the moment the other one does; what became of it in ``outcomes``."""
    from engage.errors import GovernanceError

    def decide(reviewer: str) -> None:
        barrier.wait()
        try:
            outcomes.append(
                queue.decide(
                    item,
                    reviewer=reviewer,
                    decision="override",
                    reason=f"{reviewer} says so",
                    override={"ltv": 1.0 if reviewer == "ann" else 2.0},
                    expected_version=1,
                )
            )
        except GovernanceError as e:
            outcomes.append(e)

    return decide


def test_two_reviewers_deciding_at_once_exactly_one_wins(governance_db: Any) -> None:
    from engage.errors import GovernanceError
    from engage.governance import AuditTrail, ReviewQueue

    queue = ReviewQueue(governance_db)
    items = queue.add([_sample(f"R{i}") for i in range(6)])
    for item in items:
        outcomes: list[Any] = []
        decide = _racer(queue, item, threading.Barrier(2), outcomes)
        threads = [threading.Thread(target=decide, args=(r,)) for r in ("ann", "bob")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        wins = [o for o in outcomes if not isinstance(o, GovernanceError)]
        losses = [o for o in outcomes if isinstance(o, GovernanceError)]
        assert len(wins) == 1, outcomes
        assert len(losses) == 1, outcomes
        assert losses[0].http_status == 409, losses[0]
        stored = queue.get(item)
        assert stored.decided_by == wins[0].decided_by
        assert stored.lock_version == 2
    trail = AuditTrail(governance_db)
    assert len(trail.records(event="review.override")) == len(items)
    assert trail.verify().ok


def test_overrides_are_the_newest_per_customer_and_delivered_once(governance_db: Any) -> None:
    from engage.governance import AuditTrail, ReviewQueue

    queue, trail = ReviewQueue(governance_db), AuditTrail(governance_db)
    old, new, other, pending = queue.add([_sample("C-1"), _sample("C-1"), _sample("C-2"), _sample("C-3")])
    for item, value in ((old, 0.1), (new, 0.8), (other, 0.2)):
        queue.decide(
            item, reviewer="ann", decision="override", reason="r", override={"churn_probability": value}
        )
        time.sleep(0.01)
    found = queue.overrides_for(["C-1", "C-2", "C-3", "C-9"])
    assert {c: v.id for c, v in found.items()} == {"C-1": new, "C-2": other}
    assert found["C-1"].override == {"churn_probability": 0.8}
    assert queue.claim([new, pending]) == [new]
    assert queue.claim([new]) == []  # once
    queue.mark_delivered([other])
    assert queue.get(other).delivered_at is not None
    assert {c: v.id for c, v in queue.overrides_for(["C-1", "C-2"]).items()} == {"C-1": old}
    delivered = trail.records(event="review.override_delivered")
    assert [r.payload for r in delivered] == [{"items": [new], "count": 1}, {"items": [other], "count": 1}]
    assert trail.verify().ok


def test_opted_out_and_lookup(governance_db: Any) -> None:
    from engage.governance import ReviewQueue

    queue = ReviewQueue(governance_db)
    _opt_out(governance_db, "C-1", "C-3")
    assert queue.opted_out(["C-1", "C-2", "C-3"]) == {"C-1", "C-3"}
    assert queue.opted_out([]) == set()
    (item,) = queue.add([_sample("C-2")])
    queue.decide(item, reviewer="a", decision="override", reason="r", override={"ltv": 5})
    found = queue.lookup(["C-1", "C-2"])
    assert found.opted_out == {"C-1"}
    assert list(found.overrides) == ["C-2"]


def test_a_database_that_is_down_is_a_503() -> None:
    from engage.governance import open_database

    url = f"postgresql+psycopg://engage@127.0.0.1:{free_port()}/engage"
    message = _raises(503, lambda: open_database(url))
    assert "failed" in message


# --- the engage review command ------------------------------------------------------------------------


def engage(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ENGAGE, *args], capture_output=True, text=True, timeout=120, check=False)


def test_the_review_command_lists_shows_and_decides(tmp_path: Path) -> None:
    from engage.governance import AuditTrail, ReviewQueue, open_database

    url = f"sqlite:///{tmp_path}/governance.db"
    db = open_database(url)
    try:
        a, b = ReviewQueue(db).add([_sample("C-1"), _sample("C-2")])
        listed = engage("review", "list", "--db", url, "--json")
        assert listed.returncode == 0, listed.stderr
        assert {i["id"] for i in json.loads(listed.stdout)} == {a, b}
        table = engage("review", "list", "--db", url)
        assert table.returncode == 0
        assert a in table.stdout
        assert "2 review item(s)" in table.stdout
        shown = engage("review", "show", a, "--db", url)
        assert shown.returncode == 0
        assert json.loads(shown.stdout)["prediction"]["ltv"] == 99.5

        decided = engage(
            "review", "decide", a, "--override", "churn_probability=0.9", "--override", "ltv=10",
            "--reason", "called us", "--reviewer", "ann", "--db", url, "--json",
        )  # fmt: skip
        assert decided.returncode == 0, decided.stderr
        body = json.loads(decided.stdout)
        assert body["status"] == "overridden"
        assert body["override"] == {"churn_probability": 0.9, "ltv": 10.0}
        again = engage("review", "decide", a, "--approve", "--reason", "x", "--reviewer", "bob", "--db", url)
        assert again.returncode == 2
        assert "Traceback" not in again.stderr
        assert (
            again.stderr.strip().splitlines()[-1].endswith("is overridden already: a decision is made once")
        )

        approved = engage(
            "review", "decide", b, "--approve", "--reason", "fine", "--reviewer", "bob", "--db", url
        )
        assert approved.returncode == 0
        assert "approved by bob, version 2" in approved.stdout
        assert json.loads(engage("review", "list", "--db", url, "--json").stdout) == []
        every = json.loads(engage("review", "list", "--status", "all", "--db", url, "--json").stdout)
        assert {i["status"] for i in every} == {"approved", "overridden"}

        for bad in (
            ["decide", b, "--override", "ltv", "--reason", "r", "--reviewer", "a"],
            ["decide", b, "--approve", "--override", "ltv=1", "--reason", "r", "--reviewer", "a"],
            ["decide", b, "--reason", "r", "--reviewer", "a"],
            ["show", "no-such-item"],
        ):
            proc = engage("review", *bad, "--db", url)
            assert proc.returncode == 2, proc
            assert "Traceback" not in proc.stderr
            assert proc.stderr.strip().splitlines()[-1].startswith("engage: error: ")
        assert AuditTrail(db).verify().ok
    finally:
        db.dispose()


def test_the_review_command_reads_the_database_of_the_environment(tmp_path: Path) -> None:
    import os

    url = f"sqlite:///{tmp_path}/env.db"
    proc = subprocess.run(
        [ENGAGE, "review", "list", "--json"],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "ENGAGE_GOVERNANCE_DATABASE_URL": url},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []
    assert (tmp_path / "env.db").is_file()


# --- the predictor routing edge cases -----------------------------------------------------------------


@pytest.fixture(scope="module")
def rows(model_folder: Path) -> list[dict[str, Any]]:
    from engage.tables import read_table

    frame = read_table(model_folder / "drift_reference" / "reference.parquet")
    found: list[dict[str, Any]] = json.loads(frame.head(300).to_json(orient="records"))
    return found


@pytest.fixture(scope="module")
def review_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('review')}/governance.db"


@pytest.fixture(scope="module")
def review_db(review_url: str) -> Iterator[Any]:
    from engage.governance import open_database

    db = open_database(review_url)
    yield db
    db.dispose()


@pytest.fixture(scope="module")
def predictor(
    model_folder: Path, review_url: str, review_db: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("review-predictor") / "server.log"
    args = [
        "--model_dir", str(model_folder / "model"), "--review", "true", "--governance_db", review_url,
        "--review_band", "0.1",
    ]  # fmt: skip
    with run_server(MODULE, args, log) as s:
        yield s


def _predict(server: Server, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    answer = httpx.post(server.url + PREDICT, json={"instances": rows}, timeout=30)
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    assert isinstance(predictions, list)
    return predictions


def _queued(db: Any, customer: str, reason: str, timeout: float = 15.0) -> Any:
    from engage.governance import ReviewQueue

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [
            i for i in ReviewQueue(db).list(source="edge", status=None, limit=10_000)
            if i.customer_id == customer and i.reason == reason
        ]  # fmt: skip
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"no {reason} item queued for {customer} in {timeout} s")


def _with_id(row: dict[str, Any], customer: str) -> dict[str, Any]:
    return {**row, "customer_id": customer}


def test_predictions_without_review_notes_are_unchanged(
    predictor: Server, rows: list[dict[str, Any]]
) -> None:
    plain = _predict(predictor, rows[:50])  # no ids: nothing routed, nothing added
    assert all(set(p) == {"churn_probability", "engagement_score", "ltv"} for p in plain)


def test_an_opted_out_customer_is_flagged_and_queued(
    predictor: Server, rows: list[dict[str, Any]], review_db: Any
) -> None:
    _opt_out(review_db, f"{CANARY}-opt")
    (flagged, other) = _predict(predictor, [_with_id(rows[0], f"{CANARY}-opt"), _with_id(rows[1], "C-plain")])
    assert flagged["automated"] is False
    assert flagged["review"]["status"] == "pending"
    assert flagged["review"]["reason"] == "opted_out"
    assert all(0 <= flagged[o] <= 1 for o in ("churn_probability", "engagement_score"))  # still answered
    assert "automated" not in other
    (item,) = _queued(review_db, f"{CANARY}-opt", "opted_out")
    assert item.source == "edge"
    assert item.features
    assert set(item.prediction) >= {"churn_probability"}
    _predict(predictor, [_with_id(rows[0], f"{CANARY}-opt")])
    time.sleep(1)
    assert len(_queued(review_db, f"{CANARY}-opt", "opted_out")) == 1  # pending already: not twice
    assert CANARY not in predictor.log()


def test_a_score_near_the_threshold_is_queued(
    predictor: Server, rows: list[dict[str, Any]], review_db: Any
) -> None:
    scores = [p["churn_probability"] for p in _predict(predictor, rows)]
    near = min(range(len(scores)), key=lambda i: abs(scores[i] - 0.5))
    far = max(range(len(scores)), key=lambda i: abs(scores[i] - 0.5))
    assert abs(scores[near] - 0.5) <= 0.1, f"no score of 300 rows within 0.1 of 0.5: {sorted(scores)[:5]}"
    flagged, unflagged = _predict(predictor, [_with_id(rows[near], "C-near"), _with_id(rows[far], "C-far")])
    assert "near_threshold" in flagged["review"]["reasons"]
    assert "automated" not in flagged
    assert "near_threshold" not in unflagged.get("review", {}).get("reasons", [])
    (item,) = _queued(review_db, "C-near", "near_threshold")
    assert item.stratum == "churn_probability"
    assert item.prediction["churn_probability"] == pytest.approx(flagged["churn_probability"])


def test_an_outlier_is_queued(predictor: Server, rows: list[dict[str, Any]], review_db: Any) -> None:
    row = {**rows[2], "avg_session_minutes": 1e6}
    (flagged,) = _predict(predictor, [_with_id(row, "C-outlier")])
    assert "outlier" in flagged["review"]["reasons"]
    (item,) = _queued(review_db, "C-outlier", "outlier")
    assert "avg_session_minutes" in (item.stratum or "")
    assert item.features["avg_session_minutes"] == 1e6


def test_an_override_is_returned_with_the_next_prediction_exactly_once(
    predictor: Server, rows: list[dict[str, Any]], review_db: Any, model_folder: Path
) -> None:
    from engage.governance import AuditTrail, ReviewQueue

    queue = ReviewQueue(review_db)
    (item,) = queue.add([_sample("C-override")])
    queue.decide(
        item,
        reviewer="ann",
        decision="override",
        reason="retention call",
        override={"churn_probability": 0.9},
    )
    first, second = (_predict(predictor, [_with_id(rows[3], "C-override")])[0] for _ in range(2))
    assert first["override"] == {
        "churn_probability": 0.9, "review_id": item, "reason": "retention call",
        "decided_at": queue.get(item).to_json()["decided_at"],
    }  # fmt: skip
    assert "override" not in second
    assert queue.get(item).delivered_at is not None
    delivered = AuditTrail(review_db).records(event="review.override_delivered")
    assert [r.payload for r in delivered] == [{"items": [item], "count": 1}]
    # V2: the notes ride in the response's parameters, one JSON text keyed by row index
    (again,) = queue.add([_sample("C-v2")])
    queue.decide(again, reviewer="ann", decision="override", reason="r", override={"ltv": 1.0})
    from engage.training import load_bundle

    features = load_bundle(model_folder / "model").features
    some = rows[4:6]
    body = {
        "inputs": [
            {"name": n, "shape": [2], "datatype": "BYTES" if n in features.categorical else "FP64",
             "data": [r[n] for r in some]} for n in features.columns
        ] + [{"name": "customer_id", "shape": [2], "datatype": "BYTES", "data": ["C-nobody", "C-v2"]}]
    }  # fmt: skip
    answer = httpx.post(predictor.url + INFER, json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    notes = json.loads(answer.json()["parameters"]["engage_review"])
    assert notes["1"]["override"]["ltv"] == 1.0
    assert notes["1"]["override"]["review_id"] == again
    assert "override" not in notes.get("0", {})
    assert AuditTrail(review_db).verify().ok


def test_metrics_count_what_was_routed(predictor: Server) -> None:
    text = httpx.get(predictor.url + "/metrics", timeout=10).text
    assert 'engage_review_routed_total{model="engage",reason="opted_out"}' in text
    assert 'engage_review_overrides_delivered_total{model="engage"}' in text


@pytest.mark.parametrize("kind", ["closed_port", "unwritable"])
def test_a_governance_database_that_is_down_never_fails_a_prediction(
    model_folder: Path, rows: list[dict[str, Any]], tmp_path: Path, kind: str
) -> None:
    url = (
        f"postgresql+psycopg://engage:secret-pw@127.0.0.1:{free_port()}/engage"
        if kind == "closed_port"
        else "sqlite:////proc/engage-no-such/governance.db"
    )
    args = ["--model_dir", str(model_folder / "model"), "--review", "true", "--governance_db", url]
    with run_server(MODULE, args, tmp_path / "server.log") as s:
        for i in range(5):
            (p,) = _predict(s, [_with_id(rows[i], f"{CANARY}-{i}")])
            assert p["review"] == {"status": "unchecked", "reason": "governance_unavailable"}
            assert 0 <= p["churn_probability"] <= 1
        v2 = httpx.post(
            s.url + INFER,
            json={"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [[1.0]]}]},
            timeout=30,
        )
        assert v2.status_code in (400, 422)  # refused for its shape, not for the database
        text = httpx.get(s.url + "/metrics", timeout=10).text
        assert 'engage_review_failures_total{model="engage",step=' in text
        log = s.log()
    warnings = [line for line in log.splitlines() if "governance database unavailable" in line]
    assert len(warnings) == 1, log[-3000:]
    assert CANARY not in log
    assert "secret-pw" not in log
