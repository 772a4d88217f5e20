"""``engage rollout``: watch a canary through Prometheus, then promote it, roll it back, or say there was
not enough data; the decision and its evidence go on the audit trail and into a JSON report.

Exit 0: promote. 1: rollback. 2: insufficient data, or an error (Prometheus unreachable, a bad flag, a
failed kubectl patch after the decision was recorded).
"""

from __future__ import annotations

from pathlib import Path

import typer

from ._options import ACTOR_HELP, DB_HELP, actor_name

EXIT_PROMOTE, EXIT_ROLLBACK, EXIT_UNDECIDED = 0, 1, 2


def rollout(
    prometheus: str = typer.Option(
        ..., "--prometheus", help="Prometheus' base URL (http://prometheus:9090)."
    ),
    stable: str = typer.Option(
        ..., "--stable", help="The stable revision's series: LABEL=VALUE (job=engage)."
    ),
    canary: str = typer.Option(
        ..., "--canary", help="The canary revision's series: LABEL=VALUE (job=engage-canary)."
    ),
    period: str | None = typer.Option(
        None, "--period", help="How long to watch: 60s, 10m (default: the policy's, 10m)."
    ),
    interval: str | None = typer.Option(
        None, "--interval", help="Time between evaluations: 5s, 30s (default: the policy's, 30s)."
    ),
    policy: Path | None = typer.Option(
        None, "--policy", help="Rollout policy YAML (a rollout: section or its fields; default: built in)."
    ),
    isvc: str | None = typer.Option(None, "--isvc", help="The InferenceService to patch."),
    namespace: str | None = typer.Option(None, "--namespace", "-n", help="Its namespace."),
    apply: bool = typer.Option(
        False, "--apply", help="Patch canaryTrafficPercent with kubectl (else: print the patch)."
    ),
    kubectl: str = typer.Option("kubectl", "--kubectl", help="The kubectl binary."),
    context: str | None = typer.Option(None, "--context", help="kubeconfig context for kubectl."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Write the JSON report (decision and evidence) here."
    ),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    actor: str | None = typer.Option(None, "--actor", help=ACTOR_HELP),
) -> None:
    """Watch a canary against the stable revision through Prometheus, then promote or roll it back.

    Every interval for the period: the canary's error rate and p95 latency, its p95 against stable's, each
    head's prediction shift against stable (PSI and mean difference), and its drift statistic and live
    parity ratio when those series exist. A check failing in a row stops the watch early with a rollback.
    The decision is recorded on the audit trail (rollout.promote / rollout.rollback /
    rollout.insufficient_data) and, with --apply, applied by patching the InferenceService's
    canaryTrafficPercent (100 promote, 0 rollback). Exit 0 promote, 1 rollback, 2 insufficient data or error.
    """
    from engage.cli.console import err
    from engage.cli.console import out as stdout
    from engage.governance import AuditTrail, open_database
    from engage.rollout import load_rollout_policy, parse_duration, parse_target, run_rollout

    chosen = load_rollout_policy(
        policy,
        period_seconds=None if period is None else parse_duration(period, "--period"),
        interval_seconds=None if interval is None else parse_duration(interval, "--interval"),
    )
    stable_target, canary_target = parse_target(stable, "--stable"), parse_target(canary, "--canary")
    if apply and not (isvc and namespace):
        from engage.errors import ConfigError

        raise ConfigError("--apply needs the InferenceService: --isvc NAME and --namespace NS")
    database = open_database(db)
    console = stdout()
    console.print(
        f"watching {canary_target} against {stable_target} for {chosen.period_seconds:g} s "
        f"(every {chosen.interval_seconds:g} s) at {prometheus}"
    )
    result = run_rollout(
        prometheus, stable_target, canary_target, chosen, trail=AuditTrail(database), actor=actor_name(actor),
        isvc=isvc, namespace=namespace, apply=apply, kubectl=kubectl, context=context, out=out,
        say=lambda line: console.print(line, markup=False),
    )  # fmt: skip
    decision = result.decision
    console.print(f"decision: {decision.outcome}: {decision.reason}", markup=False)
    for evidence in decision.decisive:
        console.print("  " + evidence.describe(), markup=False)
    if result.command is not None:
        import shlex

        verb = "applied" if result.applied else "would apply (--apply to do it)"
        console.print(f"{verb}: {shlex.join(result.command)}", markup=False)
    elif result.patch is not None:
        console.print(f"patch (give --isvc and --namespace to apply it): {result.patch}", markup=False)
    else:
        err().print("nothing to apply: the canary keeps its share of the traffic", markup=False)
    if result.audit_seq is not None:
        console.print(f"recorded: audit seq {result.audit_seq} (rollout.{decision.outcome})")
    if out is not None:
        console.print(f"report: {out}")
    raise typer.Exit(
        {"promote": EXIT_PROMOTE, "rollback": EXIT_ROLLBACK}.get(decision.outcome, EXIT_UNDECIDED)
    )
