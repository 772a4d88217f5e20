"""``engage score``: every customer of a table scored by a registry version, as partitioned Parquet."""

from __future__ import annotations

from pathlib import Path

import typer

from engage._dates import parse_instant


def score(
    data: str = typer.Argument(
        ..., help="The table: a Parquet or CSV file, or a folder of Parquet files; any fsspec URI (s3://…)."
    ),
    out: str = typer.Option(
        "artifacts/scores", "--out", "-o", help="Output URI: run_date=<date>/scores.parquet goes under it."
    ),
    registry: str | None = typer.Option(
        None,
        "--registry",
        "-r",
        help="Registry URI (default: $ENGAGE_REGISTRY_URI, else artifacts/registry).",
    ),
    model: str | None = typer.Option(
        None, "--model", help="Model inside the registry (default: $ENGAGE_REGISTRY_MODEL, else customers)."
    ),
    version: str = typer.Option(
        "production", "--version", "-V", help="Version to score with: an alias, sha256:<hex> or a hex prefix."
    ),
    contract: Path | None = typer.Option(
        None, "--contract", "-c", help="Contract the rows are checked against (default: customers)."
    ),
    run_date: str | None = typer.Option(
        None, "--run-date", help="The output partition's date, ISO 8601 (default: today, UTC)."
    ),
    engine: str = typer.Option(
        "local",
        "--engine",
        help="local: this process, one part at a time; dask: a Dask cluster ($ENGAGE_DASK_SCHEDULER, else a "
        "LocalCluster of $ENGAGE_DASK_WORKERS processes).",
    ),
    reasons: int = typer.Option(
        0, "--reasons", min=0, max=20, help="Top-k reason codes per customer (exact TreeSHAP; 0: none)."
    ),
    reason_head: str | None = typer.Option(
        None, "--reason-head", help="The head the reasons explain (default: the first classification head)."
    ),
    max_rejected: float = typer.Option(
        0.05,
        "--max-rejected",
        help="Largest share of rejected rows before the run fails (nothing committed).",
    ),
    partition_rows: int | None = typer.Option(
        None,
        "--partition-rows",
        min=1000,
        help="Rows per part (default: $ENGAGE_DASK_PARTITION_ROWS, 250,000).",
    ),
) -> None:
    """Score every customer of a table with a registry version (default: production).

    Rows are checked by the predictor's own rules; a rejected row goes to _quarantine/ with the reason,
    a part whose schema is broken goes there whole. Writes run_date=<date>/scores.parquet (the heads'
    predictions, the fairness offsets of the bundle applied, optional reason codes),
    _quarantine/run_date=<date>/quarantine.parquet and _reports/run_date=<date>.json, each whole or not at
    all. Exit 0 (pass or warn), 1 when more than --max-rejected of the rows are rejected (nothing committed
    but the quarantine and the report), 2 on an error (a missing version: before any work).
    """
    from engage.cli.console import err
    from engage.cli.console import out as stdout
    from engage.contract import load_contract
    from engage.errors import ConfigError
    from engage.registry import RegistrySettings
    from engage.scoring import score_table

    settings = RegistrySettings()
    when = parse_instant(run_date, "--run-date")
    if engine not in ("local", "dask"):
        raise ConfigError(f"--engine {engine}: expected local or dask")
    report = score_table(
        data,
        out,
        registry=registry or settings.uri,
        model=model or settings.model,
        ref=version,
        contract=load_contract(contract),
        run_date=when.date() if when else None,
        engine=engine,
        reasons=reasons,
        reason_head=reason_head,
        max_rejected=max_rejected,
        partition_rows=partition_rows,
    )
    stdout().print(report.line)
    for part in report.quarantined_parts:
        err().print(
            f"  part {part['part']} ({part['source']}) quarantined whole: {part['reason']}", style="yellow"
        )
    for note in report.notes:
        err().print(f"  {note}", style="yellow")
    for kind, url in report.files.items():
        err().print(f"  {kind}: {url}", style="dim")
    if report.verdict == "fail":
        raise typer.Exit(1)
