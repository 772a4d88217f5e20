"""The human review queue: records a person checks, decisions (approve or override), overrides delivered.

Filled two ways: a pipeline run's stratified sample (``source="sample"``), and edge cases the predictor
meets (``source="edge"``: a score near a decision threshold, an outlier, a customer who opted out of
automated decisions). A reviewer approves or overrides with a reason; an override is audited in the same
transaction and returned with that customer's next prediction (then marked delivered).

INTERFACE SKELETON: the signatures below are the contract between the predictor, the pipeline step, the
CLI and the API; the bodies are being written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from ._audit import AuditTrail
from ._db import Database

__all__ = ["NewReviewItem", "ReviewItemView", "ReviewQueue"]

Decision = Literal["approve", "override"]


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
        raise NotImplementedError


class ReviewQueue:
    """The review queue of one governance database; decisions go to ``trail`` (the same database)."""

    def __init__(self, db: Database, trail: AuditTrail | None = None) -> None:
        self.db = db
        self.trail = trail or AuditTrail(db)

    def add(self, items: Sequence[NewReviewItem]) -> list[str]:
        """Insert items in one transaction (bulk); returns their ids. Edge items for a customer that
        already has a pending item of the same reason are skipped (their id is not returned)."""
        raise NotImplementedError

    def list(
        self,
        *,
        status: str | None = "pending",
        source: str | None = None,
        run_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[ReviewItemView]:
        raise NotImplementedError

    def get(self, item_id: str) -> ReviewItemView:
        """GovernanceError 404 when there is no such item."""
        raise NotImplementedError

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
        raise NotImplementedError

    def overrides_for(self, customer_ids: Sequence[str]) -> dict[str, ReviewItemView]:
        """The newest undelivered override of each of these customers (one query)."""
        raise NotImplementedError

    def mark_delivered(self, item_ids: Sequence[str]) -> None:
        """Record that these overrides were returned with a prediction (audited)."""
        raise NotImplementedError

    def opted_out(self, customer_ids: Sequence[str]) -> set[str]:
        """Which of these customers opted out of automated decisions (one query on ``opt_outs``)."""
        raise NotImplementedError
