"""The audit trail on SQLite and on a real PostgreSQL server: every kind of tampering is caught and named,
purges keep the chain verifiable and respect legal holds, concurrent appends each get their own place."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engage.errors import GovernanceError
from tests.governance_support import tamper


def _trail(db: Any, records: int = 6) -> Any:
    from engage.governance import AuditTrail

    trail = AuditTrail(db)
    for i in range(records):
        trail.append("registry.publish", actor="alice", subject="registry:s3://b/customers", payload={"n": i})
    return trail


def test_the_database_refuses_to_delete_or_rewrite_records(governance_db: Any) -> None:
    """Append-only in the database itself: without the owner's rights to drop the trigger, a DELETE or
    an UPDATE of what the chain covers fails; clearing a payload (purge, erasure) is allowed."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    trail = _trail(governance_db, records=3)
    for statement in (
        "DELETE FROM audit_records WHERE seq = 2",
        "DELETE FROM audit_records",
        "UPDATE audit_records SET actor = 'mallory' WHERE seq = 2",
        "UPDATE audit_records SET payload = '[]' WHERE seq = 2",
        "UPDATE audit_records SET seq = 10 WHERE seq = 3",
        "UPDATE audit_records SET hash = prev_hash WHERE seq = 1",
    ):
        with pytest.raises(DBAPIError, match="append-only"), governance_db.engine.begin() as connection:
            connection.execute(text(statement))
    with governance_db.engine.begin() as connection:
        connection.execute(text("UPDATE audit_records SET payload = NULL, redacted = 'purged' WHERE seq = 1"))
    report = trail.verify()
    assert report.ok
    assert report.checked == 3


def _kinds(report: Any) -> list[tuple[int, str]]:
    return [(p.seq, p.kind) for p in report.problems]


def test_an_untouched_trail_verifies(governance_db: Any) -> None:
    trail = _trail(governance_db)
    report = trail.verify()
    assert report.ok
    assert report.checked == 6
    assert (report.head_seq, report.head_hash) == trail.head()
    assert [e.payload for e in trail.records(event="registry.")] == [{"n": i} for i in range(6)]
    assert trail.verify(expect_head=trail.head()).ok
    assert governance_db.revision() == "0002"
    assert governance_db.migrate() == "0002"  # idempotent


def test_an_edited_payload_is_named(governance_db: Any) -> None:
    trail = _trail(governance_db)
    tamper(governance_db, "UPDATE audit_records SET payload = :p WHERE seq = 3", p='{"n":99}')
    report = trail.verify()
    assert _kinds(report) == [(3, "edited")]
    assert "record 3" in report.problems[0].message


def test_an_edited_field_is_named(governance_db: Any) -> None:
    trail = _trail(governance_db)
    tamper(governance_db, "UPDATE audit_records SET actor = 'mallory' WHERE seq = 4")
    assert _kinds(trail.verify()) == [(4, "edited")]


def test_a_deleted_record_is_named(governance_db: Any) -> None:
    trail = _trail(governance_db)
    tamper(governance_db, "DELETE FROM audit_records WHERE seq = 2")
    report = trail.verify()
    assert _kinds(report) == [(2, "deleted")]
    assert "record 2 missing" in report.problems[0].message


def test_records_cut_from_the_end_are_named(governance_db: Any) -> None:
    trail = _trail(governance_db)
    tamper(governance_db, "DELETE FROM audit_records WHERE seq >= 5")
    report = trail.verify()
    assert _kinds(report) == [(5, "deleted")]
    assert "records 5..6 are missing" in report.problems[0].message


def test_reordered_records_are_named(governance_db: Any) -> None:
    trail = _trail(governance_db)
    # swap records 3 and 4 (their whole rows, seq numbers exchanged)
    tamper(governance_db, "UPDATE audit_records SET seq = 1000 WHERE seq = 3")
    tamper(governance_db, "UPDATE audit_records SET seq = 3 WHERE seq = 4")
    tamper(governance_db, "UPDATE audit_records SET seq = 4 WHERE seq = 1000")
    report = trail.verify()
    assert not report.ok
    named = {seq for seq, _ in _kinds(report)}
    assert named == {3, 4, 5}  # both moved records, and the record after them (its link)


def test_a_forged_record_with_a_valid_own_hash_is_caught(governance_db: Any) -> None:
    """Replacing record 3 by a well-formed record (its own hashes right) breaks record 4's link."""
    from engage.governance._audit import _sha, record_hash

    trail = _trail(governance_db)
    before = {e.seq: e for e in trail.records()}
    at = datetime.now(UTC)
    payload = '{"n":"forged"}'
    digest = record_hash(
        3, at, "registry.publish", "alice", "registry:s3://b/customers", _sha(payload), before[2].hash
    )
    tamper(governance_db, "DELETE FROM audit_records WHERE seq = 3")
    tamper(
        governance_db,
        "INSERT INTO audit_records (seq, at, event, actor, subject, payload, payload_sha256, prev_hash, hash) "
        "VALUES (3, :at, 'registry.publish', 'alice', 'registry:s3://b/customers', :p, :ps, :prev, :h)",
        at=at,
        p=payload,
        ps=_sha(payload),
        prev=before[2].hash,
        h=digest,
    )
    assert _kinds(trail.verify()) == [(4, "broken_link")]


def test_a_rewritten_tail_is_caught_against_a_head_kept_elsewhere(governance_db: Any) -> None:
    """Whoever rewrites records and the head row consistently passes the chain walk; the head published
    elsewhere (``--expect-head``) still catches it."""
    trail = _trail(governance_db, records=3)
    kept = trail.head()
    second = trail.records()[1]
    tamper(governance_db, "DELETE FROM audit_records WHERE seq = 3")
    tamper(governance_db, "UPDATE audit_chain_head SET seq = 2, hash = :h", h=second.hash)
    trail.append("registry.publish", actor="mallory", payload={"n": "rewritten"})
    assert trail.verify().ok  # a consistent rewrite: the chain alone cannot tell
    report = trail.verify(expect_head=kept)
    assert _kinds(report) == [(3, "head")]


def test_concurrent_appends_each_get_their_own_place(governance_db: Any) -> None:
    from engage.governance import AuditTrail

    trail = AuditTrail(governance_db)
    errors: list[BaseException] = []

    def append(worker: int) -> None:
        try:
            for i in range(15):
                trail.append("note", actor=f"w{worker}", payload={"i": i})
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=append, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [e.seq for e in trail.records()] == list(range(1, 61))
    assert trail.verify().ok


def test_purge_clears_old_payloads_keeps_holds_and_the_chain(governance_db: Any) -> None:
    trail = _trail(governance_db, records=4)
    trail.append("promotion", actor="pipeline", subject="registry:held", payload={"case": 1})
    hold = trail.hold(reason="case 2026-17", actor="legal", subject="registry:held")
    later = datetime.now(UTC) + timedelta(days=10)

    result = trail.purge(retention_days=5, actor="ops", now=later)
    assert (result.purged, result.held) == (5, 1)  # 4 old records and the hold's own record; 1 held
    records = {e.seq: e for e in trail.records()}
    assert [records[s].redacted for s in range(1, 5)] == ["purged"] * 4
    assert records[1].payload is None
    assert records[5].payload == {"case": 1}  # held
    assert records[result.record.seq].payload["kept_under_legal_hold"] == 1
    assert trail.verify().ok  # payloads gone, hashes kept: the chain still verifies

    trail.release(hold.id, actor="legal", reason="case closed")
    with pytest.raises(GovernanceError, match="released already") as caught:
        trail.release(hold.id, actor="legal", reason="again")
    assert caught.value.http_status == 409
    again = trail.purge(retention_days=5, actor="ops", now=later)
    assert again.held == 0
    assert again.purged >= 1
    assert {e.seq: e for e in trail.records()}[5].redacted == "purged"
    assert trail.verify().ok
    assert [h.id for h in trail.holds(active=False)] == [hold.id]
    assert trail.holds() == []


def test_a_time_window_hold(governance_db: Any) -> None:
    trail = _trail(governance_db, records=2)
    now = datetime.now(UTC)
    trail.hold(
        reason="audit 2026", actor="legal", since=now - timedelta(hours=1), until=now + timedelta(hours=1)
    )
    result = trail.purge(retention_days=1, actor="ops", now=now + timedelta(days=3))
    assert result.held == 3
    assert result.purged == 0


def test_bad_requests_are_refused(governance_db: Any) -> None:
    from engage.governance import AuditTrail

    trail = AuditTrail(governance_db)
    for call, message in [
        (lambda: trail.append("", actor="a"), "needs an event"),
        (lambda: trail.append("x", actor="a", payload={"v": float("nan")}), "not JSON"),
        (lambda: trail.hold(reason="x", actor="a"), "names a subject"),
        (lambda: trail.hold(reason=" ", actor="a", subject="s"), "needs a reason"),
        (lambda: trail.release("nope", actor="a", reason="r"), "no legal hold"),
        (lambda: trail.purge(retention_days=0, actor="a"), "at least one day"),
    ]:
        with pytest.raises(GovernanceError, match=message):
            call()
    assert trail.records() == []


def test_the_database_down_is_a_clear_503() -> None:
    from engage.governance import AuditTrail, Database

    trail = AuditTrail(Database("postgresql+psycopg://engage:secret@127.0.0.1:1/governance"))
    with pytest.raises(GovernanceError) as caught:
        trail.append("x", actor="a")
    assert caught.value.http_status == 503
    assert "127.0.0.1:1" in caught.value.message
    assert "secret" not in caught.value.message


def test_engage_audit_verify_names_the_tampered_record(governance_url: str) -> None:
    """The CLI: exit 0 on an intact trail; exit 1 naming the record after an edit."""
    from engage.governance import AuditTrail, open_database

    db = open_database(governance_url)
    try:
        trail = AuditTrail(db)
        for i in range(3):
            trail.append("note", actor="a", payload={"i": i})
        cli = [sys.executable, "-m", "engage", "audit", "verify", "--db", governance_url]
        ok = subprocess.run(cli, capture_output=True, text=True, timeout=120)
        assert ok.returncode == 0, ok.stderr
        assert "intact: 3 record(s)" in ok.stdout
        tamper(db, "UPDATE audit_records SET payload = :p WHERE seq = 2", p='{"i":7}')
        bad = subprocess.run(cli, capture_output=True, text=True, timeout=120)
        assert bad.returncode == 1
        assert "TAMPERED record 2 (edited)" in bad.stdout
    finally:
        db.dispose()
