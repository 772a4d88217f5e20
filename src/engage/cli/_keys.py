"""``engage keys generate``: a new Ed25519 key pair that signs registry versions (docs/registry.md)."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Keys that sign model versions: generate a pair.", no_args_is_help=True)


@app.command("generate")
def generate(
    out: Path = typer.Option(
        ..., "--out", "-o", help="Folder for <name>.pem (private, 0600) and <name>.pub.pem."
    ),
    name: str = typer.Option("engage-signing", "--name", help="File name stem of the pair."),
) -> None:
    """Write a new key pair; an existing private key is never overwritten.

    The private key goes into the Secret of the step that publishes and promotes versions
    (ENGAGE_SIGNING_KEY_FILE); the public key into the servers' Secret (ENGAGE_SIGNING_PUBLIC_KEYS_FILE),
    beside the old one during a rotation.
    """
    from engage.errors import ConfigError
    from engage.signing import generate_keypair, key_id, read_public_keys

    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"--name {name!r}: a plain file name stem, such as engage-signing")
    private, public = generate_keypair(out, name=name)
    (key,) = read_public_keys(public)
    typer.echo(f"key id {key_id(key)}")
    typer.echo(f"private key: {private} (keep it secret: the Secret of the publishing step)")
    typer.echo(f"public key:  {public} (the servers' trusted keys)")
