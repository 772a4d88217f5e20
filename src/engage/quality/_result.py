"""What the data-quality gate decided: the verdict, the result of one run and its ``report.json``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from engage.contract import Contract

from ._remediate import Action, Remediated
from ._report import QualityReport
from ._validate import Validation

__all__ = ["GateReport", "GateResult", "Verdict"]

Verdict = Literal["pass", "pass_after_remediation", "fail"]


class GateReport(BaseModel):
    """``report.json``: what the gate decided and why, with everything it checked and did."""

    verdict: Verdict
    reason: str
    input_sha256: str | None
    rows_in: int
    rows_out: int
    rows_quarantined: int
    remediation: list[Action]
    remediated_critical_failures: list[str]
    quality: QualityReport


@dataclass
class GateResult:
    contract: Contract
    validation: Validation
    verdict: Verdict
    reason: str
    input_sha256: str | None = None
    remediated: Remediated | None = None
    outputs: dict[str, Path] = field(default_factory=dict)

    @property
    def report(self) -> QualityReport:
        return self.validation.report

    @property
    def actions(self) -> list[Action]:
        return self.remediated.actions if self.remediated else []

    @property
    def rows_out(self) -> int:
        return len(self.remediated.table) if self.remediated else self.report.rows

    @property
    def rows_quarantined(self) -> int:
        return len(self.remediated.quarantine) if self.remediated else 0

    def gate_report(self) -> GateReport:
        after = self.remediated.after.report.critical_failures if self.remediated else []
        return GateReport(
            verdict=self.verdict,
            reason=self.reason,
            input_sha256=self.input_sha256,
            rows_in=self.report.rows,
            rows_out=self.rows_out,
            rows_quarantined=self.rows_quarantined,
            remediation=self.actions,
            remediated_critical_failures=[r.id for r in after],
            quality=self.report,
        )
