"""``engage fairness``: the fairness gate on a table and a trained model bundle."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from engage._dates import parse_instant

if TYPE_CHECKING:
    from engage.fairness import FairnessResult


def fairness(
    data: Path = typer.Argument(
        ..., help="Parquet or CSV table the model was trained on (its contract's table)."
    ),
    model: Path = typer.Option(..., "--model", "-m", help="Model bundle folder (engage train's model/)."),
    contract: Path | None = typer.Option(
        None, "--contract", "-c", help="Contract file (default: customers)."
    ),
    out_dir: Path = typer.Option(
        Path("artifacts/fairness"), "--out-dir", "-o", help="Where the reports and the chosen model go."
    ),
    policy: Path | None = typer.Option(
        None, "--policy", help="Promotion policy file (default: the shipped one)."
    ),
    mitigate: bool = typer.Option(
        True, "--mitigate/--no-mitigate", help="Train and score the mitigation candidates."
    ),
    now: str | None = typer.Option(
        None, "--now", help="Reference time for the contract's freshness check, ISO 8601."
    ),
) -> None:
    """Measure fairness per protected attribute, try the mitigations, choose, decide (exit 1 on fail).

    The test rows are rebuilt from the table with the model's own split (its seed is in the bundle), so
    pass the table the model was trained on.
    """
    from engage.cli.console import err, stage
    from engage.contract import load_contract
    from engage.errors import TableRefused
    from engage.fairness import assess, split_for, write_fairness
    from engage.policy import load_policy
    from engage.quality import run_gate
    from engage.training import load_bundle

    spec = load_contract(contract)
    rules = load_policy(policy)
    bundle = load_bundle(model)
    gate = run_gate(data, spec, now=parse_instant(now, "--now"), great_expectations=False)
    if gate.verdict == "fail":
        err().print(
            f"engage: {TableRefused(f'refusing to judge fairness on {data}: it fails data contract {spec.contract} ({gate.reason})')}",
            style="red",
        )
        raise typer.Exit(1)
    frame = gate.validation.table.frame
    split, config = split_for(frame, spec, bundle)
    with stage(f"fairness gate on {data} ({len(split.test):,} test rows, model {model})"):
        result = assess(frame, spec, bundle, split, config=config, policy=rules, mitigate=mitigate)
    write_fairness(result, out_dir)
    print_fairness(result)
    err().print(
        f"outputs: {out_dir}/ (fairness.json, report.html, summary.md"
        + (", model/)" if result.verdict != "fail" else ")"),
        style="dim",
    )
    if result.verdict == "fail":
        raise typer.Exit(1)


def print_fairness(result: FairnessResult) -> None:
    from rich.table import Table

    from engage.cli.console import out

    console = out()
    if not result.applicable:
        console.print(f"fairness: not applicable — {result.reason}")
    for name, h in result.heads.items() if result.applicable else ():
        metric = "demographic_parity_ratio" if h.task == "binary_classification" else "mae_ratio"
        table = Table(title=f"fairness: {name} ({h.verdict.replace('_', ' ')})", title_justify="left")
        for col in ("candidate", "stage", h.primary_metric, f"worst {metric}", "meets policy", "eligible"):
            table.add_column(col)
        for c in h.candidates:
            values = [f.summary[metric].value for f in c.fairness.values() if metric in f.summary]
            finite = [v for v in values if v == v]
            worst = (
                (min(finite) if metric.endswith("parity_ratio") else max(finite)) if finite else float("nan")
            )
            acc = c.accuracy.get(h.primary_metric)
            table.add_row(
                ("* " if c.name == h.chosen else "") + c.name,
                c.candidate.stage,
                "n/a" if acc is None else f"{acc:.4f}",
                f"{worst:.3f}",
                "yes" if c.meets_policy else "no",
                "yes" if c.eligible else f"no ({c.why_not})",
            )
        console.print(table)
        console.print(f"  {h.reason}")
    console.print(f"\n[bold]fairness gate: {result.verdict.upper().replace('_', ' ')}[/]")
