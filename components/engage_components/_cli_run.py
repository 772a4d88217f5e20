"""``engage run``: the main job. The whole Kubeflow pipeline under ``kfp.local`` on embedded defaults:
generate (or read) a customer table, the data-quality gate, features, the three heads in parallel,
evaluation, the fairness gate with mitigation, explanations and the model card, the drift reference,
and promotion by the one policy into the model registry, with the InferenceService rendered. Then a
summary: each gate with its reasons, each head's metrics, the promoted version, where everything is,
the run's cost. A second run within the hour reuses every cached step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from engage_components import RunSummary


def run(
    rows: int | None = typer.Option(None, "--rows", "-n", help="Customers to generate (default 100,000)."),
    seed: int | None = typer.Option(None, "--seed", "-s", help="Seed (default 42)."),
    out_dir: Path | None = typer.Option(None, "--out-dir", help="Output folder (default artifacts/run)."),
) -> None:
    """Run the pipeline under kfp.local on embedded defaults (environment: ENGAGE_RUN_*; flags win).

    Exit 0 when the pipeline ran, promoted or not (the summary says why not); 1 when a step failed.
    """
    from engage.contract import load_contract
    from engage.policy import load_policy
    from engage.settings import RunSettings

    overrides = {k: v for k, v in {"rows": rows, "seed": seed, "out_dir": out_dir}.items() if v is not None}
    settings = RunSettings(**overrides)  # type: ignore[arg-type]
    # a bad contract or policy fails here, before any step runs
    load_contract(settings.contract)
    load_policy(settings.policy)
    summary = run_pipeline(settings)
    print_summary(summary)
    if summary.state != "SUCCEEDED":
        raise typer.Exit(1)


def run_pipeline(settings: Any) -> RunSummary:
    from engage.cli.console import err, stage
    from engage_components import run_local

    source = settings.data_uri or f"{settings.rows:,} generated customers (seed {settings.seed})"
    err().print(f"pipeline engage-customers under kfp.local on {source}; outputs in {settings.out_dir}/")
    with stage("pipeline run (each step a process; cached steps are reused)"):
        return run_local(settings.pipeline_params(), pipeline_root=settings.out_dir)


def print_summary(summary: RunSummary) -> None:
    from rich.table import Table

    from engage.cli.console import out

    console = out()
    steps = (summary.outcome or {}).get("steps", [])
    console.print(
        f"\n[bold]Pipeline[/]: {summary.state} in {summary.seconds:.0f} s; {len(steps)} step(s) ran "
        "(a step whose inputs did not change comes from the cache and does not run)"
        + (f"\n  error: {summary.error} (log: {summary.log})" if summary.error else "")
    )
    quality = summary.read("quality", "report.json")
    if quality is not None:
        console.print(
            f"[bold]Quality gate[/]: {quality['verdict'].upper().replace('_', ' ')}: {quality.get('reason', '')} "
            f"({quality.get('rows_in', 0):,} rows in, {quality.get('rows_quarantined', 0):,} quarantined)"
        )
    evaluation = summary.read("training", "evaluation.json")
    if evaluation is not None:
        table = Table(title="heads (test split, xgboost)", title_justify="left")
        for col in ("head", "metrics"):
            table.add_column(col)
        for name, head in evaluation["heads"].items():
            test = head["models"]["xgboost"]["test"]
            keys = [k for k in ("r2", "rmse", "spearman", "auc_roc", "pr_auc", "ece") if k in test]
            table.add_row(name, ", ".join(f"{k} {test[k]:.4f}" for k in keys))
        console.print(table)
    fairness = summary.read("fairness", "fairness.json")
    if fairness is not None:
        console.print(
            f"[bold]Fairness gate[/]: {fairness['verdict'].upper().replace('_', ' ')}: {fairness.get('reason', '')}"
        )
    _print_promotion(summary)
    _print_review_sample(summary)
    _print_batch_score(summary)
    _print_rollout(summary)
    _print_cost(summary)


def _print_promotion(summary: RunSummary) -> None:
    from engage.cli.console import out

    console = out()
    promotion = summary.promotion
    if promotion is None:
        console.print("[bold]Promotion[/]: not reached (a gate above failed, or a step did)")
        return
    if promotion["promoted"]:
        console.print(
            f"[bold]Promotion[/]: PROMOTED {promotion['version']}"
            + (f" ({promotion['note']})" if promotion.get("note") else "")
        )
        for move in promotion.get("moves", []):
            console.print(
                f"  alias {move.get('alias')}: {move.get('from_version') or '-'} -> {move.get('to_version')}"
            )
    else:
        console.print("[bold]Promotion[/]: NOT PROMOTED; failed rules:")
        for rule in promotion["failures"]:
            console.print(f"  {rule['section']}/{rule['head']}: {rule['rule']} (observed {rule['observed']})")
    for name, label in (
        ("card", "model card"),
        ("explanations", "explanations"),
        ("training", "training report"),
    ):
        if name in summary.outputs:
            console.print(f"{label}: {summary.outputs[name]}")
    if promotion.get("inference_service"):
        console.print(
            f"InferenceService: {promotion['inference_service']}  (kubectl apply -f it, or engage deploy)"
        )
        console.print(Path(promotion["inference_service"]).read_text(encoding="utf-8"))
        console.print(
            "Serve it here: make serve (engage serve: predictor, explainer, drift detector, Prometheus)"
        )


def _print_review_sample(summary: RunSummary) -> None:
    from engage.cli.console import out

    sample = summary.read("review_sample", "")
    if sample is None:
        return
    if not sample.get("items"):
        out().print(f"[bold]Review sample[/]: {sample.get('note', 'none')}")
        return
    out().print(
        f"[bold]Review sample[/]: {sample['items']} records in {len(sample['strata'])} strata of run "
        f"{sample['run_id']} put in the review queue ({sample['database']})"
    )


def _print_batch_score(summary: RunSummary) -> None:
    from engage.cli.console import out

    from .steps import batch_score_line

    report = summary.read("batch_score", "report.json")
    if report is not None:
        out().print(f"[bold]Batch scoring[/]: {batch_score_line(report).removeprefix('batch-score: ')}")


def _print_rollout(summary: RunSummary) -> None:
    from rich.markup import escape

    from engage.cli.console import out

    from ._loop import NOT_WATCHED, rollout_line

    done = summary.read("rollout", "summary.json")
    if done is None and summary.promotion is not None and summary.state == "SUCCEEDED":
        done = {"outcome": "skipped", "reason": NOT_WATCHED}  # without one the pipeline runs no rollout task
    if done is not None:
        out().print(f"[bold]Rollout[/]: {escape(rollout_line(done).removeprefix('rollout: '))}")


def _print_cost(summary: RunSummary) -> None:
    from engage.cli.console import out

    cost = (summary.outcome or {}).get("cost")
    if not cost:
        return
    console = out()
    times = ", ".join(f"{s['step']} {s['seconds']:.0f} s" for s in cost["steps"])
    below = cost.get("below_target_by")
    console.print(
        f"[bold]Cost[/]: ${cost['on_demand_usd']:.4f} on-demand, ${cost['spot_usd']:.4f} Spot ({cost['node_type']}) for the "
        f"steps that ran" + (f", {below:,.0f}x below the ${cost['target_usd']:.2f} target" if below else "")
    )
    console.print(f"  step times: {times or 'none (all cached)'}")
    console.print(
        f"outcome: {summary.outputs.get('outcome')}  ({json.dumps(summary.state)}); log: {summary.log}"
    )
