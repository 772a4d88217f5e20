"""``engage review list | show | decide``: the human review queue of the governance database.

``--db`` names the database (default: ``ENGAGE_GOVERNANCE_DATABASE_URL``, else the embedded SQLite
file); ``--json`` prints JSON instead of a table. A decision is audited in the same transaction; of two
reviewers deciding one item at once, the second is told it was decided already (exit 2, one line).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import typer

from ._options import DB_HELP

if TYPE_CHECKING:
    from engage.governance import ReviewItemView, ReviewQueue

app = typer.Typer(
    help="Human review: list the queue, show an item, approve or override it with a reason.",
    no_args_is_help=True,
)

_JSON_HELP = "Print JSON instead of a table."


def _queue(url: str | None) -> ReviewQueue:
    from engage.governance import GovernanceSettings, ReviewQueue, open_database

    return ReviewQueue(open_database(url or GovernanceSettings().database_url))


@app.command("list")
def list_items(
    status: str = typer.Option(
        "pending", "--status", help="pending, approved, overridden, or all (every status)."
    ),
    source: str | None = typer.Option(
        None, "--source", help="sample (a run's stratified sample) or edge (the predictor)."
    ),
    run_id: str | None = typer.Option(None, "--run-id", help="Only the items of this pipeline run."),
    limit: int = typer.Option(100, "--limit", help="Items to show (1..10000), oldest first."),
    offset: int = typer.Option(0, "--offset", help="Items to skip first."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """List queue items, oldest first."""
    items = _queue(db).list(
        status=None if status == "all" else status, source=source, run_id=run_id, limit=limit, offset=offset
    )
    if as_json:
        typer.echo(json.dumps([i.to_json() for i in items], indent=2))
        return
    from rich.table import Table

    from engage.cli.console import out

    table = Table(title=f"{len(items)} review item(s)", title_justify="left")
    table.add_column("id", no_wrap=True, min_width=36)  # whole: it is what `show` and `decide` take
    for column in ("created (UTC)", "source", "reason", "status", "customer"):
        table.add_column(column)
    table.add_column("prediction", overflow="fold")
    for item in items:
        table.add_row(
            item.id,
            f"{item.created_at:%Y-%m-%d %H:%M:%S}",
            item.source,
            item.reason,
            item.status,
            item.customer_id or "",
            _values(item.override or item.prediction),
        )
    out().print(table)


@app.command("show")
def show(
    item_id: str = typer.Argument(..., metavar="ID", help="The review item's id."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    as_json: bool = typer.Option(False, "--json", help="Accepted for symmetry: show always prints JSON."),
) -> None:
    """Print one item as JSON: its features, prediction, explanation and decision."""
    typer.echo(json.dumps(_queue(db).get(item_id).to_json(), indent=2))


@app.command("decide")
def decide(
    item_id: str = typer.Argument(..., metavar="ID", help="The review item's id."),
    approve: bool = typer.Option(False, "--approve", help="Keep the model's prediction."),
    override: list[str] | None = typer.Option(
        None,
        "--override",
        metavar="OUTPUT=VALUE",
        help="Replace an output's value (repeatable): --override churn_probability=0.9.",
    ),
    reason: str = typer.Option(..., "--reason", help="Why: recorded in the audit trail."),
    reviewer: str = typer.Option(..., "--reviewer", help="Who decides: recorded in the audit trail."),
    expected_version: int | None = typer.Option(
        None, "--expected-version", help="Refuse (409) unless the item is still at this lock version."
    ),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    as_json: bool = typer.Option(False, "--json", help=_JSON_HELP),
) -> None:
    """Approve or override a pending item, with a reason (audited)."""
    from engage.errors import GovernanceError
    from engage.governance._review import parse_override

    if approve == bool(override):
        raise GovernanceError("decide with exactly one of --approve and --override OUTPUT=VALUE")
    values = parse_override(override or [])
    item = _queue(db).decide(
        item_id,
        reviewer=reviewer,
        decision="override" if values else "approve",
        reason=reason,
        override=values or None,
        expected_version=expected_version,
    )
    if as_json:
        typer.echo(json.dumps(item.to_json(), indent=2))
        return
    typer.echo(_decided_line(item))


def _decided_line(item: ReviewItemView) -> str:
    what = f"overridden ({_values(item.override or {})})" if item.status == "overridden" else item.status
    return f"review item {item.id}: {what} by {item.decided_by}, version {item.lock_version}"


def _values(values: dict[str, Any]) -> str:
    return ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(values.items())
    )
