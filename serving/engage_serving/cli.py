"""The commands ``engage-serving`` adds to the ``engage`` CLI (registered by :func:`register`, an
``engage.cli`` entry point): ``engage serve``, the three servers of a model version on this machine, and
``engage deploy`` / ``engage rollback``, its InferenceService rendered or applied."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import typer


def serve(
    registry: str = typer.Option(
        None, "--registry", help="Registry URI [default: ENGAGE_RUN_REGISTRY or artifacts/registry]"
    ),
    ref: str = typer.Option("production", "--ref", help="Alias or version id to serve"),
    model_dir: Path | None = typer.Option(
        None,
        "--model-dir",
        help="Serve this folder (model/ and drift_reference/) instead of a registry version",
    ),
    out: Path = typer.Option(
        Path("artifacts/serve"), "--out", help="Where fetched files, logs and Prometheus go"
    ),
    port: int = typer.Option(8080, "--port", help="Predictor port; explainer +2, drift detector +4"),
    prometheus_port: int = typer.Option(9090, "--prometheus-port"),
    prometheus: bool = typer.Option(
        True, "--prometheus/--no-prometheus", help="Start Prometheus when installed"
    ),
    check: bool = typer.Option(False, "--check", help="Start, send one prediction and one explanation, stop"),
    rules: Path = typer.Option(
        Path("monitoring/prometheus"),
        "--rules",
        help="Folder of Prometheus rule files (*.rules.yml) the local Prometheus evaluates, when it exists",
    ),
    pushgateway: str | None = typer.Option(
        None, "--pushgateway", help="Also scrape this Pushgateway (host:port), where pipeline runs push"
    ),
    review: bool = typer.Option(
        False,
        "--review",
        help="Route edge cases to the human review queue of $ENGAGE_GOVERNANCE_DATABASE_URL (the predictor's "
        "--review true): opted-out customers, scores near a threshold, outliers; overrides returned",
    ),
) -> None:
    """Start the predictor, explainer and drift detector (and Prometheus) and print their URLs."""
    from engage_serving._stack import StackPorts, prepare_version

    reference: Path | None
    if model_dir is not None:
        model, source = model_dir / "model", str(model_dir)
        reference = model_dir / "drift_reference" if (model_dir / "drift_reference").is_dir() else None
    else:
        from engage.settings import RunSettings

        uri = registry or RunSettings().registry
        model, reference, version = prepare_version(uri, ref, out / "versions")
        source = f"{uri} {ref} = {version}"
    ports = StackPorts(port, port + 2, port + 4, prometheus_port)
    typer.echo(f"serving {source}")
    # a `kill` (SIGTERM) stops the servers too, as Ctrl-C does, at any point: no server outlives this
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        monitoring: dict[str, Any] = {
            "rule_files": sorted(rules.glob("*.rules.yml")),
            "pushgateway": pushgateway,
            "review_db": _review_db() if review else None,
        }
        _serve(model, reference, out, ports, prometheus, check, monitoring)
    except KeyboardInterrupt:
        typer.echo("stopping")


def _serve(
    model: Path,
    reference: Path | None,
    out: Path,
    ports: Any,
    prometheus: bool,
    check: bool,
    monitoring: dict[str, Any],
) -> None:
    from engage_serving._stack import run_stack

    with run_stack(
        model, reference, out, ports=ports, prometheus=prometheus, say=typer.echo, **monitoring
    ) as stack:
        for name, url in stack.urls.items():
            typer.echo(f"  {name:<15} {url}")
        typer.echo(f"  predict: curl -H 'content-type: application/json' {stack.urls['predictor']}"
                   "/v1/models/engage:predict -d '{\"instances\": [{...}]}'")  # fmt: skip
        typer.echo(f"  logs: {out / 'logs'}")
        if check:
            _check(stack.urls, reference)
            return
        typer.echo("press Ctrl-C to stop")
        while all(p.poll() is None for p in stack.processes.values()):
            time.sleep(1)
        dead = [n for n, p in stack.processes.items() if p.poll() is not None]
        raise typer.Exit(code=1) if dead else typer.Exit()


def _check(urls: dict[str, str], reference: Path | None) -> None:
    import json

    import httpx

    from engage.tables import read_table

    if reference is None:
        return
    rows = json.loads(read_table(reference / "reference.parquet").head(2).to_json(orient="records"))
    answer = httpx.post(f"{urls['predictor']}/v1/models/engage:predict", json={"instances": rows}, timeout=30)
    typer.echo(f"predict: {answer.status_code} {answer.text[:300]}")
    explained = httpx.post(
        f"{urls['explainer']}/v1/models/engage:explain", json={"instances": rows[:1]}, timeout=60
    )
    typer.echo(f"explain: {explained.status_code} {explained.text[:200]}")
    if answer.status_code != 200 or explained.status_code != 200:
        raise typer.Exit(code=1)


def deploy(
    ref: str = typer.Argument("production", help="Version id, unique prefix or alias (default: production)."),
    registry: str | None = typer.Option(
        None, "--registry", "-r", help="Registry URI (default: $ENGAGE_REGISTRY_URI)."
    ),
    kubeconfig: Path | None = typer.Option(
        None, "--kubeconfig", help="Apply through this cluster's API (else: render only)."
    ),
    context: str | None = typer.Option(None, "--context", help="kubeconfig context."),
    canary: int | None = typer.Option(
        None, "--canary", min=0, max=100, help="Canary traffic percent (default: the policy's)."
    ),
    out: Path = typer.Option(
        Path("artifacts/deploy/inferenceservice.yaml"), "--out", "-o", help="Where to write the YAML."
    ),
    helm_values: Path | None = typer.Option(
        None,
        "--helm-values",
        help="Also write the values that make charts/engage render this same InferenceService "
        "(helm upgrade --install engage charts/engage -f <file>).",
    ),
) -> None:
    """Render the InferenceService of a registry version (YAML for kubectl apply); apply it with --kubeconfig."""
    _deploy(ref, registry, kubeconfig, context, canary, out, reason="deploy", helm_values=helm_values)


def rollback(
    registry: str | None = typer.Option(
        None, "--registry", "-r", help="Registry URI (default: $ENGAGE_REGISTRY_URI)."
    ),
    reason: str = typer.Option(..., "--reason", help="Why (recorded in the audit trail)."),
    kubeconfig: Path | None = typer.Option(
        None, "--kubeconfig", help="Apply through this cluster's API (else: render only)."
    ),
    context: str | None = typer.Option(None, "--context", help="kubeconfig context."),
    out: Path = typer.Option(
        Path("artifacts/deploy/inferenceservice.yaml"), "--out", "-o", help="Where to write the YAML."
    ),
    actor: str = typer.Option(
        "", "--actor", help="Who decided the rollback (audit trail; default: $USER, else engage)."
    ),
) -> None:
    """Point production back at previous (and previous at what was production), then render it again."""
    from engage.cli.console import out as console
    from engage.registry import Registry, RegistrySettings

    store = Registry(registry or RegistrySettings().uri)
    from engage.cli._options import actor_name

    who = actor_name(actor)
    for move in store.rollback(reason=reason, actor=who):
        console().print(f"alias {move.alias}: {move.from_version} -> {move.to_version}")
    _deploy("production", registry, kubeconfig, context, 0, out, reason=f"rollback: {reason}")


def _deploy(
    ref: str,
    registry: str | None,
    kubeconfig: Path | None,
    context: str | None,
    canary: int | None,
    out: Path,
    *,
    reason: str,
    helm_values: Path | None = None,
) -> None:
    from engage._io import write_text_atomic
    from engage.cli.console import err
    from engage.cli.console import out as console
    from engage.policy import load_policy
    from engage.registry import Registry, RegistrySettings
    from engage_serving.deploy import (
        apply_inference_service,
        inference_service,
        to_yaml,
        version_chart_values,
    )

    store = Registry(registry or RegistrySettings().uri)
    version = store.get(ref)
    percent = load_policy().promotion.canary_percent if canary is None else canary
    manifest = inference_service(version, percent)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, to_yaml(manifest))
    console().print(f"{version.id} ({', '.join(version.aliases) or 'no alias'}): {out}")
    if helm_values is not None:
        values = version_chart_values(version, percent)
        helm_values.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(helm_values, to_yaml(values))
        console().print(f"Helm values: {helm_values}")
    if kubeconfig is not None:
        action = apply_inference_service(manifest, kubeconfig=kubeconfig, context=context)
        store.record({"event": "deployed", "version": version.id, "action": action, "reason": reason})
        console().print(f"InferenceService {manifest['metadata']['name']} {action}")
    else:
        err().print("not applied (no --kubeconfig): kubectl apply -f " + str(out), style="dim")


def register(root: typer.Typer) -> None:
    """Add this package's commands to the ``engage`` application."""
    root.command("serve")(serve)
    root.command("deploy")(deploy)
    root.command("rollback")(rollback)


def _review_db() -> str:
    from engage.governance import GovernanceSettings

    return GovernanceSettings().database_url
