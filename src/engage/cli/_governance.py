"""``engage governance migrate | serve``: the governance store's schema, and its REST API (uvicorn).

The options every governance command shares (``--db``, ``--actor``) are defined here too.
"""

from __future__ import annotations

import typer

from ._options import DB_HELP

app = typer.Typer(help="The governance store: migrate its schema, serve its REST API.", no_args_is_help=True)


@app.command("migrate")
def migrate(db: str | None = typer.Option(None, "--db", help=DB_HELP)) -> None:
    """Create or upgrade the governance database's tables (Alembic, to the newest revision)."""
    from engage.governance import open_database

    database = open_database(db, migrate=False)
    revision = database.migrate()
    typer.echo(f"{database.name}: at revision {revision}")


@app.command("serve")
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8700, "--port", min=1, max=65535, help="Port to listen on."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    table: str | None = typer.Option(
        None, "--table", help="A customer table (CSV, Parquet, fsspec URI) subject access exports search."
    ),
    contract: str | None = typer.Option(
        None,
        "--contract",
        help="The data contract naming the id column of --table and --runs (--runs alone: default the shipped one).",
    ),
    registry: str | None = typer.Option(
        None, "--registry", help="A model registry whose quality reports access and erasure search."
    ),
    model: str | None = typer.Option(None, "--model", help="Model inside the registry (default: customers)."),
    runs: str | None = typer.Option(
        None,
        "--runs",
        help="A pipeline root (folder or s3://…, e.g. artifacts/run) whose run outputs access and erasure search.",
    ),
    max_body: int = typer.Option(
        1 << 20, "--max-body", min=1, help="Largest request body in bytes (413 above)."
    ),
) -> None:
    """Serve the governance REST API (bearer tokens: `engage token create`). Logs name routes, never
    the customer ids in their paths (uvicorn's access log is off)."""
    import logging

    import uvicorn

    from engage.governance.api import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    store = None
    if registry is not None:
        from engage.registry import Registry, RegistrySettings

        store = Registry(registry, model=model or RegistrySettings().model)
    outputs = None
    if runs is not None:
        from engage.contract import load_contract
        from engage.governance import RunOutputs

        outputs = RunOutputs(runs, load_contract(contract))
    app = create_app(
        db,
        table=table,
        # the contract goes with a table; with --runs alone it only names the runs' id column
        contract=contract if table is not None or runs is None else None,
        registry=store,
        runs=outputs,
        max_body_bytes=max_body,
    )
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="info")
