"""Terminal output: stage lines with a live spinner, and the quality summary tables (rich)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from engage.quality import DefectScore, GateResult, QualityReport
    from engage.training import TrainResult

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


#: metrics shown per task in the training table (every figure is in evaluation.json)
_SHOWN = {
    "regression": ("r2", "rmse", "mae", "spearman", "top_decile_capture"),
    "binary_classification": ("auc_roc", "pr_auc", "log_loss", "brier", "ece", "lift_top_decile"),
}


def print_training(result: TrainResult) -> None:
    """Per head: xgboost against the baseline (and the champion) on the test rows; then the policy."""
    from rich.table import Table

    console = out()
    console.print(f"[bold]Split[/]: {result.split.how}")
    for name, r in result.heads.items():
        models = {"xgboost": r.metrics["xgboost"], "baseline": r.metrics["sklearn"]}
        champion = result.champion.champion_metrics.get(name) if result.champion else None
        table = Table(
            title=f"{name} ({r.head.task.value.replace('_', ' ')}, {r.primary.objective}): "
            f"{r.rows['train']:,} train / {r.rows['test']:,} test rows",
            title_justify="left",
        )
        table.add_column("metric")
        for col in (
            "xgboost test",
            "xgboost train",
            "baseline test",
            *(["champion test"] if champion else []),
        ):
            table.add_column(col, justify="right")
        for metric in _SHOWN[r.head.task.value]:
            if metric not in models["xgboost"]["test"]:
                continue
            cells = [
                models["xgboost"]["test"][metric],
                models["xgboost"]["train"][metric],
                models["baseline"]["test"][metric],
                *([champion[metric]] if champion else []),
            ]
            table.add_row(metric, *(_fmt(v) for v in cells))
        console.print(table)
    for note in result.notes:
        console.print(f"[dim]note: {note}[/]")
    console.print("[bold]Promotion policy[/] " + f"{result.policy.policy} {result.policy.version}:")
    for rule in result.verdict.rules:
        mark = "[green]pass[/]" if rule.passed else "[red]FAIL[/]"
        console.print(f"  {mark} {rule.head}: {rule.rule} (observed {_fmt(rule.observed)})")
    if result.champion is not None:
        console.print(f"[bold]Champion / challenger[/]: {result.champion.winner} wins")
        for line in result.champion.lines():
            console.print(f"  {line}")


def _fmt(value: float | str | None) -> str:
    import math

    if isinstance(value, str):
        return value
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:,.1f}" if abs(value) >= 1000 else f"{value:.4f}"


def training_verdict_line(result: TrainResult) -> str:
    failures = result.verdict.failures
    if not failures:
        return f"training: {len(result.heads)} head(s) trained; every promotion-policy rule passes"
    listed = "; ".join(f"{f.head} {f.rule}" for f in failures[:4])
    return f"training: {len(result.heads)} head(s) trained; {len(failures)} policy rule(s) fail: {listed}"
