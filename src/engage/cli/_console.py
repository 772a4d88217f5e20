"""Terminal output: stage lines with a live spinner, and the quality summary tables (rich)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from engage.quality import DefectScore, GateResult, QualityReport

_out: Console | None = None
_err: Console | None = None


def _console(stderr: bool) -> Console:
    """Lines are never wrapped (logs and scripts read them whole); tables fit 120 columns off a terminal."""
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if not console.is_terminal:
        console.width = 120
    return console


def out() -> Console:
    global _out
    if _out is None:
        _out = _console(stderr=False)
    return _out


def err() -> Console:
    global _err
    if _err is None:
        _err = _console(stderr=True)
    return _err


@contextlib.contextmanager
def stage(label: str) -> Iterator[None]:
    """Show a spinner with elapsed time while ``label`` runs (on a terminal), then one done line."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = err()
    start = time.perf_counter()
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as progress:
        progress.add_task(label, total=None)
        yield
    console.print(f"[green]✓[/] {label} [dim]({time.perf_counter() - start:.1f} s)[/]")


def print_report(report: QualityReport, *, only_failures: bool = False) -> None:
    from rich.table import Table

    console = out()
    schema = [r for r in report.results if r.id.startswith("schema.")]
    rules = [r for r in report.results if not r.id.startswith("schema.")]
    table = Table(title=f"Contract {report.contract} {report.contract_version}: rules", title_justify="left")
    for col in ("rule", "severity", "dimension", "result", "detail"):
        table.add_column(col, overflow="fold")
    for r in rules:
        if only_failures and r.passed:
            continue
        status = (
            "[green]pass[/]"
            if r.passed
            else ("[red]FAIL[/]" if r.severity == "critical" else "[yellow]warn[/]")
        )
        table.add_row(r.id, r.severity.value, r.dimension.value, status, r.message)
    console.print(table)
    failed = [r for r in schema if not r.passed]
    console.print(
        f"Schema checks: {len(schema)} run, {len(failed)} failed"
        + (": " + "; ".join(f"{r.id} ({r.message})" for r in failed[:8]) if failed else "")
        + (f" … and {len(failed) - 8} more" if len(failed) > 8 else "")
    )


def print_defect_scores(scores: list[DefectScore]) -> None:
    from rich.table import Table

    table = Table(title="Injected defects against what the checks found", title_justify="left")
    for col in ("defect", "check", "injected", "found", "recall", "precision"):
        table.add_column(col, justify="right" if col not in ("defect", "check") else "left")
    for s in scores:
        table.add_row(
            s.kind, s.check, f"{s.injected:,}", f"{s.found:,}", f"{s.recall:.3f}", f"{s.precision:.3f}"
        )
    out().print(table)


def remediation_line(gate: GateResult) -> str:
    """The remediation actions that changed something, on one line."""
    done = [f"{a.action}{' ' + a.column if a.column else ''} {a.rows:,}" for a in gate.actions if a.rows]
    return "; ".join(done)


def verdict_line(gate: GateResult) -> str:
    return f"quality gate: {gate.verdict.upper().replace('_', ' ')}: {gate.reason}"
