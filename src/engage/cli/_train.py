"""``engage train``: train every head a contract defines on a table, and write the model and reports."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from engage._dates import parse_instant

if TYPE_CHECKING:
    from engage.contract import Contract
    from engage.model import TrainConfig


def train(
    data: Path = typer.Argument(
        ...,
        help="Parquet or CSV table described by the contract; --engine dask also reads a folder of "
        "Parquet files (a partitioned table).",
    ),
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
    engine: str = typer.Option(
        "local",
        "--engine",
        help="local (default): in this process, the table in memory. dask: on a Dask cluster "
        "(ENGAGE_DASK_SCHEDULER, else a LocalCluster of ENGAGE_DASK_WORKERS processes): the contract's "
        "row-level checks, then the xgboost heads; writes only model/ (the bundle) and training.json "
        "(metrics, split, rows, timings). No baseline, policy verdict, champion, report or fairness.",
    ),
) -> None:
    """Train the engagement, churn and LTV heads (xgboost, with a scikit-learn baseline) on a table.

    The table must pass its data contract first (train on a gate's remediated.parquet otherwise). A head
    whose target the contract does not define is skipped with a note. Exit 0 when trained, also when the
    promotion policy fails (it decides promotion, a later step; its verdict is printed); exit 1 when the
    table fails its contract.

    --engine dask (docs/distributed.md) writes OUT_DIR/model/ (a model bundle that loads and serves like
    the local engine's) and OUT_DIR/training.json; it does not write what the local engine also writes:
    baseline/, evaluation.json, report.html, kfp/, test_predictions.parquet, and no policy verdict or
    champion comparison (run the fairness gate and reports in-process, on a sample).
    """
    from pydantic import ValidationError

    from engage.cli.console import err, out, print_training, stage, training_verdict_line
    from engage.contract import load_contract
    from engage.errors import ConfigError, TableRefused
    from engage.policy import load_policy
    from engage.training import TrainConfig, train_table

    if engine not in ("local", "dask"):
        raise ConfigError(f"--engine: {engine!r} is not an engine (local or dask)")
    spec = load_contract(contract)
    try:
        config = TrainConfig(seed=seed, max_rounds=max_rounds)
    except ValidationError as e:
        first = e.errors()[0]
        raise ConfigError(f"--{str(first['loc'][0]).replace('_', '-')}: {first['msg']}") from None
    if engine == "dask":
        unused = [flag for flag, given in (("--policy", policy), ("--champion", champion)) if given]
        if unused:
            raise ConfigError(f"{', '.join(unused)}: not used by --engine dask (the local engine's)")
        _train_dask(data, spec, out_dir, config, heads, seed, parse_instant(now, "--now"))
        return
    rules = load_policy(policy)
    try:
        with stage(f"train on {data} (contract {spec.contract} {spec.version})"):
            result = train_table(
                data,
                spec,
                out_dir,
                now=parse_instant(now, "--now"),
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


def _train_dask(
    data: Path,
    spec: Contract,
    out_dir: Path,
    config: TrainConfig,
    heads: list[str],
    seed: int,
    now: datetime | None,
) -> None:
    """Check and train on the Dask cluster; write model/ and training.json, staged, moved in whole."""
    import json

    from engage._io import replace_dir, staging_dir, write_text_atomic
    from engage.cli.console import err, out, stage
    from engage.distributed import (
        DaskSettings,
        check_distributed,
        dask_client,
        read_frame,
        train_distributed,
    )

    settings = DaskSettings()
    where = settings.scheduler or f"a LocalCluster of {settings.workers} worker(s)"
    with dask_client(settings) as client:
        ddf = read_frame(data, settings=settings)
        with stage(f"check {data} on {where} ({ddf.npartitions} partition(s), contract {spec.contract})"):
            quality = check_distributed(ddf, spec, client, now=now)
        if quality.verdict == "fail":
            failed = ", ".join(c.id for c in quality.critical_failures[:5])
            err().print(
                f"engage: refusing to train on {data}: it fails data contract {spec.contract} "
                f"({len(quality.critical_failures)} critical check(s) failed: {failed}); run `engage "
                f"validate` and train on its remediated table",
                style="red",
            )
            raise typer.Exit(1)
        with stage(f"train on {where}"):
            result = train_distributed(ddf, spec, client, config=config, heads=heads or None, seed=seed)
    report = {
        **result.to_json(),
        "table": str(data),
        "contract": {"name": spec.contract, "version": spec.version},
        "quality": {"verdict": quality.verdict, "rows": quality.rows, "not_run": quality.not_run},
        "config": config.model_dump(),
    }
    with staging_dir(out_dir) as staging:
        result.bundle.save(staging / "model")
        write_text_atomic(staging / "training.json", json.dumps(report, indent=2) + "\n")
        replace_dir(staging, out_dir)
    for name, metrics in result.metrics.items():
        shown = ", ".join(f"{k} {v:.4f}" for k, v in list(metrics.items())[:4])
        out().print(f"{name}: {shown} ({result.rows[name]['test']:,} test rows)")
    err().print(f"outputs: {out_dir}/ (model/, training.json)", style="dim")
