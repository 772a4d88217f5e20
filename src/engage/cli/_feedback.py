"""``engage feedback``: the logged predictions joined with their outcomes, judged by the policy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from engage._dates import parse_instant

from ._options import DB_HELP, actor_name

if TYPE_CHECKING:
    from engage.feedback import LiveReport


def feedback(
    events: str = typer.Option(
        ..., "--events", help="The event store (the drift detector's --event_store URI: folder or s3://...)."
    ),
    outcomes: Path = typer.Option(
        ...,
        "--outcomes",
        help="Parquet or CSV of outcomes: the customer id, observed_at, and outcome columns named as the "
        "contract's targets (churned, engagement_score, ltv).",
    ),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Where report.json and report.md go."),
    pushgateway: str | None = typer.Option(
        None, "--pushgateway", help="Prometheus Pushgateway host:port for the engage_live_* figures."
    ),
    contract: Path | None = typer.Option(
        None, "--contract", "-c", help="Contract file (default: customers)."
    ),
    policy: Path | None = typer.Option(
        None, "--policy", help="Promotion policy file (default: the shipped one)."
    ),
    reference: Path | None = typer.Option(
        None,
        "--reference",
        help="Table of the model's predictions on training rows (columns churn_probability, ...: engage "
        "train's test predictions) for prediction drift; default: the window's first half.",
    ),
    since: str | None = typer.Option(None, "--since", help="First event time read, ISO 8601 (default: all)."),
    until: str | None = typer.Option(
        None, "--until", help="Events before this time, ISO 8601 (default: all)."
    ),
    retrain: bool = typer.Option(
        False, "--retrain", help="Start a training run when drift, live accuracy or live fairness is crossed."
    ),
    param: list[str] = typer.Option(
        [],
        "--param",
        "-p",
        help="NAME=VALUE for the training run (ENGAGE_RUN_* settings, e.g. data_uri=...).",
    ),
    kfp_host: str | None = typer.Option(
        None, "--kfp-host", help="Start the training run on this KFP API (default: kfp.local here)."
    ),
    database: str | None = typer.Option(None, "--db", help=DB_HELP),
    actor: str | None = typer.Option(None, "--actor", help="Who triggers a retraining (default: $USER)."),
) -> None:
    """Live accuracy, live fairness, prediction drift and business figures; exit 1 when the policy is crossed."""
    from engage.cli.console import err, out
    from engage.feedback import push_live_metrics, report_window, write_report

    report = report_window(
        events, outcomes, since=parse_instant(since, "--since"), until=parse_instant(until, "--until"),
        contract=contract, policy=policy, reference_uri=reference,
    )  # fmt: skip
    written = write_report(report, out_dir)
    console = out()
    console.print(f"verdict: {report.verdict}")
    for reason in report.reasons:
        console.print(f"  {reason}")
    err().print(
        f"{report.predictions:,} predictions, {report.labelled:,} with an outcome (coverage {report.coverage:.1%}); "
        f"wrote {written['json']} and {written['markdown']}",
        style="dim",
    )
    if pushgateway:
        push_live_metrics(report, pushgateway, model=report.model or "engage")
        err().print(f"pushed engage_live_* to {pushgateway} (job engage_feedback)", style="dim")
    if retrain:
        _retrain(report, param, kfp_host, database, actor, out_dir)
    if report.verdict == "fail":
        raise typer.Exit(1)


def _retrain(
    report: LiveReport,
    param: list[str],
    kfp_host: str | None,
    database: str | None,
    actor: str | None,
    out_dir: Path,
) -> None:
    """Start a training run through the retraining trigger of engage-components, and say so."""
    from engage.cli.console import out
    from engage.errors import ConfigError
    from engage.governance import AuditTrail, open_database
    from engage.settings import RunSettings

    trigger = _trigger()
    values: dict[str, str] = {}
    for item in param:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--param: expected NAME=VALUE, got {item!r}")
        values[name.strip()] = value
    settings = RunSettings(**values)  # type: ignore[arg-type]
    runner = trigger.cluster_runner(kfp_host) if kfp_host else trigger.local_runner(settings.out_dir)
    decision = trigger.retrain_if_needed(
        report,
        settings.pipeline_params(),
        runner=runner,
        trail=AuditTrail(open_database(database)),
        actor=actor_name(actor),
    )
    from engage._io import write_text_atomic

    write_text_atomic(out_dir / "retrain.json", json.dumps(decision.to_json(), indent=2) + "\n")
    if decision.triggered:
        out().print(
            f"retraining: run {decision.run_id} ({decision.state}); audit record {decision.audit_seq}"
        )
    else:
        out().print("retraining: not needed (no drift, live accuracy or live fairness rule crossed)")


def _trigger() -> Any:
    """The retraining trigger (``<plugin>._feedback``) of the package that adds ``engage run`` to this CLI
    through the ``engage.cli`` entry points (engage-components): found, like its commands, through the
    entry point, since the library builds on no pipeline package (it needs kfp)."""
    from importlib import import_module
    from importlib.metadata import entry_points

    from engage.errors import ConfigError

    for entry in sorted(entry_points(group="engage.cli"), key=lambda e: e.name):
        try:
            return import_module(f"{entry.module.split('.')[0]}._feedback")
        except ModuleNotFoundError:
            continue
    raise ConfigError(
        "--retrain needs engage-components (the pipeline package, which adds engage run) installed"
    )
