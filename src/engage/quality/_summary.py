"""The readable side of a gate run: one Markdown summary (KFP ``Markdown`` artifact), and HTML from it."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from engage.contract import Dimension

if TYPE_CHECKING:
    from ._result import GateResult

__all__ = ["render_html", "render_markdown"]


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(gate: GateResult) -> str:
    report = gate.report
    verdict = {"pass": "PASS", "pass_after_remediation": "PASS after remediation", "fail": "FAIL"}[  # nosec B105 # verdicts
        gate.verdict
    ]
    lines = [
        f"# Data quality gate: {verdict}",
        "",
        f"{gate.reason}",
        "",
        f"- table: `{report.source or 'in memory'}` ({report.rows:,} rows, {report.columns} columns)"
        + (f", sha256 `{gate.input_sha256[:16]}…`" if gate.input_sha256 else ""),
        f"- contract: `{report.contract}` {report.contract_version}",
        f"- checked at: {report.checked_at.isoformat(timespec='seconds')}",
        f"- rows kept: {gate.rows_out:,}; quarantined: {gate.rows_quarantined:,}",
        "",
        "## By dimension",
        "",
        "| dimension | checks | failed (critical) | failed (warning) |",
        "|---|---:|---:|---:|",
    ]
    totals: Counter[str] = Counter()
    crit: Counter[str] = Counter()
    warn: Counter[str] = Counter()
    for r in report.results:
        totals[r.dimension.value] += 1
        if not r.passed:
            (crit if r.severity.value == "critical" else warn)[r.dimension.value] += 1
    for dim in Dimension:
        lines.append(f"| {dim.value} | {totals[dim.value]} | {crit[dim.value]} | {warn[dim.value]} |")
    failed = [r for r in report.results if not r.passed]
    lines += ["", "## Failed checks", ""]
    if failed:
        lines += ["| check | severity | dimension | engine | rows | detail |", "|---|---|---|---|---:|---|"]
        for r in failed:
            rows = "" if r.failing_rows is None else f"{r.failing_rows:,}"
            lines.append(
                f"| {r.id} | {r.severity.value} | {r.dimension.value} | {r.engine} | {rows} | {_cell(r.message)} |"
            )
    else:
        lines.append("None.")
    lines += [
        "",
        "## Rules",
        "",
        "| rule | result | observed | threshold | detail |",
        "|---|---|---:|---:|---|",
    ]
    for r in report.results:
        if r.id.startswith("schema."):
            continue
        observed = "" if r.observed is None else f"{r.observed:.4g}"
        threshold = "" if r.threshold is None else f"{r.threshold:.4g}"
        status = "pass" if r.passed else ("**FAIL**" if r.severity.value == "critical" else "warn")
        lines.append(f"| {r.id} | {status} | {observed} | {threshold} | {_cell(r.message)} |")
    lines += ["", "## Remediation", "", "| action | column | rows | detail |", "|---|---|---:|---|"]
    for a in gate.actions:
        lines.append(f"| {a.action} | {a.column or ''} | {a.rows:,} | {_cell(a.detail)} |")
    return "\n".join(lines) + "\n"


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Engage data quality gate</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; color: #1b1f23; }}
table {{ border-collapse: collapse; margin: .5rem 0 1.5rem; }}
th, td {{ border: 1px solid #d0d7de; padding: .3rem .6rem; text-align: left; vertical-align: top; }}
th {{ background: #f6f8fa; }}
td:first-child {{ white-space: nowrap; }}
h1 {{ color: {color}; }}
code {{ background: #f6f8fa; padding: 0 .2rem; }}
</style></head><body>
{body}
</body></html>
"""


def render_html(markdown: str, verdict: str) -> str:
    import mistune

    body = mistune.html(markdown)
    color = {"pass": "#1a7f37", "pass_after_remediation": "#9a6700"}.get(verdict, "#cf222e")  # nosec B105 # verdicts
    return _PAGE.format(body=body, color=color)
