"""Data-subject rights on SQLite and on a real PostgreSQL server: access, erasure, opt-out, legal holds,
a registry's quality reports, and SQL injection strings taken literally."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from engage.errors import GovernanceError

#: a customer id that appears nowhere else (so a scan for it finds only this customer's data)
CANARY = "cust-canary-7f3a9e"
OTHER = "cust-other-12b4"
INJECTIONS = [
    "' OR 1=1 --",
    "'; DROP TABLE audit_records; --",
    'x" OR "1"="1',
    "ünïcødé-顧客-🙂",
    "%",
    "_",
    "a' UNION SELECT token_sha256, name FROM api_tokens --",
]
TABLES = {
    "alembic_version",
    "api_tokens",
    "audit_chain_head",
    "audit_records",
    "governance_meta",
    "legal_holds",
    "opt_outs",
    "review_items",
}


def add_item(db: Any, customer_id: str | None, *, status: str = "pending") -> str:
    """One review item written straight to the table (the queue's own code is another module's)."""
    from engage.governance._tables import ReviewItem

    item_id = str(uuid.uuid4())
    with db.session() as s:
        s.add(
            ReviewItem(
                id=item_id,
                customer_id=customer_id,
                subject_key=None if customer_id is None else db.subject_key(customer_id),
                source="edge",
                reason="near_threshold",
                run_id="run-1",
                model_version="sha256:" + "a" * 64,
                features=json.dumps({"age": 41, "plan": "gold"}),
                prediction=json.dumps({"churn_probability": 0.51}),
                explanation=json.dumps({"reasons": ["tenure is short"]}),
                status=status,
                override=json.dumps({"churn_label": 0}) if status == "overridden" else None,
                decided_by="rita (reviewer)" if status != "pending" else None,
                decision_reason="called the customer" if status != "pending" else None,
                created_at=datetime.now(UTC),
            )
        )
    return item_id


def table_names(db: Any) -> set[str]:
    from sqlalchemy import inspect

    return set(inspect(db.engine).get_table_names())


def cells_holding(db: Any, needle: str) -> list[str]:
    """Every ``table.column`` of every table whose text holds ``needle``."""
    from sqlalchemy import MetaData, select

    meta = MetaData()
    meta.reflect(db.engine)
    found = []
    with db.engine.connect() as connection:
        for table in meta.sorted_tables:
            for row in connection.execute(select(table)).mappings():
                for column, value in row.items():
                    if value is not None and needle in str(value):
                        found.append(f"{table.name}.{column}")
    return found


@pytest.fixture
def customer_table(tmp_path: Path) -> Path:
    path = tmp_path / "customers.csv"
    path.write_text(
        f"customer_id,email,tenure_months\n{CANARY},jane@example.org,3\n{OTHER},bob@example.org,40\n"
        f"{CANARY},jane@example.org,4\n",
        encoding="utf-8",
    )
    return path


def test_access_exports_everything_held_and_is_audited_without_the_id(
    governance_db: Any, customer_table: Path, contract: Any
) -> None:
    from engage.governance import AuditTrail, SubjectRights

    trail = AuditTrail(governance_db)
    rights = SubjectRights(governance_db, trail)
    mine = {add_item(governance_db, CANARY), add_item(governance_db, CANARY, status="overridden")}
    add_item(governance_db, OTHER)
    rights.opt_out(CANARY, actor="ops")
    trail.append("review.override", actor="rita", subject="review:x", payload={"v": 1}, customer_id=CANARY)

    export = rights.access(CANARY, actor="dpo", table=customer_table, contract=contract)

    assert export["customer_id"] == CANARY
    assert {i["id"] for i in export["review_items"]} == mine
    overridden = next(i for i in export["review_items"] if i["status"] == "overridden")
    assert overridden["override"] == {"churn_label": 0}
    assert overridden["features"] == {"age": 41, "plan": "gold"}
    assert overridden["explanation"] == {"reasons": ["tenure is short"]}
    assert overridden["decision_reason"] == "called the customer"
    assert export["opt_out"]["opted_out"] is True
    assert [r["event"] for r in export["audit_records"]] == ["subject.opt_out", "review.override"]
    assert export["audit_records"][1]["payload"] == {"v": 1}
    assert [r["tenure_months"] for r in export["table"]["rows"]] == ["3", "4"]  # CSV: as text
    assert export["table"]["id_column"] == "customer_id"
    assert export["counts"] == {"review_items": 2, "opt_outs": 1, "audit_records": 2, "table_rows": 2}

    access = trail.records(event="subject.access")[-1]
    assert access.subject == f"request:{export['request_id']}"
    assert access.payload == {"request_id": export["request_id"], "found": True, "counts": export["counts"]}
    assert trail.records(subject_key=governance_db.subject_key(CANARY))[-1].seq == access.seq
    assert "audit_records.payload" not in cells_holding(governance_db, CANARY)


def test_unknown_customer_is_404_not_an_empty_export(governance_db: Any) -> None:
    from engage.governance import AuditTrail, SubjectRights

    trail = AuditTrail(governance_db)
    rights = SubjectRights(governance_db, trail)
    add_item(governance_db, OTHER)
    calls: list[Callable[[], object]] = [
        lambda: rights.access("nobody", actor="dpo"),
        lambda: rights.delete("nobody", actor="dpo", reason="ticket 1"),
    ]
    for call in calls:
        with pytest.raises(GovernanceError) as caught:
            call()
        assert caught.value.http_status == 404
    assert "nobody" not in str(caught.value)
    # the requests are on the record, the unknown id is not (not even as a key)
    assert [r.event for r in trail.records(event="subject.")] == ["subject.access", "subject.erase_request"]
    assert trail.records(subject_key=governance_db.subject_key("nobody")) == []
    assert cells_holding(governance_db, "nobody") == []
    assert len(rights.access(OTHER, actor="dpo")["review_items"]) == 1


def test_delete_erases_everywhere_leaves_a_tombstone_and_the_chain_verifies(governance_db: Any) -> None:
    from engage.governance import AuditTrail, SubjectRights

    trail = AuditTrail(governance_db)
    rights = SubjectRights(governance_db, trail)
    add_item(governance_db, CANARY)
    add_item(governance_db, CANARY, status="overridden")
    kept = add_item(governance_db, OTHER)
    rights.opt_out(CANARY, actor="ops")
    rights.opt_out(OTHER, actor="ops")
    trail.append(
        "review.override", actor="rita", subject="review:1", payload={"note": "n"}, customer_id=CANARY
    )
    trail.append(
        "review.override", actor="rita", subject="review:2", payload={"note": "o"}, customer_id=OTHER
    )
    rights.access(CANARY, actor="dpo")
    key = governance_db.subject_key(CANARY)
    assert cells_holding(governance_db, CANARY)  # the scan finds it before

    result = rights.delete(CANARY, actor="dpo", reason="GDPR erasure ticket 42")

    assert result["erased"] == {"review_items": 2, "opt_outs": 1, "audit_payloads": 3}
    assert result["kept_under_legal_hold"] == 0
    assert cells_holding(governance_db, CANARY) == []
    assert cells_holding(governance_db, key) == []
    assert trail.verify().ok
    tombstone = trail.records(event="subject.erased")[-1]
    assert tombstone.seq == result["tombstone_seq"] == trail.head()[0]
    assert tombstone.subject == f"request:{result['request_id']}"
    assert tombstone.payload == {
        "request_id": result["request_id"],
        "erased": result["erased"],
        "kept_under_legal_hold": 0,
        "reason": "GDPR erasure ticket 42",
    }
    erased = [r for r in trail.records() if r.redacted == "erased"]
    assert len(erased) == 3
    assert all(r.payload is None for r in erased)
    # the other customer is untouched
    other = rights.access(OTHER, actor="dpo")
    assert [i["id"] for i in other["review_items"]] == [kept]
    assert other["opt_out"] is not None
    assert {r["payload"]["note"] for r in other["audit_records"] if r["event"] == "review.override"} == {"o"}
    with pytest.raises(GovernanceError) as caught:
        rights.access(CANARY, actor="dpo")
    assert caught.value.http_status == 404
    assert table_names(governance_db) >= TABLES


def test_a_legal_hold_keeps_held_records_through_an_erasure(governance_db: Any) -> None:
    from engage.governance import AuditTrail, SubjectRights

    trail = AuditTrail(governance_db)
    rights = SubjectRights(governance_db, trail)
    add_item(governance_db, CANARY)
    held = trail.append(
        "review.override", actor="rita", subject="review:held", payload={"a": 1}, customer_id=CANARY
    )
    free = trail.append(
        "review.approve", actor="rita", subject="review:free", payload={"b": 2}, customer_id=CANARY
    )
    trail.hold(reason="litigation 7", actor="legal", subject="review:held")

    result = rights.delete(CANARY, actor="dpo", reason="ticket 43")

    assert result["erased"]["audit_payloads"] == 1
    assert result["kept_under_legal_hold"] == 1
    by_seq = {r.seq: r for r in trail.records()}
    assert by_seq[held.seq].payload == {"a": 1}
    assert by_seq[held.seq].redacted is None
    assert by_seq[free.seq].payload is None
    assert by_seq[free.seq].redacted == "erased"
    assert trail.verify().ok
    # the held record is still the customer's: an access request finds it (and only it)
    export = rights.access(CANARY, actor="dpo")
    assert [r["seq"] for r in export["audit_records"]] == [held.seq]
    assert export["review_items"] == []
    assert export["opt_out"] is None
    assert cells_holding(governance_db, CANARY) == []


def test_opt_out_and_in_are_idempotent_and_audited(governance_db: Any) -> None:
    from engage.governance import AuditTrail, SubjectRights

    trail = AuditTrail(governance_db)
    rights = SubjectRights(governance_db, trail)
    assert rights.opt_out(CANARY, actor="ops")["changed"] is True
    again = rights.opt_out(CANARY, actor="ops")
    assert again["changed"] is False
    assert again["opted_out"] is True
    assert rights.opted_out(CANARY)
    assert not rights.opted_out(OTHER)
    assert cells_holding(governance_db, CANARY) == ["opt_outs.customer_id"]
    assert rights.opt_in(CANARY, actor="ops")["changed"] is True
    assert rights.opt_in(CANARY, actor="ops")["changed"] is False
    assert not rights.opted_out(CANARY)
    events = trail.records(subject_key=governance_db.subject_key(CANARY))
    assert [r.event for r in events] == ["subject.opt_out"] * 2 + ["subject.opt_in"] * 2
    assert all(r.subject is not None and r.subject.startswith("request:") for r in events)
    assert cells_holding(governance_db, CANARY) == []


def test_registry_quality_reports_are_searched_and_masked(governance_db: Any, tmp_path: Path) -> None:
    from engage.artifacts import write_manifest
    from engage.governance import AuditTrail, SubjectRights
    from engage.privacy import mask
    from engage.registry import Registry

    trail = AuditTrail(governance_db)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "model.json").write_text("{}", encoding="utf-8")
    write_manifest(bundle)
    report = {
        "rows": 3,
        "results": [
            {"id": "BR-003", "sample_keys": [CANARY, OTHER]},
            {"id": "BR-004", "sample_keys": [OTHER]},
            {"id": "BR-005", "sample_keys": []},
        ],
    }
    (tmp_path / "quality_report.json").write_text(json.dumps(report), encoding="utf-8")
    registry = Registry(str(tmp_path / "registry"), trail=trail)
    version = registry.publish(bundle, attachments={"quality_report.json": tmp_path / "quality_report.json"})
    rights = SubjectRights(governance_db, trail)

    export = rights.access(CANARY, actor="dpo", registry=registry)  # held nowhere else: found there
    assert export["registry"]["quality_reports"] == [
        {"version": version.id, "attachment": "quality_report.json", "check": "BR-003"}
    ]
    result = rights.delete(CANARY, actor="dpo", reason="ticket 44", registry=registry)
    assert result["erased"]["registry_quality_reports"] == 1
    stored = json.loads((Path(version.uri.removeprefix("file://")) / "quality_report.json").read_text())
    assert stored["results"][0]["sample_keys"] == [mask(CANARY), OTHER]
    assert stored["results"][1]["sample_keys"] == [OTHER]
    assert registry.get(version.id).id == version.id  # the version still reads
    assert trail.verify().ok
    with pytest.raises(GovernanceError):
        rights.access(CANARY, actor="dpo", registry=registry)


@pytest.mark.parametrize("bad", ["", " ", "a\x00b", "x" * 257])
def test_unusable_customer_ids_are_400(governance_db: Any, bad: str) -> None:
    from engage.governance import SubjectRights

    rights = SubjectRights(governance_db)
    calls: list[Callable[[], object]] = [
        lambda: rights.access(bad, actor="dpo"),
        lambda: rights.delete(bad, actor="dpo", reason="r"),
        lambda: rights.opt_out(bad, actor="dpo"),
        lambda: rights.opt_in(bad, actor="dpo"),
    ]
    for call in calls:
        with pytest.raises(GovernanceError) as caught:
            call()
        assert caught.value.http_status == 400


def test_injection_strings_are_stored_and_matched_literally(governance_db: Any) -> None:
    from engage.governance import AuditTrail, SubjectRights

    trail = AuditTrail(governance_db)
    rights = SubjectRights(governance_db, trail)
    add_item(governance_db, OTHER)
    rights.opt_out(OTHER, actor="ops")
    for text in INJECTIONS:
        with pytest.raises(GovernanceError) as caught:
            rights.access(text, actor=text)
        assert caught.value.http_status == 404  # not every row
        rights.opt_out(text, actor=text)
        export = rights.access(text, actor="dpo")
        assert export["customer_id"] == text
        assert export["counts"] == {"review_items": 0, "opt_outs": 1, "audit_records": 1}
        result = rights.delete(text, actor=text, reason=text)
        assert result["erased"]["opt_outs"] == 1
        assert trail.records(event="subject.erased")[-1].payload["reason"] == text  # type: ignore[index]
    assert table_names(governance_db) >= TABLES
    assert rights.opted_out(OTHER)
    assert len(rights.access(OTHER, actor="dpo")["review_items"]) == 1
    assert trail.verify().ok
