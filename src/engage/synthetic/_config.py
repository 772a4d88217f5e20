"""Configuration of the synthetic customer generator.

`SyntheticConfig` is the whole input of :func:`engage.synthetic.generate_customers`: the number of
rows, the seed, the snapshot time, the rate of each injected data-quality defect and the two knobs
that make the table harder to model fairly (``bias``) or stably over time (``drift``).
`DefectKind` names the defects and `DEFECT_CHECKS` tells which contract check must find each one,
so the data-quality code can measure its recall against the generator's ground truth.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["DEFECT_CHECKS", "MAX_DEFECT_RATE", "DefectKind", "SyntheticConfig"]

MAX_DEFECT_RATE = 0.2
"""Highest rate a single defect kind may have."""


class DefectKind(StrEnum):
    """A data-quality defect the generator can inject into otherwise clean rows."""

    duplicate = "duplicate"
    signup_after_activity = "signup_after_activity"
    impossible_age = "impossible_age"
    bad_email = "bad_email"
    bad_phone = "bad_phone"
    negative_money = "negative_money"
    inconsistent_total = "inconsistent_total"
    sessions_inconsistent = "sessions_inconsistent"
    bad_country = "bad_country"
    missing_value = "missing_value"


DEFECT_CHECKS: dict[DefectKind, str] = {
    DefectKind.duplicate: "BR-001",
    DefectKind.signup_after_activity: "BR-002",
    DefectKind.impossible_age: "BR-003",
    DefectKind.bad_email: "BR-004",
    DefectKind.bad_phone: "BR-005",
    DefectKind.negative_money: "BR-006",
    DefectKind.inconsistent_total: "BR-007",
    DefectKind.sessions_inconsistent: "BR-008",
    DefectKind.bad_country: "BR-009",
    DefectKind.missing_value: "not_null",
}
"""The contract check (rule id, or ``not_null`` for the column nullability check) that finds each kind."""


class SyntheticConfig(BaseModel):
    """What to generate.

    ``defects`` maps a kind to the share of rows to spoil with it (each in ``[0, 0.2]``); spoiled rows
    are disjoint across kinds, and a duplicate also needs its clean original, so the rates (the
    duplicate rate counted twice) must add up to at most 1. ``bias`` in ``[0, 1]`` makes the protected
    group ``female`` behave and be labelled differently (0: gender influences nothing); ``drift`` in
    ``[0, 1]`` shifts the distributions of the most recent quarter of signups (0: no shift).

    ``snapshots`` > 1 makes the table a stack of extracts taken ``snapshot_every_days`` apart, the last
    one at ``as_of``: the ``rows`` are shared evenly between them, each extract is its own population
    observed (features) and followed (labels) from its own ``snapshot_at``, and customer ids never
    repeat. That is the table a model is trained on in production: earlier extracts whose labels have
    matured, and the latest one to test on, with customers of every tenure in each.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    rows: int = Field(ge=1, description="Number of customers (before duplicate copies are appended)")
    seed: int = Field(default=0, ge=0, description="Seed of every random stream")
    as_of: datetime = Field(description="Snapshot time, timezone-aware; stored in UTC")
    defects: dict[DefectKind, float] = Field(default_factory=dict, description="Rate of each defect kind")
    bias: float = Field(default=0.0, ge=0.0, le=1.0, description="Strength of the bias against 'female'")
    drift: float = Field(default=0.0, ge=0.0, le=1.0, description="Strength of the late-cohort drift")
    snapshots: int = Field(
        default=1, ge=1, le=36, description="Monthly extracts in the table; the last one is taken at as_of"
    )
    snapshot_every_days: int = Field(default=30, ge=1, le=366, description="Days between two extracts")

    @field_validator("as_of")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
            raise ValueError("as_of must be timezone-aware (a naive datetime is ambiguous)")
        return value.astimezone(UTC)

    @field_validator("defects")
    @classmethod
    def _rates(cls, value: dict[DefectKind, float]) -> dict[DefectKind, float]:
        for kind, rate in value.items():
            if not 0.0 <= rate <= MAX_DEFECT_RATE:
                raise ValueError(
                    f"defect rate for {kind.value} must be in [0, {MAX_DEFECT_RATE}], got {rate}"
                )
        return value

    @model_validator(mode="after")
    def _rows_available(self) -> SyntheticConfig:
        share = sum(self.defects.values()) + self.defects.get(DefectKind.duplicate, 0.0)
        if share > 1.0:
            raise ValueError(
                f"defect rates need {share:.2f} of the rows (duplicates count twice); at most 1.0 is possible"
            )
        return self
