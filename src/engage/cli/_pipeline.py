"""``engage pipeline compile | run | submit``, and ``engage promote | deploy | rollback``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from engage.errors import ConfigError

app = typer.Typer(
    help="The Kubeflow pipeline: compile it, run it locally, submit it to a cluster.", no_args_is_help=True
)

#: the committed compiled pipeline (``make generate`` rewrites it; a test fails when it is stale)
COMPILED = Path("pipelines/engage_pipeline.yaml")


@app.command("compile")
def compile_(out: Path = typer.Option(COMPILED, "--out", "-o", help="Where to write the IR YAML.")) -> None:
    """Write the pipeline's IR YAML, the file the KFP UI uploads."""
    from engage.pipeline import compile_pipeline

    from ._console import err

    compile_pipeline(out)
    err().print(f"wrote {out}", style="dim")


@app.command("run")
def run_(
    param: list[str] = typer.Option(
        [], "--param", "-p", help="NAME=VALUE overriding an ENGAGE_RUN_* setting."
    ),
) -> None:
    """Run the pipeline under kfp.local (as ``engage run``), with parameters as NAME=VALUE."""
    from engage.settings import RunSettings

    from ._run import print_summary, run_pipeline

    values = dict(_pair(p) for p in param)
    settings = RunSettings(**values)  # type: ignore[arg-type]
    summary = run_pipeline(settings)
    print_summary(summary)
    if summary.state != "SUCCEEDED":
        raise typer.Exit(1)


@app.command("submit")
def submit_(
    host: str = typer.Option(
        ..., "--host", help="KFP API endpoint, e.g. https://kubeflow.example.com/pipeline"
    ),
    param: list[str] = typer.Option([], "--param", "-p", help="NAME=VALUE pipeline parameter (repeatable)."),
    experiment: str = typer.Option("engage", "--experiment", help="KFP experiment to run in."),
    namespace: str | None = typer.Option(None, "--namespace", help="Kubeflow profile namespace."),
    schedule: str | None = typer.Option(
        None, "--schedule", help="Also create a recurring run, cron with seconds (daily: '0 0 2 * * *')."
    ),
) -> None:
    """Upload the pipeline as a new version, start a run, and optionally schedule daily retraining."""
    from engage.pipeline import submit

    from ._console import out

    params: dict[str, object] = {}
    for item in param:
        name, value = _pair(item)
        params[name] = _value(value)
    ids = submit(host, params, experiment=experiment, namespace=namespace, schedule=schedule)
    out().print(json.dumps(ids, indent=2))


def _value(text: str) -> object:
    """A pipeline parameter from the command line: JSON when it parses (numbers, lists, booleans), else text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _pair(item: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep or not name:
        raise ConfigError(f"--param: expected NAME=VALUE, got {item!r}")
    return name.strip(), value


# ---- promotion, deployment, rollback ------------------------------------------------------------------


def promote(
    training: Path = typer.Option(..., "--training", help="Training output (evaluation.json, model/)."),
    quality: Path | None = typer.Option(None, "--quality", help="Quality gate output (report.json)."),
    fairness: Path | None = typer.Option(
        None, "--fairness", help="Fairness gate output (fairness.json, model/)."
    ),
    explanations: Path | None = typer.Option(
        None, "--explanations", help="Explanations output (global.json)."
    ),
    card: Path | None = typer.Option(None, "--card", help="Model card folder."),
    drift: Path | None = typer.Option(None, "--drift", help="Drift reference folder (summary.json)."),
    policy: Path | None = typer.Option(None, "--policy", help="Promotion policy (default: the shipped one)."),
    registry: str | None = typer.Option(
        None, "--registry", "-r", help="Registry URI (default: $ENGAGE_REGISTRY_URI)."
    ),
    run_id: str = typer.Option("manual", "--run-id", help="Recorded with the version (a pipeline run id)."),
    out_dir: Path = typer.Option(
        Path("artifacts/promotion"), "--out-dir", "-o", help="promotion.json and the ISVC."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Judge only: print the verdict, publish nothing."),
) -> None:
    """Judge a run by the whole promotion policy (every rule, observed value, threshold); promote it if it
    passes: publish to the registry, move candidate / production / previous, render the InferenceService.
    Exit 1 when it does not pass."""
    from engage.policy import load_policy
    from engage.promotion import PromotionResult, RunArtifacts, judge
    from engage.promotion import promote as run_promotion
    from engage.registry import Registry, RegistrySettings

    from ._console import out

    rules = load_policy(policy)
    run = RunArtifacts(training, quality, fairness, explanations, card, drift)
    if dry_run:
        result = PromotionResult(verdict=judge(rules, run))
    else:
        store = Registry(registry or RegistrySettings().uri)
        result = run_promotion(rules, run, registry=store, run_id=run_id, out_dir=out_dir)
    out().print(result.markdown())
    if result.manifest is not None:
        out().print(f"InferenceService: {result.manifest}")
    if not result.verdict.passed:
        raise typer.Exit(1)


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
) -> None:
    """Render the InferenceService of a registry version (YAML for kubectl apply); apply it with --kubeconfig."""
    _deploy(ref, registry, kubeconfig, context, canary, out, reason="deploy")


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
) -> None:
    """Point production back at previous (and previous at what was production), then render it again."""
    from engage.registry import Registry, RegistrySettings

    from ._console import out as console

    store = Registry(registry or RegistrySettings().uri)
    for move in store.rollback(reason=reason):
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
) -> None:
    from engage._io import write_text_atomic
    from engage.deploy import apply_inference_service, to_yaml
    from engage.policy import load_policy
    from engage.promotion import inference_service
    from engage.registry import Registry, RegistrySettings

    from ._console import err
    from ._console import out as console

    store = Registry(registry or RegistrySettings().uri)
    version = store.get(ref)
    percent = load_policy().promotion.canary_percent if canary is None else canary
    manifest = inference_service(version, percent)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, to_yaml(manifest))
    console().print(f"{version.id} ({', '.join(version.aliases) or 'no alias'}): {out}")
    if kubeconfig is not None:
        action = apply_inference_service(manifest, kubeconfig=kubeconfig, context=context)
        store.record({"event": "deployed", "version": version.id, "action": action, "reason": reason})
        console().print(f"InferenceService {manifest['metadata']['name']} {action}")
    else:
        err().print("not applied (no --kubeconfig): kubectl apply -f " + str(out), style="dim")
