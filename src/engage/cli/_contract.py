"""``engage contract check`` and ``engage contract show``."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Inspect data contracts.", no_args_is_help=True)


@app.command("check")
def check(paths: list[Path] = typer.Argument(..., help="Contract YAML file(s).")) -> None:
    """Load contracts and check their features (exit 2 on a broken contract, 1 on a forbidden feature).

    A feature that is, or is named after, a prohibited attribute (ML-005), or that is known only after
    the label window (ML-004), is refused: this is the pre-commit hook's check.
    """
    from engage.contract import Timing, load_contract, prohibited_matches

    refused = []
    for path in paths:
        c = load_contract(path)
        for feature, attribute in prohibited_matches(c.features, c.prohibited_attributes).items():
            refused.append(
                f"{path}: columns.{feature}: feature is the prohibited attribute {attribute!r} (ML-005)"
            )
        for feature in c.features:
            if c.columns[feature].timing is Timing.after_label_window:
                refused.append(
                    f"{path}: columns.{feature}: feature known only after the label window (ML-004)"
                )
        if not refused:
            typer.echo(
                f"{path}: contract {c.contract} {c.version} is valid: {len(c.columns)} columns, "
                f"{len(c.features)} features, {len(c.targets)} target(s), {len(c.rules)} rules"
            )
    for line in refused:
        typer.echo(line, err=True)
    if refused:
        raise typer.Exit(1)


@app.command("show")
def show(path: Path | None = typer.Argument(None, help="Contract YAML file (default: customers).")) -> None:
    """Print a contract's columns by role, its targets and its rules."""
    from rich.table import Table

    from engage.cli.console import out
    from engage.contract import load_contract

    c = load_contract(path)
    console = out()
    console.print(f"[bold]{c.contract}[/] {c.version} — {c.description}")
    cols = Table(title="columns", title_justify="left")
    for name in ("column", "type", "role", "unit", "nullable", "constraints"):
        cols.add_column(name)
    for name, col in c.columns.items():
        constraints = col.constraints()
        cols.add_row(
            name,
            col.type.value,
            col.role.value,
            col.unit or "",
            "yes" if col.nullable else "",
            " ".join(constraints),
        )
    console.print(cols)
    for head, target in c.targets.items():
        console.print(f"target [bold]{head}[/]: {target.column} ({target.task.value})")
    rules = Table(title="rules", title_justify="left")
    for name in ("id", "severity", "dimension", "check", "description"):
        rules.add_column(name)
    for rule in c.rules:
        rules.add_row(rule.id, rule.severity.value, rule.dimension.value, rule.check.kind, rule.description)
    console.print(rules)
