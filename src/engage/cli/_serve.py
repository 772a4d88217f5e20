"""``engage serve``: the three servers of the production model on this machine (see engage.serving)."""

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
) -> None:
    """Start the predictor, explainer and drift detector (and Prometheus) and print their URLs."""
    from engage.serving._stack import StackPorts, prepare_version

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
        _serve(model, reference, out, ports, prometheus, check)
    except KeyboardInterrupt:
        typer.echo("stopping")


def _serve(model: Path, reference: Path | None, out: Path, ports: Any, prometheus: bool, check: bool) -> None:
    from engage.serving._stack import run_stack

    with run_stack(model, reference, out, ports=ports, prometheus=prometheus, say=typer.echo) as stack:
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
