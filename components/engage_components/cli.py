"""The commands ``engage-components`` adds to the ``engage`` CLI: ``engage run``, ``engage pipeline
compile | run | submit`` and ``engage promote`` (registered by :func:`register`, an ``engage.cli`` entry point)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from engage.errors import ConfigError

app = typer.Typer(
    help="The Kubeflow pipeline: compile it, run it locally, submit it to a cluster.", no_args_is_help=True
)

#: the committed compiled pipelines, pipelines/<module>.yaml (``make generate`` rewrites them; a test fails
#: when one is stale)
COMPILED = Path("pipelines")
PIPELINE_HELP = "Which pipeline: engage (training, the default) or feedback (the feedback loop)."


@app.command("compile")
def compile_(
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Where to write the IR YAML (default: pipelines/<pipeline>_pipeline.yaml)."
    ),
    pipeline: str = typer.Option("engage", "--pipeline", help=PIPELINE_HELP),
) -> None:
    """Write a pipeline's IR YAML, the file the KFP UI uploads."""
    from engage.cli.console import err
    from engage_components import compile_pipeline

    from ._local import PIPELINES

    if pipeline not in PIPELINES:
        raise ConfigError(f"--pipeline {pipeline!r}: expected one of {', '.join(PIPELINES)}")
    target = out or COMPILED / f"{PIPELINES[pipeline]}.yaml"
    compile_pipeline(target, pipeline)
    err().print(f"wrote {target}", style="dim")


@app.command("run")
def run_(
    param: list[str] = typer.Option(
        [], "--param", "-p", help="NAME=VALUE overriding an ENGAGE_RUN_* setting."
    ),
) -> None:
    """Run the pipeline under kfp.local (as ``engage run``), with parameters as NAME=VALUE."""
    from engage.settings import RunSettings

    from ._cli_run import print_summary, run_pipeline

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
        None,
        "--schedule",
        help="Also create a recurring run: cron with seconds ('0 0 2 * * *'), or daily (training 02:00, "
        "feedback 06:00 UTC).",
    ),
    pipeline: str = typer.Option("engage", "--pipeline", help=PIPELINE_HELP),
) -> None:
    """Upload a pipeline as a new version, start a run, and optionally schedule it (daily retraining; the
    daily feedback run: --pipeline feedback -p events_uri=... -p outcomes_uri=... --schedule daily)."""
    from engage.cli.console import out
    from engage_components import submit

    params: dict[str, object] = {}
    for item in param:
        name, value = _pair(item)
        params[name] = _value(value)
    ids = submit(
        host, params, experiment=experiment, namespace=namespace, schedule=schedule, pipeline=pipeline
    )
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
    approver: str | None = typer.Option(
        None,
        "--approver",
        help="Who approved this promotion (recorded on the audit trail; default: the policy, automated).",
    ),
) -> None:
    """Judge a run by the whole promotion policy (every rule, observed value, threshold); promote it if it
    passes: publish to the registry, move candidate / production / previous, render the InferenceService.
    Exit 1 when it does not pass."""
    from engage.cli.console import out
    from engage.policy import load_policy
    from engage.promotion import PromotionResult, RunArtifacts, judge
    from engage.promotion import promote as run_promotion
    from engage.registry import Registry, RegistrySettings

    rules = load_policy(policy)
    run = RunArtifacts(training, quality, fairness, explanations, card, drift)
    if dry_run:
        result = PromotionResult(verdict=judge(rules, run))
    else:
        store = Registry(registry or RegistrySettings().uri)
        from engage_serving.deploy import render_version

        result = run_promotion(
            rules,
            run,
            registry=store,
            run_id=run_id,
            out_dir=out_dir,
            render=render_version,
            approver=approver,
        )
    out().print(result.markdown())
    if result.manifest is not None:
        out().print(f"InferenceService: {result.manifest}")
    if not result.verdict.passed:
        raise typer.Exit(1)


def register(root: typer.Typer) -> None:
    """Add this package's commands to the ``engage`` application."""
    from ._cli_run import run

    root.command("run")(run)
    root.command("promote")(promote)
    root.add_typer(app, name="pipeline")
