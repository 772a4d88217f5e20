"""Typed model of a data contract (``contracts/*.yml``).

A contract describes one customer table: its columns (type, role, unit, nullability, bounds,
categories), primary key, event-time column, the prediction targets it carries, attributes that must
never be features, and the business (BR) and ML rules a table must satisfy. Every Engage component
reads columns through a contract; no code outside the synthetic generator names a column.

The model only checks the shape of each part. References between parts (a rule naming a column that
does not exist, a target without a column) are checked by :func:`engage.contract.load_contract`, which
reports them with the key path that holds the bad reference.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

__all__ = [
    "Check",
    "Column",
    "ColumnType",
    "Contract",
    "Dimension",
    "EventTime",
    "FairnessScope",
    "Remediation",
    "Role",
    "Rule",
    "Severity",
    "Target",
    "Task",
    "Timing",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class ColumnType(StrEnum):
    """Logical type of a column; each maps to one in-memory dtype (see :mod:`engage.tables`)."""

    string = "string"
    integer = "integer"
    float = "float"
    boolean = "boolean"
    date = "date"
    datetime = "datetime"
    category = "category"

    @property
    def is_numeric(self) -> bool:
        return self in (ColumnType.integer, ColumnType.float)

    @property
    def is_temporal(self) -> bool:
        return self in (ColumnType.date, ColumnType.datetime)


class Role(StrEnum):
    """What a column is for. Only ``feature`` columns ever reach a model."""

    id = "id"
    feature = "feature"
    target = "target"
    protected = "protected"  # measured for fairness only, never a model input
    prohibited = "prohibited"  # kept in the table for audit at most; never used
    pii = "pii"  # personal data: never a feature, masked in every log and report
    metadata = "metadata"
    event_time = "event_time"


class Timing(StrEnum):
    """When a column's value becomes known, relative to the label window."""

    before_label_window = "before_label_window"
    after_label_window = "after_label_window"


class Severity(StrEnum):
    critical = "critical"  # a failure stops the run
    warning = "warning"  # a failure is reported; the run goes on


class Dimension(StrEnum):
    """The six data-quality dimensions every check is filed under."""

    accuracy = "accuracy"
    completeness = "completeness"
    consistency = "consistency"
    timeliness = "timeliness"
    uniqueness = "uniqueness"
    validity = "validity"


class Task(StrEnum):
    regression = "regression"
    binary_classification = "binary_classification"


class Distribution(StrEnum):
    """What a regression target looks like; the trainer picks the learning objective from it."""

    #: any real value: squared error
    continuous = "continuous"
    #: a score in [0, 1]: cross-entropy on the continuous label, so predictions stay in [0, 1]
    unit_interval = "unit_interval"
    #: money and counts: >= 0, a mass at zero and a long right tail (Tweedie objective)
    heavy_tailed = "heavy_tailed"


_NUMERIC = (ColumnType.integer, ColumnType.float)


class Column(_Strict):
    """One column of the table."""

    type: ColumnType
    role: Role
    description: str = Field(min_length=1)
    unit: str | None = None
    nullable: bool = False
    #: a critical feature: ML-001's null-rate limit applies to it
    critical: bool = False
    timing: Timing = Timing.before_label_window
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = Field(default=None, min_length=1)
    #: group edges for a numeric protected attribute (fairness reports group by them)
    bins: list[float] | None = Field(default=None, min_length=3)
    #: remediation: fill empty values of a nullable column (median / mean / mode, or constant impute_value)
    impute: Literal["median", "mean", "mode", "constant"] | None = None
    impute_value: float | str | bool | None = None
    #: remediation: clip values to the column's bounds (declared min / max and range rules on it)
    cap: bool = False
    #: False for a feature nobody can change by acting (country, signup channel, tenure): counterfactual
    #: explanations never vary it
    mutable: bool = True
    #: spellings read as true / false when the table is CSV (case-insensitive)
    true_values: list[str] = Field(default_factory=lambda: ["true", "1", "yes", "y", "t"])
    false_values: list[str] = Field(default_factory=lambda: ["false", "0", "no", "n", "f"])

    def constraints(self) -> list[str]:
        """The column's declared constraints and remediation settings, as short phrases."""
        out = []
        if self.min is not None or self.max is not None:
            lo = "" if self.min is None else f"{self.min:g}"
            hi = "" if self.max is None else f"{self.max:g}"
            out.append(f"[{lo}, {hi}]")
        if self.categories:
            out.append("{" + ", ".join(self.categories) + "}")
        if self.bins:
            out.append("bins " + ", ".join(f"{b:g}" for b in self.bins))
        if self.critical:
            out.append("critical")
        if self.cap:
            out.append("remediation: cap")
        if not self.mutable:
            out.append("immutable")
        if self.impute:
            value = f" {self.impute_value}" if self.impute_value is not None else ""
            out.append(f"remediation: impute {self.impute}{value}")
        return out

    @model_validator(mode="after")
    def _consistent(self) -> Column:
        if (self.min is not None or self.max is not None) and self.type not in _NUMERIC:
            raise ValueError(f"min/max need a numeric type (integer or float), not {self.type.value}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        if self.categories is not None:
            if self.type not in (ColumnType.category, ColumnType.string):
                raise ValueError(f"categories need type category or string, not {self.type.value}")
            if len(set(self.categories)) != len(self.categories):
                raise ValueError("categories repeat a value")
        if self.bins is not None:
            if self.role is not Role.protected or self.type not in _NUMERIC:
                raise ValueError("bins are only for a numeric protected attribute")
            if any(hi <= lo for lo, hi in zip(self.bins, self.bins[1:], strict=False)):
                raise ValueError("bins must be strictly increasing")
        if self.critical and self.role is not Role.feature:
            raise ValueError("critical applies to feature columns only")
        if not self.mutable and self.role is not Role.feature:
            raise ValueError("mutable applies to feature columns only (other roles are never model inputs)")
        if self.impute is not None and not self.nullable:
            raise ValueError(
                "impute applies to nullable columns only (empty values elsewhere are quarantined)"
            )
        if (self.impute == "constant") != (self.impute_value is not None):
            raise ValueError(
                "impute: constant goes with impute_value, and impute_value with impute: constant"
            )
        if self.impute in ("median", "mean") and self.type not in _NUMERIC:
            raise ValueError(f"impute: {self.impute} needs a numeric column, not {self.type.value}")
        if self.cap and self.type not in _NUMERIC:
            raise ValueError("cap needs a numeric column")
        return self


class EventTime(_Strict):
    """The column that says when each row was observed; freshness is measured on it."""

    column: str
    max_age_hours: float = Field(gt=0)


class Target(_Strict):
    """One prediction head and the column that holds its label."""

    column: str
    task: Task
    #: the label value that counts as positive (binary classification only)
    positive: bool | int | str | None = None
    #: the shape of a regression target (regression only)
    distribution: Distribution = Distribution.continuous
    #: what the prediction is called in plain language ("churn risk"); default: the head's name
    display_name: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _positive(self) -> Target:
        if self.task is Task.binary_classification and self.positive is None:
            raise ValueError("a binary_classification target needs `positive` (the positive label value)")
        if self.task is Task.regression and self.positive is not None:
            raise ValueError("`positive` applies to binary_classification targets only")
        if self.task is Task.binary_classification and self.distribution is not Distribution.continuous:
            raise ValueError("`distribution` applies to regression targets only")
        return self


# ---- checks: one model per kind, told apart by `kind` -------------------------------------------

_Columns = Annotated[list[str], Field(min_length=1)]


class _CheckBase(_Strict):
    def columns_referenced(self) -> Iterator[tuple[str, str]]:
        """Yield ``(field path, column name)`` for every column this check names."""
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name in _COLUMN_FIELDS:
                if isinstance(value, str):
                    yield name, value
                elif isinstance(value, list):
                    for i, col in enumerate(value):
                        yield f"{name}.{i}", col


_COLUMN_FIELDS = frozenset(
    {"columns", "column", "left", "right", "total", "parts", "dates_before_event_time"}
)


class UniqueCheck(_CheckBase):
    """No two rows share the values of ``columns``."""

    kind: Literal["unique"]
    columns: _Columns


class CompareCheck(_CheckBase):
    """Row by row, ``left op right`` holds (rows where either side is empty are not judged)."""

    kind: Literal["compare"]
    left: str
    op: Literal["<", "<=", "==", "!=", ">=", ">"]
    right: str


class RangeCheck(_CheckBase):
    """Every non-empty value of ``columns`` lies in ``[min, max]``."""

    kind: Literal["range"]
    columns: _Columns
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _bounds(self) -> RangeCheck:
        if self.min is None and self.max is None:
            raise ValueError("a range check needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class PatternCheck(_CheckBase):
    """Every non-empty value of ``column`` matches ``regex`` in full."""

    kind: Literal["pattern"]
    column: str
    regex: str

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as e:
            raise ValueError(f"not a valid regular expression: {e}") from e
        return value


class SumEqualsCheck(_CheckBase):
    """``total`` equals the sum of ``parts`` within ``tolerance``."""

    kind: Literal["sum_equals"]
    total: str
    parts: _Columns
    tolerance: float = Field(default=0.0, ge=0)


class InSetCheck(_CheckBase):
    """Every non-empty value of ``column`` is one of ``values``."""

    kind: Literal["in_set"]
    column: str
    values: Annotated[list[str | int | float | bool], Field(min_length=1)]


class CountryCodeCheck(_CheckBase):
    """Every non-empty value of ``column`` is an ISO 3166-1 country code."""

    kind: Literal["country_code"]
    column: str
    standard: Literal["alpha_2", "alpha_3"] = "alpha_2"


class FreshnessCheck(_CheckBase):
    """The newest event time is at most ``max_age_hours`` old (defaults: the contract's event_time)."""

    kind: Literal["freshness"]
    column: str | None = None
    max_age_hours: float | None = Field(default=None, gt=0)


class NullRateCheck(_CheckBase):
    """Each of ``columns`` (default: the critical features) is at most ``max`` empty."""

    kind: Literal["null_rate"]
    max: float = Field(ge=0, le=1)
    columns: list[str] | None = None


class LabelBalanceCheck(_CheckBase):
    """The positive share of a classification target lies in ``[min, max]``."""

    kind: Literal["label_balance"]
    target: str
    min: float = Field(ge=0, le=1)
    max: float = Field(ge=0, le=1)


class ZeroVarianceCheck(_CheckBase):
    """No column of ``columns`` (default: the features) holds a single value."""

    kind: Literal["zero_variance"]
    columns: list[str] | None = None


class NoLeakageCheck(_CheckBase):
    """No feature is known only after the label window opens, and no listed date is after event time."""

    kind: Literal["no_leakage"]
    dates_before_event_time: list[str] = Field(default_factory=list)


class NoProhibitedFeaturesCheck(_CheckBase):
    """No feature is, or is named after, a prohibited attribute."""

    kind: Literal["no_prohibited_features"]


class ProxyAssociationCheck(_CheckBase):
    """Features associated with a protected attribute above ``threshold`` are flagged as proxies.

    The measure fits each pair of types: |Spearman rho| for two numeric columns, the correlation ratio
    (eta) for numeric against categorical, bias-corrected Cramer's V for two categorical columns.
    """

    kind: Literal["proxy_association"]
    threshold: float = Field(gt=0, le=1)
    #: rows sampled for the measure (seeded); associations are stable long before a million rows
    sample_rows: int = Field(default=200_000, ge=1_000)


Check = Annotated[
    UniqueCheck
    | CompareCheck
    | RangeCheck
    | PatternCheck
    | SumEqualsCheck
    | InSetCheck
    | CountryCodeCheck
    | FreshnessCheck
    | NullRateCheck
    | LabelBalanceCheck
    | ZeroVarianceCheck
    | NoLeakageCheck
    | NoProhibitedFeaturesCheck
    | ProxyAssociationCheck,
    Field(discriminator="kind"),
]


class Rule(_Strict):
    """A business (BR-nnn) or ML (ML-nnn) rule: what it means, how bad a failure is, and its check."""

    id: str = Field(pattern=r"^[A-Z][A-Z0-9]*-[0-9]{3}$")
    description: str = Field(min_length=1)
    severity: Severity
    dimension: Dimension
    check: Check


class Remediation(_Strict):
    """What the quality gate may repair, and how much it may set aside."""

    #: among rows sharing a primary key, keep the one with the latest event time (or the first row)
    keep: Literal["latest", "first"] = "latest"
    #: rows breaking a critical row-level check go to a quarantine file instead of the clean table
    quarantine: bool = True
    #: the gate fails when more than this share of rows would be quarantined
    max_quarantine_share: float = Field(default=0.05, ge=0, le=1)


#: the message of a ``fairness`` section that turns fairness off without saying why (tests match it whole)
FAIRNESS_REASON_REQUIRED = (
    "a non-empty reason is required when applicable is false (why fairness does not apply to the models "
    "of this table; the model card and the registry's audit record carry it)"
)


class FairnessScope(_Strict):
    """Whether fairness applies to the models of this table: a decision of the contract's owner.

    ``applicable: false`` (with a ``reason``) is for a table about no people, or about people with no
    protected attribute the owner may hold: the fairness gate then says ``not_applicable`` with the
    reason, and the model ships unmitigated. Without this section a contract with no protected column
    cannot pass the fairness gate.
    """

    applicable: bool = True
    #: why fairness does not apply (required when ``applicable`` is false); shown in the card and audit
    reason: str | None = Field(default=None, validate_default=True)

    @field_validator("reason")
    @classmethod
    def _reason_given(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("applicable") is False and not value:
            raise ValueError(FAIRNESS_REASON_REQUIRED)
        return value


class Contract(_Strict):
    """A whole data contract. Load one with :func:`engage.contract.load_contract`."""

    contract: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Name of the table")
    version: str = Field(pattern=r"^\d+\.\d+\.\d+$")
    description: str = Field(min_length=1)
    owner: str = Field(min_length=1)
    primary_key: Annotated[list[str], Field(min_length=1)]
    event_time: EventTime | None = None
    label_window_days: int | None = Field(default=None, gt=0)
    #: the column that orders customers from earlier to later cohorts (training splits on it)
    cohort: str | None = None
    #: the column of each customer's latest activity: a date / datetime (the last active day) or a
    #: number of days since it; the business metrics count active customers (DAU, WAU, MAU) from it
    last_active: str | None = None
    columns: Annotated[dict[str, Column], Field(min_length=1)]
    targets: dict[str, Target] = Field(default_factory=dict)
    prohibited_attributes: list[str] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)
    remediation: Remediation = Field(default_factory=Remediation)
    #: whether fairness applies (default: it does, measured on the ``role: protected`` columns)
    fairness: FairnessScope = Field(default_factory=FairnessScope)

    # ---- views by role; every consumer asks the contract instead of naming columns --------------

    def by_role(self, role: Role) -> list[str]:
        return [name for name, col in self.columns.items() if col.role is role]

    @property
    def features(self) -> list[str]:
        return self.by_role(Role.feature)

    @property
    def critical_features(self) -> list[str]:
        return [name for name in self.features if self.columns[name].critical]

    @property
    def protected(self) -> list[str]:
        return self.by_role(Role.protected)

    @property
    def fairness_applicable(self) -> bool:
        """False when the contract states that fairness does not apply (``fairness.applicable: false``)."""
        return self.fairness.applicable

    @property
    def pii(self) -> list[str]:
        return self.by_role(Role.pii)

    def bounds(self, column: str) -> tuple[float | None, float | None]:
        """The tightest bounds the contract sets on ``column``: its own min / max and every range rule."""
        col = self.columns[column]
        lows = [col.min] + [
            r.check.min for r in self.rules if isinstance(r.check, RangeCheck) and column in r.check.columns
        ]
        highs = [col.max] + [
            r.check.max for r in self.rules if isinstance(r.check, RangeCheck) and column in r.check.columns
        ]
        lo = max((v for v in lows if v is not None), default=None)
        hi = min((v for v in highs if v is not None), default=None)
        return lo, hi

    def rule(self, rule_id: str) -> Rule:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(rule_id)
