"""The governance store's tables (SQLAlchemy 2 declarative); Alembic's migrations create them.

Personal data (a customer's id, features, predictions, a reviewer's note about them) lives only in
tables whose rows can be erased: ``review_items``, ``opt_outs``. The audit trail never holds a customer
id: a record about a customer carries ``subject_key``, a keyed hash of the id (HMAC-SHA256 with this
store's own secret), which links the records for an access or deletion request and reveals nothing
without the secret. Erasure clears a record's payload and key and keeps its hashes, so the chain still
verifies.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "ApiToken",
    "AuditRecord",
    "Base",
    "ChainHead",
    "LegalHold",
    "Meta",
    "OptOut",
    "ReviewItem",
]


class Base(DeclarativeBase):
    pass


class Meta(Base):
    """Facts of the store itself: its subject-key secret (made at the first migration)."""

    __tablename__ = "governance_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class AuditRecord(Base):
    """One audit record: appended once, never updated (except a purge or erasure clearing ``payload``).

    ``hash`` covers ``seq``, ``at``, ``event``, ``actor``, ``subject``, ``payload_sha256`` and
    ``prev_hash`` (the hash of record ``seq - 1``); ``payload_sha256`` covers the payload. So an edit
    anywhere, a deleted record and two records swapped all break the chain at a record ``verify`` names.
    """

    __tablename__ = "audit_records"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    event: Mapped[str] = mapped_column(String(64), index=True)
    actor: Mapped[str] = mapped_column(String(256))
    #: what the record is about, never personal data: ``model:customers``, ``review:<uuid>``, ``request:<uuid>``
    subject: Mapped[str | None] = mapped_column(String(1024), index=True)
    #: canonical JSON (sorted keys, no spaces); NULL once purged or erased
    payload: Mapped[str | None] = mapped_column(Text)
    payload_sha256: Mapped[str] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: the keyed hash of the customer the record is about (not covered by ``hash``: a lookup aid only)
    subject_key: Mapped[str | None] = mapped_column(String(64), index=True)
    #: why ``payload`` is NULL: ``purged`` (retention) or ``erased`` (a deletion request)
    redacted: Mapped[str | None] = mapped_column(String(16))


class ChainHead(Base):
    """The last record of the chain (one row), moved in the same transaction as each append: deleting
    records from the end of the trail leaves the head pointing past them."""

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))


class LegalHold(Base):
    """Records under a hold keep their payloads through purges and erasures until it is released.

    A hold matches records by ``subject`` (exact), by time window (``since``/``until``), or both.
    """

    __tablename__ = "legal_holds"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    subject: Mapped[str | None] = mapped_column(String(256))
    since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reason: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    released_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    released_by: Mapped[str | None] = mapped_column(String(256))


class ReviewItem(Base):
    """A record a person reviews: sampled by a pipeline run, or an edge case the predictor met.

    ``lock_version`` is the optimistic lock: two reviewers deciding one item at once, exactly one
    update matches the version both read, the other is refused (409).
    """

    __tablename__ = "review_items"
    __table_args__ = (Index("ix_review_items_customer_status", "customer_id", "status"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str | None] = mapped_column(String(256))
    subject_key: Mapped[str | None] = mapped_column(String(64), index=True)
    #: ``sample`` (a pipeline run's stratified sample) or ``edge`` (the predictor)
    source: Mapped[str] = mapped_column(String(16), index=True)
    #: ``stratified_sample``, ``near_threshold``, ``outlier``, ``opted_out``
    reason: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[str | None] = mapped_column(String(128), index=True)
    model_version: Mapped[str | None] = mapped_column(String(80))
    stratum: Mapped[str | None] = mapped_column(String(256))
    features: Mapped[str] = mapped_column(Text, default="{}")  # JSON
    prediction: Mapped[str] = mapped_column(Text, default="{}")  # JSON
    explanation: Mapped[str | None] = mapped_column(Text)  # JSON
    status: Mapped[str] = mapped_column(String(16), index=True, default="pending")
    override: Mapped[str | None] = mapped_column(Text)  # JSON: output name -> value
    decided_by: Mapped[str | None] = mapped_column(String(256))
    decision_reason: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    lock_version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": lock_version}  # noqa: RUF012


class OptOut(Base):
    """A customer who opted out of automated decisions: their predictions go to human review."""

    __tablename__ = "opt_outs"

    customer_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    subject_key: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(256))


class ApiToken(Base):
    """A bearer token of the governance API: stored as its SHA-256, never as itself."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
