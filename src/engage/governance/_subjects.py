"""Data-subject rights: access (export everything held about a customer), erasure, opt-out.

Where Engage keeps personal data about one customer, and what each right does there:

===================================  ======================================  ==================================
where                                access                                  delete
===================================  ======================================  ==================================
``review_items`` (features,          every item, all columns                 rows deleted
predictions, explanations,
overrides, decisions)
``opt_outs``                         the row, if any                         row deleted
``audit_records`` (by the keyed      every record with its payload           payload and key cleared
hash ``subject_key``)                                                        (``erase_subject``); records under a
                                                                             legal hold kept (GDPR 17(3)(e))
a customer table + its contract      the customer's rows                     not touched: the source system's
(given by the caller)                                                        (Engage reads it, does not own it)
a model registry (given by the       the quality reports whose               each such customer id replaced by
caller): a version's                 ``sample_keys`` name the customer       its mask in the report
``quality_report.json``
pipeline run outputs (given by the   each table with the customer's rows     rows dropped, per-customer folders
caller: :class:`RunOutputs`)         (and the rows), each report naming      deleted, the id masked in reports
                                     them, each per-customer folder          (see ``engage.governance._runs``)
===================================  ======================================  ==================================

What a registry version holds otherwise is not keyed by customer: evaluation, fairness, explanations
(``explanations.json`` is the global summary) and the model card are aggregates; ``drift_reference/``
holds a sample of training rows' model inputs without the customer id, so no row can be found for
(or is linked to) a customer id.

Every request is audited under ``request:<uuid>``; the access record carries the customer's keyed hash
(the trail never holds the id), the erasure's tombstone carries neither id nor key.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from engage.errors import GovernanceError
from engage.privacy import mask

from ._audit import AuditTrail, utc
from ._tokens import check_text

if TYPE_CHECKING:
    from sqlalchemy.sql.elements import ColumnElement

    from engage.contract import Contract

    from ._db import Database

__all__ = ["CustomerRecords", "SubjectRights"]

_LOG = logging.getLogger(__name__)


class CustomerRecords(Protocol):
    """What subject rights need of a source of customer data besides the database: where it names a
    customer, and erasing them there. :class:`engage.registry.Registry` (its quality reports) and
    :class:`~engage.governance.RunOutputs` (pipeline run outputs) are two. A protocol, so governance does
    not import the registry (the registry records to governance's audit trail)."""

    @property
    def location(self) -> str: ...

    def customer_mentions(self, customer_id: str) -> list[dict[str, Any]]: ...

    def mask_customer(self, customer_id: str) -> int: ...


#: the longest customer id the store keeps (``review_items.customer_id``, ``opt_outs.customer_id``)
MAX_CUSTOMER_ID = 256
_REASON_MAX = 2000
_JSON_COLUMNS = ("features", "prediction", "explanation", "override")


def _unknown(customer_id: str) -> GovernanceError:
    return GovernanceError(
        f"no data held about customer {mask(customer_id)} (review items, opt-outs, audit records"
        " and the sources given were searched)",
        http_status=404,
    )


#: the count each source is recorded under, in access exports, audit records and tombstones
_SOURCES = {"registry": "registry_quality_reports", "runs": "run_outputs"}


def _sources(registry: CustomerRecords | None, runs: CustomerRecords | None) -> dict[str, CustomerRecords]:
    """The sources given, by name (``registry``, ``runs``), in the order they are searched and erased."""
    given = {"registry": registry, "runs": runs}
    return {name: source for name, source in given.items() if source is not None}


def _stamp(at: datetime | None) -> str | None:
    return None if at is None else utc(at).isoformat()


class SubjectRights:
    """Access, erasure and opt-out for the customers of one governance database."""

    def __init__(self, db: Database, trail: AuditTrail | None = None) -> None:
        self.db = db
        self.trail = trail or AuditTrail(db)

    # --- access ----------------------------------------------------------------------------------------

    def access(
        self,
        customer_id: str,
        *,
        actor: str,
        table: str | Path | None = None,
        contract: Contract | None = None,
        registry: CustomerRecords | None = None,
        runs: CustomerRecords | None = None,
    ) -> dict[str, Any]:
        """Everything Engage holds about ``customer_id``, JSON-ready; GovernanceError 404 when nothing.

        ``table`` (CSV, Parquet, any fsspec URI) with ``contract`` (whose primary key names the id
        column) adds the customer's rows of that table; ``registry`` the quality reports naming them;
        ``runs`` (:class:`~engage.governance.RunOutputs`) the pipeline run outputs holding them.
        """
        from sqlalchemy import select

        from ._tables import OptOut

        check_text(customer_id, "customer id", max_length=MAX_CUSTOMER_ID)
        if (table is None) != (contract is None):
            raise GovernanceError(
                "a customer table needs its contract (and a contract its table)", http_status=400
            )
        request_id = str(uuid.uuid4())
        key = self.db.subject_key(customer_id)
        with self.db.session(readonly=True) as s:
            items = [_item_json(r) for r in s.execute(_items_query(customer_id, key)).scalars()]
            opt = s.execute(select(OptOut).where(OptOut.customer_id == customer_id)).scalar_one_or_none()
            opted = None if opt is None else {"opted_out": True, "at": _stamp(opt.at), "actor": opt.actor}
        records = [r.to_json() for r in self.trail.records(subject_key=key)]
        rows = None if table is None or contract is None else _table_rows(table, contract, customer_id)
        sources = _sources(registry, runs)
        mentions = {name: source.customer_mentions(customer_id) for name, source in sources.items()}
        counts = {
            "review_items": len(items),
            "opt_outs": 0 if opted is None else 1,
            "audit_records": len(records),
        }
        if rows is not None:
            counts["table_rows"] = len(rows["rows"])
        for name, found in mentions.items():
            counts[_SOURCES[name]] = len(found)
        if not any(counts.values()):
            # the request is on the record, the customer id is not (an unknown id is nobody's data)
            self.trail.append(
                "subject.access",
                actor=actor,
                subject=f"request:{request_id}",
                payload={"request_id": request_id, "found": False},
            )
            raise _unknown(customer_id)
        entry = self.trail.append(
            "subject.access",
            actor=actor,
            subject=f"request:{request_id}",
            payload={"request_id": request_id, "found": True, "counts": counts},
            customer_id=customer_id,
        )
        _LOG.info("subject access %s: %s", request_id, counts)
        return {
            "request_id": request_id,
            "customer_id": customer_id,
            "generated_at": _stamp(entry.at),
            "counts": counts,
            "review_items": items,
            "opt_out": opted,
            "audit_records": records,
            "table": rows,
            "registry": None
            if registry is None
            else {"location": registry.location, "quality_reports": mentions["registry"]},
            "runs": None if runs is None else {"location": runs.location, "outputs": mentions["runs"]},
        }

    # --- erasure ---------------------------------------------------------------------------------------

    def delete(
        self,
        customer_id: str,
        *,
        actor: str,
        reason: str,
        registry: CustomerRecords | None = None,
        runs: CustomerRecords | None = None,
    ) -> dict[str, Any]:
        """Erase the customer's personal data everywhere Engage keeps it; returns what was erased.

        The database part is one transaction: review items and the opt-out row deleted, audit payloads
        cleared (those under a legal hold kept and counted), and a tombstone ``subject.erased`` appended
        with neither the id nor its key. The other sources are erased first: with ``registry``, the
        customer id is masked in every version's quality report that names it; with ``runs``, the
        customer's rows, per-customer folders and mentions in reports are erased from every pipeline run
        output (idempotent: a retry after a failed database part finds nothing left there). The
        tombstone counts what was erased per source. GovernanceError 404 when nothing is held.
        """
        from sqlalchemy import delete, func, select

        from ._tables import AuditRecord, OptOut, ReviewItem

        check_text(customer_id, "customer id", max_length=MAX_CUSTOMER_ID)
        check_text(reason, "reason", max_length=_REASON_MAX)
        request_id = str(uuid.uuid4())
        key = self.db.subject_key(customer_id)
        sources = _sources(registry, runs)
        mentions = {name: source.customer_mentions(customer_id) for name, source in sources.items()}
        with self.db.session(readonly=True) as s:
            held_anywhere = (
                s.execute(
                    select(func.count()).select_from(_items_query(customer_id, key).subquery())
                ).scalar_one()
                + s.execute(
                    select(func.count()).select_from(OptOut).where(OptOut.customer_id == customer_id)
                ).scalar_one()
                + s.execute(
                    select(func.count()).select_from(AuditRecord).where(AuditRecord.subject_key == key)
                ).scalar_one()
            )
        if not held_anywhere and not any(mentions.values()):
            self.trail.append(
                "subject.erase_request",
                actor=actor,
                subject=f"request:{request_id}",
                payload={"request_id": request_id, "found": False, "reason": reason},
            )
            raise _unknown(customer_id)
        masked = {name: source.mask_customer(customer_id) for name, source in sources.items()}
        with self.db.session() as s:
            items = s.execute(
                delete(ReviewItem)
                .where(_items_clause(customer_id, key))
                .execution_options(synchronize_session=False)
            )
            opts = s.execute(
                delete(OptOut)
                .where(OptOut.customer_id == customer_id)
                .execution_options(synchronize_session=False)
            )
            erased, kept = self.trail.erase_subject(s, key)
            erased_counts = {
                "review_items": int(items.rowcount or 0),  # type: ignore[attr-defined]
                "opt_outs": int(opts.rowcount or 0),  # type: ignore[attr-defined]
                "audit_payloads": erased,
            }
            for name, count in masked.items():
                erased_counts[_SOURCES[name]] = count
            body = {
                "request_id": request_id,
                "erased": erased_counts,
                "kept_under_legal_hold": kept,
                "reason": reason,
            }
            entry = self.trail.append(
                "subject.erased", actor=actor, subject=f"request:{request_id}", payload=body, session=s
            )
        _LOG.info("subject erasure %s: %s, %d kept under legal hold", request_id, erased_counts, kept)
        return {**body, "tombstone_seq": entry.seq}

    # --- opt-out ---------------------------------------------------------------------------------------

    def opt_out(self, customer_id: str, *, actor: str) -> dict[str, Any]:
        """Record that the customer opted out of automated decisions (idempotent): from now on the
        predictor sends their predictions to human review."""
        from sqlalchemy import select

        from ._tables import OptOut

        check_text(customer_id, "customer id", max_length=MAX_CUSTOMER_ID)
        key = self.db.subject_key(customer_id)
        request_id = str(uuid.uuid4())
        with self.db.session() as s:
            row = s.execute(select(OptOut).where(OptOut.customer_id == customer_id)).scalar_one_or_none()
            changed = row is None
            if row is None:
                row = OptOut(customer_id=customer_id, subject_key=key, at=datetime.now(UTC), actor=actor)
                s.add(row)
                s.flush()
            at = row.at
            self.trail.append(
                "subject.opt_out",
                actor=actor,
                subject=f"request:{request_id}",
                payload={"request_id": request_id, "changed": changed},
                customer_id=customer_id,
                session=s,
            )
        return {"request_id": request_id, "opted_out": True, "changed": changed, "since": _stamp(at)}

    def opt_in(self, customer_id: str, *, actor: str) -> dict[str, Any]:
        """Withdraw the customer's opt-out (idempotent): automated decisions apply again."""
        from sqlalchemy import delete

        from ._tables import OptOut

        check_text(customer_id, "customer id", max_length=MAX_CUSTOMER_ID)
        request_id = str(uuid.uuid4())
        with self.db.session() as s:
            result = s.execute(
                delete(OptOut)
                .where(OptOut.customer_id == customer_id)
                .execution_options(synchronize_session=False)
            )
            changed = bool(result.rowcount)  # type: ignore[attr-defined]
            self.trail.append(
                "subject.opt_in",
                actor=actor,
                subject=f"request:{request_id}",
                payload={"request_id": request_id, "changed": changed},
                customer_id=customer_id,
                session=s,
            )
        return {"request_id": request_id, "opted_out": False, "changed": changed}

    def opted_out(self, customer_id: str) -> bool:
        """Whether the customer opted out (one row read)."""
        from ._tables import OptOut

        check_text(customer_id, "customer id", max_length=MAX_CUSTOMER_ID)
        with self.db.session(readonly=True) as s:
            return s.get(OptOut, customer_id) is not None


# --- the review items of a customer ------------------------------------------------------------------------


def _items_clause(customer_id: str, key: str) -> ColumnElement[bool]:
    from sqlalchemy import or_

    from ._tables import ReviewItem

    return or_(ReviewItem.customer_id == customer_id, ReviewItem.subject_key == key)


def _items_query(customer_id: str, key: str) -> Any:
    from sqlalchemy import select

    from ._tables import ReviewItem

    return (
        select(ReviewItem)
        .where(_items_clause(customer_id, key))
        .order_by(ReviewItem.created_at, ReviewItem.id)
    )


def _item_json(row: Any) -> dict[str, Any]:
    """A review item's every column, its JSON columns parsed and its times in ISO 8601."""
    out: dict[str, Any] = {}
    for column in row.__table__.columns:
        value = getattr(row, column.key)
        if column.key in _JSON_COLUMNS and value is not None:
            value = json.loads(value)
        elif isinstance(value, datetime):
            value = _stamp(value)
        out[column.key] = value
    return out


# --- a customer table --------------------------------------------------------------------------------------


def _table_rows(table: str | Path, contract: Contract, customer_id: str) -> dict[str, Any]:
    """The customer's rows of a table, JSON-ready (the contract's primary key names the id column; a key
    of several columns matches on its first)."""
    from engage.errors import DataError
    from engage.tables import read_table

    id_column = contract.primary_key[0]
    frame = read_table(table)
    if id_column not in frame.columns:
        raise DataError(f"{table}: no column {id_column!r} (the contract's primary key)")
    mine = frame[frame[id_column].astype("string") == customer_id]
    rows: list[dict[str, Any]] = json.loads(mine.to_json(orient="records", date_format="iso"))
    return {"source": str(table), "id_column": id_column, "rows": rows}
