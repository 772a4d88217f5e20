"""``engage contract check`` and ``engage contract show``."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Inspect data contracts.", no_args_is_help=True)


@app.command("check")
def check(path: Path = typer.Argument(..., help="Contract YAML file.")) -> None:
    """Load a contract and report every problem with its key path (exit 2 when there is one)."""
    from engage.contract import load_contract

    c = load_contract(path)
    typer.echo(
        f"{path}: contract {c.contract} {c.version} is valid: {len(c.columns)} columns, "
        f"{len(c.features)} features, {len(c.targets)} target(s), {len(c.rules)} rules"
    )


@app.command("show")
def show(path: Path | None = typer.Argument(None, help="Contract YAML file (default: customers).")) -> None:
    """Print a contract's columns by role, its targets and its rules."""
    from rich.table import Table

    from engage.contract import load_contract

    from ._console import out

    c = load_contract(path)
    console = out()
    console.print(f"[bold]{c.contract}[/] {c.version} — {c.description}")
    cols = Table(title="columns", title_justify="left")
    for name in ("column", "type", "role", "unit", "nullable", "constraints"):
        cols.add_column(name)
    for name, col in c.columns.items():
        constraints = []
        if col.min is not None or col.max is not None:
            constraints.append(
                f"[{col.min if col.min is not None else ''}, {col.max if col.max is not None else ''}]"
            )
        if col.categories:
            constraints.append("{" + ", ".join(col.categories) + "}")
        if col.critical:
            constraints.append("critical")
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
