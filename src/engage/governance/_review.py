"""The human review queue: records a person checks, decisions (approve or override), overrides delivered.

Filled two ways: a pipeline run's stratified sample (``source="sample"``), and edge cases the predictor
meets (``source="edge"``: a score near a decision threshold, an outlier, a customer who opted out of
automated decisions). A reviewer approves or overrides with a reason; an override is audited in the same
transaction and returned with that customer's next prediction (then marked delivered).

- :meth:`ReviewQueue.add` is one bulk ``INSERT`` and one audit record per call (counts by source and
  reason, never a customer id); an edge item whose customer already has a pending item of the same
  reason is skipped (one query for the batch).
- :meth:`ReviewQueue.decide` is one conditional ``UPDATE … WHERE id = ? AND status = 'pending' AND
  lock_version = ?``: of two reviewers deciding one item at once exactly one matches the row, the other
  is told 409. The same statement on SQLite and PostgreSQL; its audit record commits with it.
- :meth:`ReviewQueue.claim` marks overrides delivered only where no one else did first (the predictor
  returns an override exactly once, even to two requests at the same moment).

The tables' personal data (customer id, features, prediction) stay in ``review_items``, which an erasure
clears; the audit trail gets the keyed hash of the customer (``subject_key``) and no id, no features.
"""

from __future__ import annotations

import json
import math
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, cast

from engage.errors import GovernanceError

from ._audit import AuditTrail, utc
from ._db import Database

if TYPE_CHECKING:
    from sqlalchemy import Table
    from sqlalchemy.orm import Session

__all__ = ["NewReviewItem", "ReviewItemView", "ReviewLookup", "ReviewQueue"]

Decision = Literal["approve", "override"]
#: (``ReviewQueue.list`` shadows the builtin inside the class)
_Ids = list[str]

#: what an item's status can be
STATUSES = ("pending", "approved", "overridden")
SOURCES = ("sample", "edge")
#: the most items one ``list`` returns
MAX_LIMIT = 10_000
#: customer ids per ``IN (…)`` (under SQLite's 32,766 and PostgreSQL's 65,535 bound parameters); a
#: request of the predictor (10,000 rows at most) is one query
_IN_CHUNK = 10_000
#: the actors of the records the predictor and the pipeline's sample step append
PREDICTOR = "engage-predictor"
PIPELINE = "engage-pipeline"


@dataclass(frozen=True)
class NewReviewItem:
    """One record to put in the queue."""

    source: Literal["sample", "edge"]
    reason: str  # stratified_sample | near_threshold | outlier | opted_out
    customer_id: str | None
    features: Mapping[str, Any] = field(default_factory=dict)
    prediction: Mapping[str, Any] = field(default_factory=dict)
    explanation: Mapping[str, Any] | None = None
    run_id: str | None = None
    model_version: str | None = None
    stratum: str | None = None


@dataclass(frozen=True)
class ReviewItemView:
    """A queue item as read back (JSON-ready through :meth:`to_json`)."""

    id: str
    source: str
    reason: str
    customer_id: str | None
    status: str  # pending | approved | overridden
    features: dict[str, Any]
    prediction: dict[str, Any]
    explanation: dict[str, Any] | None
    override: dict[str, Any] | None
    run_id: str | None
    model_version: str | None
    stratum: str | None
    decided_by: str | None
    decision_reason: str | None
    decided_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime
    lock_version: int

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source": self.source,
            "reason": self.reason,
            "customer_id": self.customer_id,
            "status": self.status,
            "features": self.features,
            "prediction": self.prediction,
            "explanation": self.explanation,
            "override": self.override,
            "run_id": self.run_id,
            "model_version": self.model_version,
            "stratum": self.stratum,
            "decided_by": self.decided_by,
            "decision_reason": self.decision_reason,
            "decided_at": _stamp(self.decided_at),
            "delivered_at": _stamp(self.delivered_at),
            "created_at": _stamp(self.created_at),
            "lock_version": self.lock_version,
        }


@dataclass(frozen=True)
class ReviewLookup:
    """What the predictor needs to know of a request's customers: who opted out of automated decisions,
    and the newest undelivered override of each (by customer id)."""

    opted_out: set[str]
    overrides: dict[str, ReviewItemView]


class ReviewQueue:
    """The review queue of one governance database; decisions go to ``trail`` (the same database)."""

    def __init__(self, db: Database, trail: AuditTrail | None = None) -> None:
        self.db = db
        self.trail = trail or AuditTrail(db)

    def __repr__(self) -> str:
        return f"ReviewQueue({self.db.name!r})"

    def _key_ready(self) -> None:
        """Read the subject-key secret before a write transaction needs it: on SQLite, reading it on a
        second connection inside one (``Database.subject_key``'s own session) would wait for the first."""
        self.db.subject_key("")

    # --- filling ---------------------------------------------------------------------------------------

    def add(self, items: Sequence[NewReviewItem]) -> list[str]:
        """Insert items in one transaction (bulk); returns their ids. Edge items for a customer that
        already has a pending item of the same reason are skipped (their id is not returned).

        One audit record a call (``review.enqueued``; subject ``run:<run_id>`` for a run's sample, else
        ``review:edge``) counting the items by source and reason; no record when nothing was added."""
        from sqlalchemy import insert, select

        from ._tables import ReviewItem

        if not items:
            return []
        for item in items:
            _check_new(item)
        now = datetime.now(UTC)
        self._key_ready()
        with self.db.session() as s:
            edge = {(str(i.customer_id), i.reason) for i in items if _dedupes(i)}
            pending: set[tuple[str, str]] = set()
            if edge:
                reasons = sorted({reason for _, reason in edge})
                for chunk in _chunks(sorted({c for c, _ in edge})):
                    rows = s.execute(
                        select(ReviewItem.customer_id, ReviewItem.reason).where(
                            ReviewItem.customer_id.in_(chunk),
                            ReviewItem.reason.in_(reasons),
                            ReviewItem.status == "pending",
                        )
                    )
                    pending.update((str(c), str(r)) for c, r in rows)
            keys: dict[str, str] = {}
            rows_in: list[dict[str, Any]] = []
            added: Counter[tuple[str, str]] = Counter()
            skipped: Counter[tuple[str, str]] = Counter()
            for item in items:
                customer = None if item.customer_id is None else str(item.customer_id)
                if _dedupes(item):
                    key = (str(customer), item.reason)
                    if key in pending:
                        skipped[(item.source, item.reason)] += 1
                        continue
                    pending.add(key)  # a second one in the same batch is a duplicate too
                subject_key = None
                if customer is not None:
                    subject_key = keys.get(customer)
                    if subject_key is None:
                        subject_key = keys[customer] = self.db.subject_key(customer)
                rows_in.append(
                    {
                        "id": str(uuid.uuid4()),
                        "customer_id": customer,
                        "subject_key": subject_key,
                        "source": item.source,
                        "reason": item.reason,
                        "run_id": item.run_id,
                        "model_version": item.model_version,
                        "stratum": item.stratum,
                        "features": _dumps(item.features, "features"),
                        "prediction": _dumps(item.prediction, "prediction"),
                        "explanation": None
                        if item.explanation is None
                        else _dumps(item.explanation, "explanation"),
                        "status": "pending",
                        "override": None,
                        "decided_by": None,
                        "decision_reason": None,
                        "decided_at": None,
                        "delivered_at": None,
                        "created_at": now,
                        "lock_version": 1,
                    }
                )
                added[(item.source, item.reason)] += 1
            if not rows_in:
                return []
            s.execute(insert(_table()), rows_in)
            runs = sorted({str(i.run_id) for i in items if i.run_id is not None})
            subject = f"run:{runs[0]}" if len(runs) == 1 else "review:edge"
            payload: dict[str, Any] = {
                "added": len(rows_in),
                "skipped_duplicates": sum(skipped.values()),
                "by_source_reason": _counts(added),
                "skipped_by_source_reason": _counts(skipped),
                "runs": runs,
                "model_versions": sorted({i.model_version for i in items if i.model_version}),
            }
            self.trail.append(
                "review.enqueued",
                actor=PREDICTOR if all(i.source == "edge" for i in items) else PIPELINE,
                subject=subject,
                payload=payload,
                session=s,
            )
        return [r["id"] for r in rows_in]

    # --- reading ---------------------------------------------------------------------------------------

    def list(
        self,
        *,
        status: str | None = "pending",
        source: str | None = None,
        run_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[ReviewItemView]:
        """Items oldest first, filtered by status, source and run; ``limit`` 1..10,000."""
        from sqlalchemy import select

        from ._tables import ReviewItem

        if status is not None and status not in STATUSES:
            raise GovernanceError(
                f"review status {status!r}: expected one of {', '.join(STATUSES)}", http_status=400
            )
        if source is not None and source not in SOURCES:
            raise GovernanceError(
                f"review source {source!r}: expected one of {', '.join(SOURCES)}", http_status=400
            )
        if not 1 <= limit <= MAX_LIMIT or offset < 0:
            raise GovernanceError(
                f"limit must lie in 1..{MAX_LIMIT} and offset be at least 0 (got {limit}, {offset})",
                http_status=400,
            )
        query = select(ReviewItem).order_by(ReviewItem.created_at, ReviewItem.id)
        if status is not None:
            query = query.where(ReviewItem.status == status)
        if source is not None:
            query = query.where(ReviewItem.source == source)
        if run_id is not None:
            query = query.where(ReviewItem.run_id == run_id)
        with self.db.session(readonly=True) as s:
            return [_view(r) for r in s.execute(query.limit(limit).offset(offset)).scalars()]

    def get(self, item_id: str) -> ReviewItemView:
        """GovernanceError 404 when there is no such item."""
        from ._tables import ReviewItem

        with self.db.session(readonly=True) as s:
            row = s.get(ReviewItem, str(item_id))
            if row is None:
                raise _unknown(item_id)
            return _view(row)

    # --- deciding --------------------------------------------------------------------------------------

    def decide(
        self,
        item_id: str,
        *,
        reviewer: str,
        decision: Decision,
        reason: str,
        override: Mapping[str, Any] | None = None,
        expected_version: int | None = None,
    ) -> ReviewItemView:
        """Approve or override a pending item, audited in the same transaction.

        GovernanceError 409 when the item was decided already or ``expected_version`` is not its
        ``lock_version`` (two reviewers at once: exactly one wins); 400 for an override without values
        or a reason; 404 for an unknown item.
        """
        from sqlalchemy import select, update

        from ._tables import ReviewItem

        values = check_decision(decision, reviewer=reviewer, reason=reason, override=override)
        item_id = str(item_id)
        self._key_ready()
        with self.db.session() as s:
            row = s.get(ReviewItem, item_id)
            if row is None:
                raise _unknown(item_id)
            version = row.lock_version
            if row.status != "pending":
                raise _decided(item_id, row.status)
            if expected_version is not None and expected_version != version:
                raise GovernanceError(
                    f"review item {item_id} is at version {version}, not {expected_version}: someone "
                    "changed it since you read it; read it again",
                    http_status=409,
                )
            if values is not None and row.prediction:
                known = set(json.loads(row.prediction))
                unknown = sorted(set(values) - known) if known else []
                if unknown:
                    raise GovernanceError(
                        f"override of review item {item_id}: no output {', '.join(map(repr, unknown))} in "
                        f"its prediction (outputs: {', '.join(sorted(known))})",
                        http_status=400,
                    )
            now = datetime.now(UTC)
            status = "overridden" if decision == "override" else "approved"
            table = _table()
            result = s.execute(
                update(table)
                .where(table.c.id == item_id, table.c.status == "pending", table.c.lock_version == version)
                .values(
                    status=status,
                    override=None if values is None else _dumps(values, "override"),
                    decided_by=reviewer.strip(),
                    decision_reason=reason.strip(),
                    decided_at=now,
                    lock_version=version + 1,
                )
            )
            if int(result.rowcount or 0) != 1:  # type: ignore[attr-defined]
                raise GovernanceError(
                    f"review item {item_id} was decided by someone else at the same moment: read it "
                    "again", http_status=409,
                )  # fmt: skip
            self.trail.append(
                f"review.{decision}",
                actor=reviewer.strip(),
                subject=f"review:{item_id}",
                payload={
                    "reviewer": reviewer.strip(),
                    "decision": decision,
                    "reason": reason.strip(),
                    "override": values,
                    "model_version": row.model_version,
                    "run_id": row.run_id,
                    "source": row.source,
                    "review_reason": row.reason,
                    "lock_version": version + 1,
                },
                customer_id=row.customer_id,
                session=s,
            )
            fresh = s.execute(
                select(ReviewItem).where(ReviewItem.id == item_id).execution_options(populate_existing=True)
            ).scalar_one()
            return _view(fresh)

    # --- delivering overrides --------------------------------------------------------------------------

    def overrides_for(self, customer_ids: Sequence[str]) -> dict[str, ReviewItemView]:
        """The newest undelivered override of each of these customers (one query)."""
        with self.db.session(readonly=True) as s:
            return self._overrides(s, customer_ids)

    def mark_delivered(self, item_ids: Sequence[str]) -> None:
        """Record that these overrides were returned with a prediction (audited)."""
        self.claim(item_ids)

    def claim(self, item_ids: Sequence[str], *, actor: str = PREDICTOR) -> _Ids:
        """Mark these overrides delivered where nobody did before; returns the ids this call marked (the
        others were delivered already, perhaps by a request at the same moment). One transaction, one
        ``review.override_delivered`` record when any was marked."""
        from sqlalchemy import update

        ids = sorted({str(i) for i in item_ids})
        if not ids:
            return []
        table = _table()
        now = datetime.now(UTC)
        marked: _Ids = []
        with self.db.session() as s:
            for chunk in _chunks(ids):
                result = s.execute(
                    update(table)
                    .where(
                        table.c.id.in_(chunk),
                        table.c.status == "overridden",
                        table.c.delivered_at.is_(None),
                    )
                    .values(delivered_at=now)
                    .returning(table.c.id)
                )
                marked.extend(str(i) for (i,) in result)
            if marked:
                marked.sort()
                self.trail.append(
                    "review.override_delivered",
                    actor=actor,
                    subject="review:delivery",
                    payload={"items": marked, "count": len(marked)},
                    session=s,
                )
        return marked

    def opted_out(self, customer_ids: Sequence[str]) -> set[str]:
        """Which of these customers opted out of automated decisions (one query on ``opt_outs``)."""
        with self.db.session(readonly=True) as s:
            return self._opted_out(s, customer_ids)

    def lookup(self, customer_ids: Sequence[str]) -> ReviewLookup:
        """:meth:`opted_out` and :meth:`overrides_for` in one read transaction (what the predictor asks
        once per request)."""
        with self.db.session(readonly=True) as s:
            return ReviewLookup(self._opted_out(s, customer_ids), self._overrides(s, customer_ids))

    def _opted_out(self, s: Session, customer_ids: Sequence[str]) -> set[str]:
        from sqlalchemy import select

        from ._tables import OptOut

        found: set[str] = set()
        for chunk in _chunks(sorted({str(c) for c in customer_ids})):
            found.update(
                str(c)
                for c in s.execute(select(OptOut.customer_id).where(OptOut.customer_id.in_(chunk))).scalars()
            )
        return found

    def _overrides(self, s: Session, customer_ids: Sequence[str]) -> dict[str, ReviewItemView]:
        from sqlalchemy import select

        from ._tables import ReviewItem

        newest: dict[str, ReviewItemView] = {}
        for chunk in _chunks(sorted({str(c) for c in customer_ids})):
            rows = s.execute(
                select(ReviewItem)
                .where(
                    ReviewItem.customer_id.in_(chunk),
                    ReviewItem.status == "overridden",
                    ReviewItem.delivered_at.is_(None),
                )
                .order_by(ReviewItem.decided_at.desc(), ReviewItem.id)
            ).scalars()
            for row in rows:
                newest.setdefault(str(row.customer_id), _view(row))
        return newest


# --- checks --------------------------------------------------------------------------------------------


def check_decision(
    decision: str, *, reviewer: str, reason: str, override: Mapping[str, Any] | None
) -> dict[str, float] | None:
    """The override values of a valid decision (None for an approval); GovernanceError 400 naming
    what is wrong otherwise."""
    if decision not in ("approve", "override"):
        raise GovernanceError(f"decision {decision!r}: expected approve or override", http_status=400)
    if not isinstance(reviewer, str) or not reviewer.strip():
        raise GovernanceError("a decision needs the reviewer's name", http_status=400)
    if not isinstance(reason, str) or not reason.strip():
        raise GovernanceError("a decision needs a reason", http_status=400)
    if decision == "approve":
        if override:
            raise GovernanceError(
                "an approval keeps the prediction: override values go with decision override",
                http_status=400,
            )
        return None
    if not isinstance(override, Mapping) or not override:
        raise GovernanceError(
            "an override needs at least one output and its value (churn_probability=0.9)", http_status=400
        )
    values: dict[str, float] = {}
    for name, value in override.items():
        if not isinstance(name, str) or not name.strip():
            raise GovernanceError("an override's output needs a name", http_status=400)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise GovernanceError(
                f"override {name}: expected a finite number, got {value!r}", http_status=400
            )
        values[name.strip()] = float(value)
    return values


def parse_override(pairs: Sequence[str]) -> dict[str, float]:
    """``["churn_probability=0.9", ...]`` as a mapping; GovernanceError 400 naming a malformed pair."""
    values: dict[str, float] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            value = float(text)
        except ValueError:
            raise GovernanceError(
                f"override {pair!r}: expected OUTPUT=NUMBER such as churn_probability=0.9", http_status=400
            ) from None
        if not math.isfinite(value):
            raise GovernanceError(f"override {pair!r}: expected a finite number", http_status=400)
        values[name.strip()] = value
    return values


def _check_new(item: NewReviewItem) -> None:
    if item.source not in SOURCES:
        raise GovernanceError(
            f"review item source {item.source!r}: expected one of {', '.join(SOURCES)}", http_status=400
        )
    if not isinstance(item.reason, str) or not item.reason.strip() or len(item.reason) > 64:
        raise GovernanceError("a review item needs a reason (at most 64 characters)", http_status=400)
    if item.source == "edge" and item.customer_id is None:
        raise GovernanceError("an edge review item needs the customer's id", http_status=400)


def _dedupes(item: NewReviewItem) -> bool:
    return item.source == "edge" and item.customer_id is not None


def _dumps(value: Mapping[str, Any], what: str) -> str:
    try:
        return json.dumps(dict(value), separators=(",", ":"), allow_nan=False, default=str)
    except (TypeError, ValueError) as e:
        raise GovernanceError(f"review item {what} is not JSON: {e}", http_status=400) from None


def _counts(counter: Counter[tuple[str, str]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for (source, reason), n in sorted(counter.items()):
        out.setdefault(source, {})[reason] = n
    return out


def _chunks(values: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start : start + _IN_CHUNK]


def _table() -> Table:
    """The ``review_items`` table (Core statements: a conditional UPDATE reports its matched rows)."""
    from ._tables import ReviewItem

    return cast("Table", ReviewItem.__table__)


def _unknown(item_id: str) -> GovernanceError:
    return GovernanceError(f"no review item {item_id!r}", http_status=404)


def _decided(item_id: str, status: str) -> GovernanceError:
    return GovernanceError(
        f"review item {item_id} is {status} already: a decision is made once", http_status=409
    )


def _stamp(at: datetime | None) -> str | None:
    return None if at is None else utc(at).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _loads(text: str | None) -> dict[str, Any] | None:
    return None if text is None else dict(json.loads(text))


def _view(row: Any) -> ReviewItemView:
    return ReviewItemView(
        id=row.id,
        source=row.source,
        reason=row.reason,
        customer_id=row.customer_id,
        status=row.status,
        features=_loads(row.features) or {},
        prediction=_loads(row.prediction) or {},
        explanation=_loads(row.explanation),
        override=_loads(row.override),
        run_id=row.run_id,
        model_version=row.model_version,
        stratum=row.stratum,
        decided_by=row.decided_by,
        decision_reason=row.decision_reason,
        decided_at=None if row.decided_at is None else utc(row.decided_at),
        delivered_at=None if row.delivered_at is None else utc(row.delivered_at),
        created_at=utc(row.created_at),
        lock_version=int(row.lock_version),
    )
