"""``engage token create | list | revoke``: bearer tokens of the governance API (stored as hashes)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from ._options import ACTOR_HELP, DB_HELP, actor_name

if TYPE_CHECKING:
    from engage.governance import Tokens

app = typer.Typer(
    help="Bearer tokens of the governance API: create (shown once), list, revoke.", no_args_is_help=True
)


def _tokens(db: str | None) -> Tokens:
    from engage.governance import Tokens, open_database

    return Tokens(open_database(db))


@app.command("create")
def create(
    name: str = typer.Argument(
        ..., help="Who or what holds the token (recorded as the actor of its requests)."
    ),
    role: str = typer.Option(..., "--role", help="reviewer, auditor or admin."),
    ttl_days: int | None = typer.Option(None, "--ttl-days", min=1, help="Expires after this many days."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    actor: str | None = typer.Option(None, "--actor", help=ACTOR_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print {id, token} as JSON."),
) -> None:
    """Create a token and print it once: only its SHA-256 is stored."""
    import json

    token_id, plaintext = _tokens(db).create(name, role, actor=actor_name(actor), ttl_days=ttl_days)
    if as_json:
        typer.echo(json.dumps({"id": token_id, "token": plaintext}))
        return
    typer.echo(plaintext)
    typer.echo(f"token {token_id} ({role}): shown once, keep it now", err=True)


@app.command("list")
def list_tokens(
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
) -> None:
    """List the tokens (never their values): id, name, role, expiry, revoked."""
    import json

    for info in _tokens(db).list():
        if as_json:
            typer.echo(json.dumps(info.to_json()))
        else:
            state = "active" if info.active() else ("revoked" if info.revoked_at else "expired")
            expires = info.expires_at.isoformat() if info.expires_at else "never"
            typer.echo(f"{info.id}  {info.role:<8}  {state:<7}  expires {expires}  {info.name}")


@app.command("revoke")
def revoke(
    token_id: str = typer.Argument(..., help="The token's id (from `engage token list`)."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    actor: str | None = typer.Option(None, "--actor", help=ACTOR_HELP),
    as_json: bool = typer.Option(False, "--json", help="The revoked token's record as JSON."),
) -> None:
    """Revoke a token: from now on the API refuses it (401)."""
    import json

    info = _tokens(db).revoke(token_id, actor_name(actor))
    typer.echo(json.dumps(info.to_json()) if as_json else f"token {info.id} ({info.name}) revoked")
