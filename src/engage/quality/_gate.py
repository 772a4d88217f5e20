"""The data-quality gate as one call: check, remediate, decide, and write every output or none.

:func:`run_gate` is what ``engage validate --out-dir`` and the pipeline's validate step run. Outputs
(all in ``out_dir``, staged in a sibling folder and moved into place only when complete):

``report.json``          the gate report: verdict, every check result, remediation actions
``summary.md``           the readable summary (the KFP Markdown artifact); ``summary.html`` the same as HTML
``data_docs/``           Great Expectations' Data Docs site for the generated suite
``remediated.parquet``   the table the pipeline goes on with
``quarantine.parquet``   rows set aside, with the checks they broke in ``_quarantine_reasons``
``metrics.prom``         the data-quality metrics in Prometheus text format
``lineage.jsonl``        OpenLineage START / COMPLETE events: input and its hash -> checks and actions -> outputs
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engage._io import replace_dir, sha256_file, staging_dir
from engage.contract import Contract

from ._remediate import Remediated, remediate
from ._result import GateReport, GateResult, Verdict
from ._validate import Validation, validate

__all__ = ["GateReport", "GateResult", "Verdict", "run_gate"]

OUTPUTS = (
    "report.json",
    "summary.md",
    "summary.html",
    "remediated.parquet",
    "quarantine.parquet",
    "metrics.prom",
    "lineage.jsonl",
)


def decide(validation: Validation, remediated: Remediated | None, contract: Contract) -> tuple[Verdict, str]:
    """The verdict and its one-line reason."""
    report = validation.report
    critical = report.critical_failures
    if not critical:
        return (
            "pass",
            f"all critical checks passed on {report.rows:,} rows ({len(report.warnings)} warning(s))",
        )
    ids = ", ".join(r.id for r in critical[:5]) + (" …" if len(critical) > 5 else "")
    if remediated is None:
        return "fail", f"{len(critical)} critical check(s) failed: {ids}"
    share = len(remediated.quarantine) / max(report.rows, 1)
    limit = contract.remediation.max_quarantine_share
    left = remediated.after.report.critical_failures
    if left:
        first = left[0]
        return "fail", f"{first.id} still fails after remediation: {first.message}"
    if share > limit:
        return (
            "fail",
            f"{len(remediated.quarantine):,} rows ({share:.1%}) would be quarantined, above the {limit:.0%} limit ({ids})",
        )
    return (
        "pass_after_remediation",
        f"{len(critical)} critical check(s) failed ({ids}); {len(remediated.quarantine):,} rows ({share:.2%}) "
        f"quarantined, the remediated table passes",
    )


def run_gate(
    data: Path,
    contract: Contract,
    *,
    out_dir: Path | None = None,
    now: datetime | None = None,
    great_expectations: bool = True,
    push_gateway: str | None = None,
) -> GateResult:
    """Check ``data`` against ``contract``; with ``out_dir``, remediate and write every output there."""
    from engage.tables import read_table

    now = now or datetime.now(UTC)
    if out_dir is None:
        frame = read_table(data)
        validation = validate(
            frame, contract, now=now, source=str(data), great_expectations=great_expectations
        )
        verdict, reason = decide(validation, None, contract)
        gate = GateResult(contract, validation, verdict, reason)
    else:
        gate = _gate_with_outputs(data, contract, out_dir, now, great_expectations)
    if push_gateway:
        from ._metrics import data_quality_registry, push_metrics

        push_metrics(data_quality_registry(gate), push_gateway, instance=contract.contract)
    return gate


def _gate_with_outputs(data: Path, contract: Contract, out_dir: Path, now: datetime, gx: bool) -> GateResult:
    from prometheus_client import write_to_textfile

    from engage._io import write_text_atomic
    from engage.lineage import LineageRun
    from engage.tables import read_table, write_table

    from ._metrics import data_quality_registry
    from ._remediate import QUARANTINE_REASONS
    from ._summary import render_html, render_markdown

    lineage = LineageRun(job="engage.validate")
    frame = read_table(data)
    input_sha = sha256_file(data)
    with staging_dir(out_dir) as staging:
        validation = validate(
            frame,
            contract,
            now=now,
            source=str(data),
            great_expectations=gx,
            docs_dir=staging / "data_docs" if gx else None,
        )
        remediated = remediate(validation, contract, now=now)
        verdict, reason = decide(validation, remediated, contract)
        gate = GateResult(contract, validation, verdict, reason, input_sha, remediated)

        write_table(remediated.table, staging / "remediated.parquet")
        write_table(remediated.quarantine, staging / "quarantine.parquet")
        markdown = render_markdown(gate)
        write_text_atomic(staging / "summary.md", markdown)
        write_text_atomic(staging / "summary.html", render_html(markdown, verdict))
        write_text_atomic(staging / "report.json", gate.gate_report().model_dump_json(indent=2))
        write_to_textfile(str(staging / "metrics.prom"), data_quality_registry(gate))

        lineage.add_input(
            data,
            input_sha,
            columns=[(n, c.type.value) for n, c in contract.columns.items()],
            assertions=[_assertion(r) for r in validation.report.results],
            rows=validation.report.rows,
        )
        rows = {"remediated.parquet": len(remediated.table), "quarantine.parquet": len(remediated.quarantine)}
        for name in ("remediated.parquet", "quarantine.parquet", "report.json"):
            lineage.add_output(out_dir / name, sha256_file(staging / name), rows=rows.get(name))
        lineage.run_facets["engage_gate"] = _gate_facet(gate, QUARANTINE_REASONS)
        write_text_atomic(staging / "lineage.jsonl", "\n".join(lineage.events()) + "\n")

        replace_dir(staging, out_dir)
    gate.outputs = {name: out_dir / name for name in OUTPUTS}
    if gx:
        gate.outputs["data_docs"] = out_dir / "data_docs" / "index.html"
    return gate


def _assertion(r: Any) -> dict[str, Any]:
    return {
        "assertion": r.kind,
        "success": r.passed,
        "column": r.columns[0] if len(r.columns) == 1 else None,
        "severity": "error" if r.severity.value == "critical" else "warn",
        "name": r.id,
        "description": r.description,
        "expected": None if r.threshold is None else f"{r.threshold:g}",
        "actual": None if r.observed is None else f"{r.observed:g}",
    }


def _gate_facet(gate: GateResult, reasons_column: str) -> Any:
    import attr
    from openlineage.client.generated.base import RunFacet

    @attr.define
    class EngageGateRunFacet(RunFacet):
        verdict: str
        reason: str
        transformations: list[dict[str, Any]]
        quarantineReasonsColumn: str

    return EngageGateRunFacet(
        verdict=gate.verdict,
        reason=gate.reason,
        transformations=[a.model_dump() for a in gate.actions],
        quarantineReasonsColumn=reasons_column,
    )
