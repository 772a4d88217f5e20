"""``engage registry list | show | audit | verify | sign``: read a model registry (a local folder or
``s3://…``), check a version's files and signature, sign a version again after a key rotation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from ._options import ACTOR_HELP, actor_name

if TYPE_CHECKING:
    from engage.registry import ModelVersion, Registry

app = typer.Typer(
    help="Inspect the model registry: versions, aliases, the audit trail, signatures.", no_args_is_help=True
)

#: metrics shown per version in ``list`` (the first found, in this order; every figure is in ``show``)
_KEY_METRICS = ("auc_roc", "pr_auc", "r2", "spearman", "ece", "rmse")
_SHOWN_METRICS = 3

_REGISTRY_HELP = (
    "Registry URI: a folder or s3://bucket/prefix (default: $ENGAGE_REGISTRY_URI, else artifacts/registry)."
)
_MODEL_HELP = "Model inside the registry (default: $ENGAGE_REGISTRY_MODEL, else customers)."


def _open(uri: str | None, model: str | None) -> Registry:
    """The registry the flags name, falling back on the ``ENGAGE_REGISTRY_*`` settings."""
    from engage.registry import Registry, RegistrySettings

    settings = RegistrySettings()
    return Registry(uri or settings.uri, model=model or settings.model)


@app.command("list")
def list_versions(
    registry: str | None = typer.Option(None, "--registry", "-r", help=_REGISTRY_HELP),
    model: str | None = typer.Option(None, "--model", help=_MODEL_HELP),
) -> None:
    """List the committed versions, newest first, with their aliases and key metrics."""
    from rich.table import Table

    from engage.cli.console import out

    reg = _open(registry, model)
    versions = reg.versions()
    console = out()
    table = Table(title=f"{reg.location}: {len(versions)} version(s)", title_justify="left")
    for col in ("version", "created (UTC)", "aliases", "policy", "metrics"):
        table.add_column(col)
    for v in versions:
        table.add_row(
            v.short_id,
            f"{v.created_at:%Y-%m-%d %H:%M:%S}",
            ", ".join(v.aliases),
            _verdict(v.metadata),
            _metrics_line(v.metadata.get("metrics")),
        )
    console.print(table)


@app.command("show")
def show(
    ref: str = typer.Argument(..., help="sha256:<hex>, a unique hex prefix (12+ characters), or an alias."),
    registry: str | None = typer.Option(None, "--registry", "-r", help=_REGISTRY_HELP),
    model: str | None = typer.Option(None, "--model", help=_MODEL_HELP),
) -> None:
    """Print one version as JSON (its metadata, attachments, aliases and folder)."""
    version = _open(registry, model).get(ref)
    typer.echo(_version_json(version))


@app.command("audit")
def audit(
    registry: str | None = typer.Option(None, "--registry", "-r", help=_REGISTRY_HELP),
    model: str | None = typer.Option(None, "--model", help=_MODEL_HELP),
    as_json: bool = typer.Option(False, "--json", help="One JSON record per line instead of a table."),
) -> None:
    """Print the audit trail, oldest first: publishes and alias moves with who, when and why."""
    import json

    from rich.table import Table

    from engage.cli.console import out

    records = _open(registry, model).audit()
    if as_json:
        for record in records:
            typer.echo(json.dumps(record, sort_keys=True))
        return
    table = Table(title=f"audit trail: {len(records)} record(s)", title_justify="left")
    for col in ("at (UTC)", "event", "alias", "from", "to", "actor", "reason"):
        table.add_column(col)
    for r in records:
        table.add_row(
            str(r.get("at", ""))[:19].replace("T", " "),
            str(r.get("event", "")),
            str(r.get("alias") or ""),
            _short(r.get("from")),
            _short(r.get("to") or r.get("version")),
            str(r.get("actor", "")),
            str(r.get("reason") or ""),
        )
    out().print(table)


@app.command("verify")
def verify(
    refs: list[str] = typer.Argument(..., help="Versions to check: sha256:<hex>, a hex prefix, or an alias."),
    registry: str | None = typer.Option(None, "--registry", "-r", help=_REGISTRY_HELP),
    model: str | None = typer.Option(None, "--model", help=_MODEL_HELP),
) -> None:
    """Check each version as a server does before loading it: every file against the manifest, the
    manifest against the id, the signature against the trusted keys (ENGAGE_SIGNING_PUBLIC_KEYS[_FILE]).
    Exit 1 when one is refused (the reason on stderr, naming the stored file)."""
    from engage.errors import ArtifactError

    reg = _open(registry, model)
    versions = [reg.get(ref) for ref in refs]  # an unknown ref is a usage error (exit 2), before any check
    refused = 0
    for version in versions:
        try:
            _, signature = reg.verify(version.id)
        except ArtifactError as e:
            typer.echo(f"{version.short_id} REFUSED: {e}", err=True)
            refused += 1
            continue
        typer.echo(
            f"{version.short_id} verified: files match the manifest, signed by key {signature.key_id[:16]} "
            f"at {signature.signed_at:%Y-%m-%d %H:%M:%S} UTC ({version.id})"
        )
    if refused:
        raise typer.Exit(1)


@app.command("sign")
def sign(
    refs: list[str] = typer.Argument(..., help="Versions to sign: sha256:<hex>, a hex prefix, or an alias."),
    registry: str | None = typer.Option(None, "--registry", "-r", help=_REGISTRY_HELP),
    model: str | None = typer.Option(None, "--model", help=_MODEL_HELP),
    actor: str | None = typer.Option(None, "--actor", help=ACTOR_HELP),
) -> None:
    """Sign versions again with the configured key (ENGAGE_SIGNING_KEY[_FILE]): after a key rotation, or
    for versions published before signing. Each version's files are checked against its manifest first;
    each signing is recorded on the audit trail."""
    reg = _open(registry, model)
    versions = [reg.get(ref) for ref in refs]
    for version in versions:
        _, signature = reg.sign(version.id, actor=actor_name(actor))
        typer.echo(f"{version.short_id} signed by key {signature.key_id[:16]} ({version.id})")


def _version_json(version: ModelVersion) -> str:
    return version.model_dump_json(indent=2)


def _short(version_id: Any) -> str:
    return str(version_id).removeprefix("sha256:")[:12] if version_id else ""


def _verdict(metadata: dict[str, Any]) -> str:
    """The policy verdict if the publisher recorded one.

    ``policy_verdict``, else ``policy.verdict`` or ``policy.passed``, else ``policy.rules`` (a dumped
    :class:`~engage.policy.PolicyVerdict`: pass when every rule passed).
    """
    verdict = metadata.get("policy_verdict")
    policy = metadata.get("policy")
    if verdict is None and isinstance(policy, dict):
        verdict = policy.get("verdict", policy.get("passed"))
        rules = policy.get("rules")
        if verdict is None and isinstance(rules, list) and rules:
            verdict = all(isinstance(r, dict) and r.get("passed") is True for r in rules)
    if isinstance(verdict, bool):
        return "pass" if verdict else "fail"
    return "" if verdict is None else str(verdict)


def _metrics_line(metrics: Any) -> str:
    """A few headline figures from ``metadata.metrics`` (flat, or nested by head), e.g. ``churn.auc_roc=0.83``."""
    flat = _flatten(metrics) if isinstance(metrics, dict) else {}
    ordered = sorted(
        flat.items(),
        key=lambda kv: (
            next((i for i, m in enumerate(_KEY_METRICS) if kv[0].endswith(m)), len(_KEY_METRICS)),
            kv[0],
        ),
    )
    return " ".join(f"{name}={value:.4g}" for name, value in ordered[:_SHOWN_METRICS])


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, float]:
    flat: dict[str, float] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat
