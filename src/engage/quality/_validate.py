"""Check a table against its contract: the column schema first, then every BR / ML rule.

Schema checks come from the column declarations, one id per column and property:
``schema.<column>.type`` (values readable as the declared type), ``.not_null`` (columns not declared
nullable), ``.bounds`` (declared min / max) and ``.categories`` (declared categories). All of them are
critical. Rules are judged by :mod:`engage.quality._checks` with the severity the contract gives them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engage.contract import Column, Contract, Dimension, Role, Severity
from engage.privacy import mask as mask_pii
from engage.tables import BoolArray, Conformed, conform

from ._checks import Context, Finding, not_in, outside, row_finding, run_check
from ._report import CheckResult, QualityReport

__all__ = ["Validation", "validate"]

SAMPLE_KEYS = 5


@dataclass
class Validation:
    """A report, plus what the report leaves out: the typed table and the offending rows per check."""

    report: QualityReport
    table: Conformed
    masks: dict[str, BoolArray] = field(default_factory=dict)

    def failing_rows(self) -> BoolArray:
        """Rows that break at least one row-level check."""
        out = np.zeros(self.report.rows, dtype=bool)
        for m in self.masks.values():
            out |= m
        return out


def validate(
    frame: pd.DataFrame,
    contract: Contract,
    *,
    now: datetime | None = None,
    source: str | None = None,
    great_expectations: bool = False,
    docs_dir: Path | None = None,
    critical_only: bool = False,
) -> Validation:
    """Run every schema check and rule of ``contract`` on ``frame`` (which is not modified).

    With ``great_expectations``, the checks GX can express get their verdict from the suite generated
    from the contract (run by a GX checkpoint; Data Docs kept in ``docs_dir`` when given); the rest, and
    the offending rows of every row-level check, come from Engage's own code. ``critical_only`` skips
    the warning rules (for a verdict, which warnings never change).

    Raises :class:`~engage.errors.SchemaError` when the table lacks contract columns or has no rows.
    """
    now = now or datetime.now(UTC)
    table = conform(frame, contract)
    keys = _key_labels(table.frame, contract)
    results: list[CheckResult] = []
    masks: dict[str, BoolArray] = {}

    def record(
        check_id: str, description: str, kind: str, severity: Severity, dimension: Dimension, f: Finding
    ) -> None:
        sample: list[str] = []
        failing: int | None = None
        if f.mask is not None:
            masks[check_id] = f.mask
            failing = int(f.mask.sum())
            if failing:
                sample = [str(k) for k in keys[np.flatnonzero(f.mask)[:SAMPLE_KEYS]]]
        results.append(
            CheckResult(
                id=check_id,
                description=description,
                kind=kind,
                severity=severity,
                dimension=dimension,
                passed=f.passed,
                observed=f.observed,
                threshold=f.threshold,
                failing_rows=failing,
                columns=f.columns,
                sample_keys=sample,
                details=f.details,
                message=f.message,
            )
        )

    for name, spec in contract.columns.items():
        for check_id, description, kind, dimension, finding in _schema_checks(table, name, spec, frame):
            record(check_id, description, kind, Severity.critical, dimension, finding)

    ctx = Context(frame=table.frame, contract=contract, now=now)
    for rule in contract.rules:
        if critical_only and rule.severity is not Severity.critical:
            continue
        finding = run_check(rule.check, ctx)
        if not finding.columns:
            finding.columns = [c for _, c in rule.check.columns_referenced()]
        record(rule.id, rule.description, rule.check.kind, rule.severity, rule.dimension, finding)

    if great_expectations:
        from ._gx import run_suite

        outcomes = run_suite(table.frame, contract, docs_dir=docs_dir, unreadable=table.type_errors)
        results = [_with_gx(r, outcomes[r.id]) if r.id in outcomes else r for r in results]

    report = QualityReport(
        contract=contract.contract,
        contract_version=contract.version,
        source=source,
        rows=len(table.frame),
        columns=len(frame.columns),
        checked_at=now,
        results=results,
    )
    return Validation(report=report, table=table, masks=masks)


def _with_gx(result: CheckResult, gx: Any) -> CheckResult:
    """Take GX's verdict; say so in the message when Engage's own code judged otherwise."""
    message = result.message
    if gx.success != result.passed:
        message += f" (Engage's code says {'pass' if result.passed else 'fail'}; GX decides)"
    return result.model_copy(
        update={
            "passed": gx.success,
            "engine": "great_expectations",
            "message": message,
            "details": {
                **result.details,
                "gx_unexpected": float(gx.unexpected),
                "gx_expectations": float(gx.expectations),
            },
        }
    )


def _schema_checks(
    table: Conformed, name: str, spec: Column, raw: pd.DataFrame | None = None
) -> list[tuple[str, str, str, Dimension, Finding]]:
    s = table.frame[name]
    out: list[tuple[str, str, str, Dimension, Finding]] = []
    bad = table.type_errors.get(name, np.zeros(len(s), dtype=bool))
    out.append(
        (
            f"schema.{name}.type",
            f"{name} values are {spec.type.value}",
            "type",
            Dimension.validity,
            row_finding(
                bad, f"hold a value that is not {spec.type.value}{_unreadable(raw, name, spec, bad)}", [name]
            ),
        )
    )
    if not spec.nullable:
        empty = s.isna().to_numpy() & ~bad
        out.append(
            (
                f"schema.{name}.not_null",
                f"{name} is never empty",
                "not_null",
                Dimension.completeness,
                row_finding(empty, "are empty", [name]),
            )
        )
    if spec.min is not None or spec.max is not None:
        out.append(
            (
                f"schema.{name}.bounds",
                f"{name} lies in [{'-inf' if spec.min is None else f'{spec.min:g}'}, "
                f"{'inf' if spec.max is None else f'{spec.max:g}'}]",
                "bounds",
                Dimension.validity,
                row_finding(outside(s, spec.min, spec.max), "lie outside the declared bounds", [name]),
            )
        )
    if spec.categories is not None:
        out.append(
            (
                f"schema.{name}.categories",
                f"{name} is one of {len(spec.categories)} declared categories",
                "categories",
                Dimension.validity,
                row_finding(not_in(s, set(spec.categories)), "hold an undeclared category", [name]),
            )
        )
    return out


def _unreadable(raw: pd.DataFrame | None, name: str, spec: Column, bad: BoolArray) -> str:
    """What the unreadable values were (up to three, never of a PII column) and what the type accepts."""
    if raw is None or name not in raw.columns or not bad.any():
        return ""
    if spec.role is Role.pii:
        seen = "values withheld: a PII column"
    else:
        # as text first: a cell may be a list or a mapping, which cannot be hashed
        values = list(dict.fromkeys(str(v)[:40] for v in raw[name].to_numpy(dtype=object)[bad]))
        seen = ", ".join(repr(v) for v in values[:3]) + (" …" if len(values) > 3 else "")
    if spec.type.value == "boolean":
        allowed = (
            f"true: {', '.join(spec.true_values)}; false: {', '.join(spec.false_values)}, case-insensitive"
        )
    elif spec.type.value in ("integer", "float"):
        allowed = "a number" if spec.type.value == "float" else "a whole number"
    else:
        allowed = f"a {spec.type.value}"
    return f" (got {seen}; {name} takes {allowed})"


def _key_labels(frame: pd.DataFrame, contract: Contract) -> BoolArray:
    """One printable key per row (primary key values joined), masked when a key column is PII."""
    pk = contract.primary_key
    parts = [frame[c].astype("string").fillna("<empty>") for c in pk]
    joined = parts[0]
    for part in parts[1:]:
        joined = joined + "|" + part
    labels = joined.to_numpy(dtype=object)
    if any(contract.columns[c].role is Role.pii for c in pk):
        labels = np.array([mask_pii(v) for v in labels], dtype=object)
    return labels
