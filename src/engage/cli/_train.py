"""``engage train``: train every head a contract defines on a table, and write the model and reports."""

from __future__ import annotations

from pathlib import Path

import typer

from ._options import parse_time


def train(
    data: Path = typer.Argument(..., help="Parquet or CSV table described by the contract."),
    contract: Path | None = typer.Option(
        None, "--contract", "-c", help="Contract file (default: customers)."
    ),
    out_dir: Path = typer.Option(
        Path("artifacts/train"), "--out-dir", "-o", help="Where the model and reports go."
    ),
    policy: Path | None = typer.Option(
        None, "--policy", help="Promotion policy file (default: the shipped one)."
    ),
    champion: Path | None = typer.Option(
        None, "--champion", help="Model bundle in production: scored on the same test rows as the challenger."
    ),
    heads: list[str] = typer.Option(
        [], "--head", help="Train only this head (repeatable; default: every target)."
    ),
    seed: int = typer.Option(0, "--seed", "-s", help="Seed of the split and the learners."),
    max_rounds: int = typer.Option(
        1000, "--max-rounds", help="Most boosting rounds per head (early stopping ends sooner)."
    ),
    now: str | None = typer.Option(
        None, "--now", help="Reference time for the contract's freshness check, ISO 8601."
    ),
) -> None:
    """Train the engagement, churn and LTV heads (xgboost, with a scikit-learn baseline) on a table.

    The table must pass its data contract first (train on a gate's remediated.parquet otherwise). A head
    whose target the contract does not define is skipped with a note. Exit 0 when trained, also when the
    promotion policy fails (it decides promotion, a later step; its verdict is printed); exit 1 when the
    table fails its contract.
    """
    from pydantic import ValidationError

    from engage.cli.console import err, out, print_training, stage, training_verdict_line
    from engage.contract import load_contract
    from engage.errors import ConfigError, TableRefused
    from engage.policy import load_policy
    from engage.training import TrainConfig, train_table

    spec = load_contract(contract)
    rules = load_policy(policy)
    try:
        config = TrainConfig(seed=seed, max_rounds=max_rounds)
    except ValidationError as e:
        first = e.errors()[0]
        raise ConfigError(f"--{str(first['loc'][0]).replace('_', '-')}: {first['msg']}") from None
    try:
        with stage(f"train on {data} (contract {spec.contract} {spec.version})"):
            result = train_table(
                data,
                spec,
                out_dir,
                now=parse_time(now, "--now"),
                policy=rules,
                config=config,
                heads=heads or None,
                champion=champion,
            )
    except TableRefused as e:
        err().print(f"engage: {e}", style="red")
        raise typer.Exit(1) from None
    print_training(result)
    out().print(f"\n[bold]{training_verdict_line(result)}[/]")
    err().print(
        f"outputs: {out_dir}/ (model/, baseline/, evaluation.json, report.html, kfp/, test_predictions.parquet)",
        style="dim",
    )
