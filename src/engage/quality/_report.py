"""The result schema of a quality run: one :class:`CheckResult` per check, gathered in a report."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from engage.contract import Dimension, Severity

__all__ = ["CheckResult", "QualityReport"]


class CheckResult(BaseModel):
    """What one check found. Row-level checks fill ``failing_rows`` and ``sample_keys``."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="Rule id (BR-001) or schema check id (schema.<column>.<check>)")
    description: str
    kind: str
    severity: Severity
    dimension: Dimension
    passed: bool
    observed: float | None = Field(default=None, description="The measured figure the threshold applies to")
    threshold: float | None = None
    failing_rows: int | None = None
    columns: list[str] = Field(default_factory=list)
    sample_keys: list[str] = Field(
        default_factory=list, description="Primary keys of failing rows, PII masked"
    )
    details: dict[str, float] = Field(default_factory=dict)
    message: str
    engine: str = Field(
        default="engage", description="Who gave the verdict: great_expectations (its suite) or engage (code)"
    )


class QualityReport(BaseModel):
    """All check results of one table against one contract."""

    contract: str
    contract_version: str
    source: str | None = None
    rows: int
    columns: int
    checked_at: datetime
    results: list[CheckResult]

    @property
    def critical_failures(self) -> list[CheckResult]:
        return [r for r in self.results if not r.passed and r.severity is Severity.critical]

    @property
    def warnings(self) -> list[CheckResult]:
        return [r for r in self.results if not r.passed and r.severity is Severity.warning]

    @property
    def passed(self) -> bool:
        """True when no critical check failed (warnings do not fail a run)."""
        return not self.critical_failures

    def result(self, check_id: str) -> CheckResult:
        for r in self.results:
            if r.id == check_id:
                return r
        raise KeyError(check_id)
