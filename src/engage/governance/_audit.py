"""The audit trail: append-only, hash-chained, verifiable, with retention and legal holds.

Each record holds the hash of the one before (``prev_hash``) and its own ``hash`` over its fields and
the SHA-256 of its payload, so :meth:`AuditTrail.verify` finds any record edited, deleted, inserted or
moved, and names it. The chain head (last ``seq`` and ``hash``) is kept in its own row, moved in the
same transaction as each append, so records cut from the end are found too; ``verify --expect-head``
checks against a head kept elsewhere (a ticket, a model card, a CloudWatch log) for an attacker who
rewrites the whole tail.

A purge (retention) and an erasure (a data-subject deletion) clear a record's payload and keep its
hashes: the chain still verifies, the content is gone. Records under a legal hold keep their payloads.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from engage.errors import GovernanceError

from ._db import Database

if TYPE_CHECKING:
    from sqlalchemy.orm import Session
    from sqlalchemy.sql.elements import ColumnElement

__all__ = [
    "GENESIS",
    "AuditEntry",
    "AuditTrail",
    "Hold",
    "NewRecord",
    "Problem",
    "PurgeResult",
    "VerifyReport",
    "canonical",
]

#: the ``prev_hash`` of the first record
GENESIS = "0" * 64
_APPEND_ATTEMPTS = 8
_VERIFY_BATCH = 5000


def canonical(payload: Mapping[str, Any]) -> str:
    """The payload's one text: JSON with sorted keys and no spaces (what ``payload_sha256`` covers)."""
    try:
        return json.dumps(dict(payload), sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise GovernanceError(f"audit payload is not JSON: {e}", http_status=400) from None


def utc(at: datetime) -> datetime:
    """``at`` as an aware UTC datetime (SQLite gives naive ones back: they are UTC)."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _stamp(at: datetime) -> str:
    return utc(at).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record_hash(
    seq: int, at: datetime, event: str, actor: str, subject: str | None, payload_sha256: str, prev: str
) -> str:
    """The hash a record must hold: SHA-256 of the JSON array of its chained fields."""
    text = json.dumps([seq, _stamp(at), event, actor, subject, payload_sha256, prev], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class NewRecord:
    """One record for :meth:`AuditTrail.append_many`."""

    event: str
    actor: str
    subject: str | None = None
    payload: Mapping[str, Any] | None = None
    customer_id: str | None = None


@dataclass(frozen=True)
class AuditEntry:
    """One record as read back (``payload`` is None once purged or erased: ``redacted`` says which)."""

    seq: int
    at: datetime
    event: str
    actor: str
    subject: str | None
    payload: dict[str, Any] | None
    hash: str
    prev_hash: str
    redacted: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": _stamp(self.at),
            "event": self.event,
            "actor": self.actor,
            "subject": self.subject,
            "payload": self.payload,
            "redacted": self.redacted,
            "hash": self.hash,
            "prev_hash": self.prev_hash,
        }


@dataclass(frozen=True)
class Problem:
    """One break in the chain: the record's ``seq``, the kind and what was found."""

    seq: int
    kind: str  # edited | deleted | broken_link | head
    message: str


@dataclass(frozen=True)
class VerifyReport:
    checked: int
    head_seq: int
    head_hash: str
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "head": {"seq": self.head_seq, "hash": self.head_hash},
            "problems": [{"seq": p.seq, "kind": p.kind, "message": p.message} for p in self.problems],
        }


@dataclass(frozen=True)
class PurgeResult:
    cutoff: datetime
    purged: int
    held: int
    record: AuditEntry


@dataclass(frozen=True)
class Hold:
    id: str
    subject: str | None
    since: datetime | None
    until: datetime | None
    reason: str
    created_by: str
    created_at: datetime
    released_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        def opt(t: datetime | None) -> str | None:
            return None if t is None else _stamp(t)

        return {
            "id": self.id,
            "subject": self.subject,
            "since": opt(self.since),
            "until": opt(self.until),
            "reason": self.reason,
            "created_by": self.created_by,
            "created_at": _stamp(self.created_at),
            "released_at": opt(self.released_at),
        }


class AuditTrail:
    """The one audit trail of an Engage installation (registry, promotion, review, data-subject rights)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def __repr__(self) -> str:
        return f"AuditTrail({self.db.name!r})"

    # --- append ----------------------------------------------------------------------------------------

    def append(
        self,
        event: str,
        *,
        actor: str,
        subject: str | None = None,
        payload: Mapping[str, Any] | None = None,
        customer_id: str | None = None,
        session: Session | None = None,
    ) -> AuditEntry:
        """Append one record; returns it. With ``session`` the record joins that transaction (a change
        and its audit record commit together or not at all); else it is its own transaction.

        ``customer_id`` is never stored: the record gets its keyed hash (``subject_key``), so a data-subject
        request finds it. Two appenders at once: each gets its own ``seq`` (the head row is locked).
        """
        if not event.strip() or not actor.strip():
            raise GovernanceError("an audit record needs an event and an actor", http_status=400)
        text = canonical(payload or {})
        key = None if customer_id is None else self.db.subject_key(customer_id)
        if session is not None:
            return self._append(session, event, actor, subject, text, key)
        from sqlalchemy.exc import IntegrityError

        for attempt in range(_APPEND_ATTEMPTS):
            try:
                with self.db.session() as s:
                    return self._append(s, event, actor, subject, text, key)
            except GovernanceError as e:
                # two first appends at once (no head row to lock yet): the loser retries
                if not isinstance(e.__cause__, IntegrityError) or attempt == _APPEND_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def append_many(self, items: Sequence[NewRecord], *, session: Session | None = None) -> list[AuditEntry]:
        """Append several records in one transaction (one head lock, one bulk insert): imports of old
        records, and a caller recording many events at once. Same chain as one :meth:`append` each."""
        if not items:
            return []
        prepared = []
        for item in items:
            if not item.event.strip() or not item.actor.strip():
                raise GovernanceError("an audit record needs an event and an actor", http_status=400)
            key = None if item.customer_id is None else self.db.subject_key(item.customer_id)
            prepared.append((item, canonical(item.payload or {}), key))
        if session is not None:
            return self._append_rows(session, prepared)
        with self.db.session() as s:
            return self._append_rows(s, prepared)

    def _append_rows(self, s: Session, prepared: list[tuple[NewRecord, str, str | None]]) -> list[AuditEntry]:
        from sqlalchemy import insert, select

        from ._tables import AuditRecord, ChainHead

        head = s.execute(select(ChainHead).where(ChainHead.id == 1).with_for_update()).scalar_one_or_none()
        seq, prev = (0, GENESIS) if head is None else (head.seq, head.hash)
        at = datetime.now(UTC)
        rows, entries = [], []
        for item, text, key in prepared:
            seq += 1
            payload_sha = _sha(text)
            digest = record_hash(seq, at, item.event, item.actor, item.subject, payload_sha, prev)
            rows.append(
                {
                    "seq": seq,
                    "at": at,
                    "event": item.event,
                    "actor": item.actor,
                    "subject": item.subject,
                    "payload": text,
                    "payload_sha256": payload_sha,
                    "prev_hash": prev,
                    "hash": digest,
                    "subject_key": key,
                }
            )
            entries.append(
                AuditEntry(seq, at, item.event, item.actor, item.subject, json.loads(text), digest, prev)
            )
            prev = digest
        s.execute(insert(AuditRecord), rows)
        if head is None:
            s.add(ChainHead(id=1, seq=seq, hash=prev))
        else:
            head.seq, head.hash = seq, prev
        s.flush()
        return entries

    def _append(
        self, s: Session, event: str, actor: str, subject: str | None, text: str, key: str | None
    ) -> AuditEntry:
        from sqlalchemy import select

        from ._tables import AuditRecord, ChainHead

        head = s.execute(select(ChainHead).where(ChainHead.id == 1).with_for_update()).scalar_one_or_none()
        seq, prev = (1, GENESIS) if head is None else (head.seq + 1, head.hash)
        at = datetime.now(UTC)
        payload_sha = _sha(text)
        digest = record_hash(seq, at, event, actor, subject, payload_sha, prev)
        s.add(
            AuditRecord(
                seq=seq,
                at=at,
                event=event,
                actor=actor,
                subject=subject,
                payload=text,
                payload_sha256=payload_sha,
                prev_hash=prev,
                hash=digest,
                subject_key=key,
            )
        )
        if head is None:
            s.add(ChainHead(id=1, seq=seq, hash=digest))
        else:
            head.seq, head.hash = seq, digest
        s.flush()
        return AuditEntry(seq, at, event, actor, subject, json.loads(text), digest, prev)

    # --- read ------------------------------------------------------------------------------------------

    def records(
        self,
        *,
        event: str | None = None,
        subject: str | None = None,
        subject_key: str | None = None,
        since_seq: int = 0,
        limit: int | None = None,
    ) -> list[AuditEntry]:
        """Records oldest first, filtered by event (exact, or a prefix ending in ``.``), subject, key."""
        from sqlalchemy import select

        from ._tables import AuditRecord

        query = select(AuditRecord).where(AuditRecord.seq > since_seq).order_by(AuditRecord.seq)
        if event is not None:
            query = query.where(
                AuditRecord.event.startswith(event, autoescape=True)
                if event.endswith(".")
                else AuditRecord.event == event
            )
        if subject is not None:
            query = query.where(AuditRecord.subject == subject)
        if subject_key is not None:
            query = query.where(AuditRecord.subject_key == subject_key)
        if limit is not None:
            query = query.limit(limit)
        with self.db.session(readonly=True) as s:
            rows = s.execute(query).scalars().all()
            return [_entry(r) for r in rows]

    def head(self) -> tuple[int, str]:
        """``(seq, hash)`` of the last record (``(0, GENESIS)`` for an empty trail)."""
        from ._tables import ChainHead

        with self.db.session(readonly=True) as s:
            head = s.get(ChainHead, 1)
            return (0, GENESIS) if head is None else (head.seq, head.hash)

    # --- verify ----------------------------------------------------------------------------------------

    def verify(self, *, expect_head: tuple[int, str] | None = None) -> VerifyReport:
        """Walk the whole chain and name every record that is not as it was appended.

        ``edited``: a record's payload or fields no longer match its hashes; ``deleted``: ``seq`` numbers
        missing (between records, or at the end before the head); ``broken_link``: a record's
        ``prev_hash`` is not the hash of the record before it (inserted, reordered, or its neighbour
        rewritten); ``head``: the chain head (or ``expect_head``) does not match the records.
        """
        from sqlalchemy import select

        from ._tables import AuditRecord, ChainHead

        problems: list[Problem] = []
        columns = (
            AuditRecord.seq,
            AuditRecord.at,
            AuditRecord.event,
            AuditRecord.actor,
            AuditRecord.subject,
            AuditRecord.payload,
            AuditRecord.payload_sha256,
            AuditRecord.prev_hash,
            AuditRecord.hash,
        )
        checked, last_seq, last_hash = 0, 0, GENESIS
        hashes_at: dict[int, str] = {}
        with self.db.session(readonly=True) as s:
            head = s.get(ChainHead, 1)
            rows = s.execute(
                select(*columns).order_by(AuditRecord.seq).execution_options(yield_per=_VERIFY_BATCH)
            )
            for seq, at, event, actor, subject, payload, payload_sha, prev, digest in rows:
                checked += 1
                gap = seq != last_seq + 1
                if gap:
                    problems.append(_gap(last_seq, seq))
                if payload is not None and _sha(payload) != payload_sha:
                    problems.append(Problem(seq, "edited", f"record {seq}: its payload was changed"))
                elif record_hash(seq, at, event, actor, subject, payload_sha, prev) != digest:
                    problems.append(
                        Problem(seq, "edited", f"record {seq}: its fields no longer match its hash")
                    )
                if prev != last_hash and not gap:
                    problems.append(
                        Problem(
                            seq,
                            "broken_link",
                            f"record {seq}: its prev_hash is not the hash of record {last_seq} "
                            "(a record was inserted, reordered or rewritten before it)",
                        )
                    )
                if expect_head is not None and seq == expect_head[0]:
                    hashes_at[seq] = digest
                last_seq, last_hash = seq, digest
        head_seq, head_hash = (0, GENESIS) if head is None else (head.seq, head.hash)
        if head_seq > last_seq:
            problems.append(
                Problem(
                    last_seq + 1,
                    "deleted",
                    f"records {last_seq + 1}..{head_seq} are missing: the chain head is {head_seq}, "
                    f"the last record {last_seq}",
                )
            )
        elif (head_seq, head_hash) != (last_seq, last_hash):
            problems.append(
                Problem(
                    last_seq,
                    "head",
                    f"the chain head names record {head_seq} ({head_hash[:12]}…), the last record is "
                    f"{last_seq} ({last_hash[:12]}…)",
                )
            )
        if expect_head is not None:
            want_seq, want_hash = expect_head
            found = hashes_at.get(want_seq)
            if found != want_hash.lower():
                what = "is missing" if found is None else f"has hash {found[:12]}…"
                problems.append(
                    Problem(
                        want_seq,
                        "head",
                        f"record {want_seq} {what}, not the expected {want_hash[:12]}… (--expect-head)",
                    )
                )
        return VerifyReport(checked, last_seq, last_hash, problems)

    # --- retention and legal holds ---------------------------------------------------------------------

    def hold(
        self,
        *,
        reason: str,
        actor: str,
        subject: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Hold:
        """Put a legal hold on the records of ``subject`` and/or the window ``since``..``until``."""
        from ._tables import LegalHold

        if subject is None and since is None and until is None:
            raise GovernanceError(
                "a legal hold names a subject, a time window (since/until) or both", http_status=400
            )
        if not reason.strip():
            raise GovernanceError("a legal hold needs a reason", http_status=400)
        if since is not None and until is not None and utc(since) > utc(until):
            raise GovernanceError("a legal hold's window ends before it starts", http_status=400)
        now = datetime.now(UTC)
        row = LegalHold(
            id=str(uuid.uuid4()),
            subject=subject,
            since=None if since is None else utc(since),
            until=None if until is None else utc(until),
            reason=reason,
            created_by=actor,
            created_at=now,
        )
        with self.db.session() as s:
            s.add(row)
            s.flush()
            hold = _hold(row)
            self._append(s, "legal_hold.set", actor, f"hold:{row.id}", canonical(hold.to_json()), None)
        return hold

    def release(self, hold_id: str, *, actor: str, reason: str) -> Hold:
        """Release a legal hold: the records it kept are purged by the next purge that reaches them."""
        from ._tables import LegalHold

        with self.db.session() as s:
            row = s.get(LegalHold, hold_id)
            if row is None:
                raise GovernanceError(f"no legal hold {hold_id!r}", http_status=404)
            if row.released_at is not None:
                raise GovernanceError(f"legal hold {hold_id} was released already", http_status=409)
            row.released_at, row.released_by = datetime.now(UTC), actor
            s.flush()
            hold = _hold(row)
            body = {**hold.to_json(), "release_reason": reason}
            self._append(s, "legal_hold.release", actor, f"hold:{row.id}", canonical(body), None)
        return hold

    def holds(self, *, active: bool = True) -> list[Hold]:
        from sqlalchemy import select

        from ._tables import LegalHold

        query = select(LegalHold).order_by(LegalHold.created_at)
        if active:
            query = query.where(LegalHold.released_at.is_(None))
        with self.db.session(readonly=True) as s:
            return [_hold(r) for r in s.execute(query).scalars()]

    def purge(self, *, retention_days: int, actor: str, now: datetime | None = None) -> PurgeResult:
        """Clear the payloads of records older than the retention period, except those under a legal
        hold; append one ``audit.purge`` record saying what was cleared. One transaction."""
        from sqlalchemy import and_, func, not_, select, update

        from ._tables import AuditRecord

        if retention_days < 1:
            raise GovernanceError("retention must be at least one day", http_status=400)
        cutoff = utc(now or datetime.now(UTC)) - timedelta(days=retention_days)
        due = and_(AuditRecord.at < cutoff, AuditRecord.payload.is_not(None))
        with self.db.session() as s:
            held_clause = self._held(s)
            purgeable = due if held_clause is None else and_(due, not_(held_clause))
            held = 0
            if held_clause is not None:
                held = s.execute(
                    select(func.count()).select_from(AuditRecord).where(and_(due, held_clause))
                ).scalar_one()
            result = s.execute(
                update(AuditRecord)
                .where(purgeable)
                .values(payload=None, redacted="purged", subject_key=None)
                .execution_options(synchronize_session=False)
            )
            purged = int(result.rowcount or 0)  # type: ignore[attr-defined]
            body = {
                "cutoff": _stamp(cutoff),
                "retention_days": retention_days,
                "purged": purged,
                "kept_under_legal_hold": int(held),
            }
            entry = self._append(s, "audit.purge", actor, "audit", canonical(body), None)
        return PurgeResult(cutoff, purged, int(held), entry)

    def erase_subject(self, s: Session, subject_key: str) -> tuple[int, int]:
        """Clear the payloads and key of a customer's records (in the caller's transaction), except
        those under a legal hold; returns ``(erased, kept_under_hold)``."""
        from sqlalchemy import and_, func, not_, select, update

        from ._tables import AuditRecord

        mine = AuditRecord.subject_key == subject_key
        held_clause = self._held(s)
        held = 0
        erasable: ColumnElement[bool] = mine
        if held_clause is not None:
            held = int(
                s.execute(
                    select(func.count()).select_from(AuditRecord).where(and_(mine, held_clause))
                ).scalar_one()
            )
            erasable = and_(mine, not_(held_clause))
        result = s.execute(
            update(AuditRecord)
            .where(erasable)
            .values(payload=None, redacted="erased", subject_key=None)
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount or 0), held  # type: ignore[attr-defined]

    def _held(self, s: Session) -> ColumnElement[bool] | None:
        """The condition "under an active legal hold" over audit records (None: no active hold)."""
        from sqlalchemy import and_, or_, select

        from ._tables import AuditRecord, LegalHold

        conditions: list[ColumnElement[bool]] = []
        for hold in s.execute(select(LegalHold).where(LegalHold.released_at.is_(None))).scalars():
            parts: list[ColumnElement[bool]] = []
            if hold.subject is not None:
                parts.append(AuditRecord.subject == hold.subject)
            if hold.since is not None:
                parts.append(AuditRecord.at >= utc(hold.since))
            if hold.until is not None:
                parts.append(AuditRecord.at <= utc(hold.until))
            conditions.append(and_(*parts))
        return or_(*conditions) if conditions else None

    # --- iteration for exports -------------------------------------------------------------------------

    def iter_all(self) -> Iterator[AuditEntry]:
        """Every record, oldest first, streamed (``engage audit export``)."""
        from sqlalchemy import select

        from ._tables import AuditRecord

        with self.db.session(readonly=True) as s:
            rows = s.execute(
                select(AuditRecord).order_by(AuditRecord.seq).execution_options(yield_per=_VERIFY_BATCH)
            ).scalars()
            for row in rows:
                yield _entry(row)


def _gap(last_seq: int, seq: int) -> Problem:
    if seq <= last_seq:
        return Problem(seq, "broken_link", f"record {seq} comes after record {last_seq} (reordered)")
    missing = f"record {last_seq + 1}" if seq == last_seq + 2 else f"records {last_seq + 1}..{seq - 1}"
    return Problem(last_seq + 1, "deleted", f"{missing} missing before record {seq}")


def _entry(row: Any) -> AuditEntry:
    payload = None if row.payload is None else json.loads(row.payload)
    return AuditEntry(
        row.seq,
        utc(row.at),
        row.event,
        row.actor,
        row.subject,
        payload,
        row.hash,
        row.prev_hash,
        row.redacted,
    )


def _hold(row: Any) -> Hold:
    def opt(t: datetime | None) -> datetime | None:
        return None if t is None else utc(t)

    return Hold(
        row.id,
        row.subject,
        opt(row.since),
        opt(row.until),
        row.reason,
        row.created_by,
        utc(row.created_at),
        opt(row.released_at),
    )
