"""``engage subject access | delete | opt-out | opt-in``: a customer's data-subject rights.

Customer ids are printed only in the access export itself (that is its purpose); messages mask them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ._options import ACTOR_HELP, DB_HELP, actor_name

if TYPE_CHECKING:
    from engage.contract import Contract
    from engage.governance import RunOutputs, SubjectRights
    from engage.registry import Registry

app = typer.Typer(
    help="Data-subject rights: export (access), erase (delete), opt out of automated decisions.",
    no_args_is_help=True,
)

_REGISTRY_HELP = "A model registry (folder or s3://…) whose versions' quality reports are searched too."
_RUNS_HELP = (
    "A pipeline root (folder or s3://…, e.g. artifacts/run) whose run outputs are searched too"
    " (their id column: --contract's)."
)
_CONTRACT_HELP = "The data contract naming the id column of --table and --runs (default: the shipped one)."


def _rights(db: str | None) -> SubjectRights:
    from engage.governance import SubjectRights, open_database

    return SubjectRights(open_database(db))


def _contract(path: Path | None) -> Contract:
    from engage.contract import load_contract

    return load_contract(path)


def _runs(root: str | None, contract: Contract | None) -> RunOutputs | None:
    if root is None:
        return None
    from engage.governance import RunOutputs

    return RunOutputs(root, contract or _contract(None))


def _registry(uri: str | None, model: str | None) -> Registry | None:
    if uri is None:
        return None
    from engage.registry import Registry, RegistrySettings

    return Registry(uri, model=model or RegistrySettings().model)


@app.command("access")
def access(
    customer_id: str = typer.Argument(..., help="The customer's id."),
    table: str | None = typer.Option(
        None, "--table", help="A customer table (CSV, Parquet, fsspec URI) to search."
    ),
    contract: Path | None = typer.Option(None, "--contract", help=_CONTRACT_HELP),
    registry: str | None = typer.Option(None, "--registry", help=_REGISTRY_HELP),
    model: str | None = typer.Option(None, "--model", help="Model inside the registry (default: customers)."),
    runs: str | None = typer.Option(None, "--runs", help=_RUNS_HELP),
    out: Path | None = typer.Option(None, "--out", help="Write the export to this JSON file (else stdout)."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    actor: str | None = typer.Option(None, "--actor", help=ACTOR_HELP),
) -> None:
    """Export everything Engage holds about a customer as JSON (exit 2: nothing held)."""
    import json

    from engage._io import write_text_atomic

    loaded = None if contract is None else _contract(contract)
    export = _rights(db).access(
        customer_id,
        actor=actor_name(actor),
        table=table,
        # the contract goes with a table; with --runs alone it only names the runs' id column
        contract=loaded if table is not None or runs is None else None,
        registry=_registry(registry, model),
        runs=_runs(runs, loaded),
    )
    text = json.dumps(export, indent=2, ensure_ascii=False) + "\n"
    if out is None:
        typer.echo(text, nl=False)
        return
    write_text_atomic(out, text)
    typer.echo(f"request {export['request_id']}: {export['counts']} -> {out}", err=True)


@app.command("delete")
def delete(
    customer_id: str = typer.Argument(..., help="The customer's id."),
    reason: str = typer.Option(
        ..., "--reason", help="Why (the erasure request's reference): on the tombstone."
    ),
    registry: str | None = typer.Option(None, "--registry", help=_REGISTRY_HELP),
    model: str | None = typer.Option(None, "--model", help="Model inside the registry (default: customers)."),
    runs: str | None = typer.Option(None, "--runs", help=_RUNS_HELP),
    contract: Path | None = typer.Option(
        None,
        "--contract",
        help="The data contract naming the id column of --runs (default: the shipped one).",
    ),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    actor: str | None = typer.Option(None, "--actor", help=ACTOR_HELP),
    as_json: bool = typer.Option(False, "--json", help="What was erased, as JSON."),
) -> None:
    """Erase the customer's personal data everywhere Engage keeps it; the trail keeps a tombstone."""
    import json

    result = _rights(db).delete(
        customer_id,
        actor=actor_name(actor),
        reason=reason,
        registry=_registry(registry, model),
        runs=_runs(runs, None if contract is None else _contract(contract)),
    )
    if as_json:
        typer.echo(json.dumps(result))
        return
    typer.echo(
        f"request {result['request_id']}: erased {result['erased']}, "
        f"{result['kept_under_legal_hold']} audit record(s) kept under legal hold"
    )


@app.command("opt-out")
def opt_out(
    customer_id: str = typer.Argument(..., help="The customer's id."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    actor: str | None = typer.Option(None, "--actor", help=ACTOR_HELP),
    as_json: bool = typer.Option(False, "--json", help="The result as JSON."),
) -> None:
    """The customer opts out of automated decisions: their predictions go to human review."""
    import json

    result = _rights(db).opt_out(customer_id, actor=actor_name(actor))
    typer.echo(json.dumps(result) if as_json else f"request {result['request_id']}: opted out")


@app.command("opt-in")
def opt_in(
    customer_id: str = typer.Argument(..., help="The customer's id."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    actor: str | None = typer.Option(None, "--actor", help=ACTOR_HELP),
    as_json: bool = typer.Option(False, "--json", help="The result as JSON."),
) -> None:
    """Withdraw the customer's opt-out: automated decisions apply again."""
    import json

    result = _rights(db).opt_in(customer_id, actor=actor_name(actor))
    typer.echo(json.dumps(result) if as_json else f"request {result['request_id']}: opted in")
