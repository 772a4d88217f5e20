"""The closed loop as pipeline steps: the feedback run (``engage-feedback``) and the rollout after promotion.

Plain functions, as :mod:`engage_components.steps`: the components in :mod:`engage_components.components`
only call them with their artifacts' paths, and tests call them directly.

* :func:`feedback_step`: the logged traffic of a window (the drift detector's event store) joined with the
  outcomes, judged by the promotion policy (:func:`engage.feedback.live_report`), written, pushed to a
  Pushgateway, and, asked to, a training run started through the KFP API when the policy is crossed
  (:func:`engage_components._feedback.retrain_if_needed`, recorded on the audit trail). What ``engage
  feedback --retrain`` does, as one step of a recurring run.
* :func:`rollout_step`: after ``promote``, the canary watched through Prometheus and promoted to all the
  traffic or rolled back (:func:`engage.rollout.run_rollout`, recorded on the audit trail); skipped, with
  the reason, when there is nothing to watch (no Prometheus given, no new version, no canary split).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from engage._dates import parse_instant
from engage.errors import ConfigError

from ._feedback import Runner

__all__ = [
    "DEFAULT_KFP_HOST",
    "MODEL_VERSION_LABEL",
    "NOT_WATCHED",
    "feedback_line",
    "feedback_step",
    "rollout_line",
    "rollout_step",
]

#: why there is no rollout without a Prometheus (the pipeline then runs no rollout task at all)
NOT_WATCHED = "no rollout_prometheus given: the canary keeps its share (watch it with engage rollout)"
#: the KFP API inside the cluster (Kubeflow's ``ml-pipeline`` service): where a step starts a training run
DEFAULT_KFP_HOST = "http://ml-pipeline.kubeflow.svc.cluster.local:8888"
#: the series label that tells two model versions apart on a cluster: the PodMonitor copies the pods'
#: ``engage.dev/model-version`` label (the version's short id) to it (docs/rollout.md "As a pipeline step")
MODEL_VERSION_LABEL = "model_version"


def feedback_window(
    days: int, since: str, until: str, now: datetime | None = None
) -> tuple[datetime | None, datetime | None]:
    """The events read: ``since``..``until`` when given; else the last ``days`` days before ``until`` (or
    now); ``days`` 0 with neither: every event."""
    if days < 0:
        raise ConfigError(f"days: must be 0 (every event) or more, got {days}")
    start, end = parse_instant(since, "since"), parse_instant(until, "until")
    if start is not None and end is not None and start >= end:
        raise ConfigError(f"since ({since}) must be before until ({until})")
    if start is None and days > 0:
        start = (end or now or datetime.now(UTC)) - timedelta(days=days)
    return start, end


def feedback_step(
    out_dir: Path,
    *,
    events_uri: str,
    outcomes_uri: str,
    days: int = 30,
    since: str = "",
    until: str = "",
    contract: str = "",
    policy: str = "",
    reference_uri: str = "",
    pushgateway: str = "",
    retrain: bool = False,
    train_params: dict[str, Any] | None = None,
    kfp_host: str = DEFAULT_KFP_HOST,
    experiment: str = "engage",
    governance_db: str = "",
    actor: str = "pipeline",
    runner: Runner | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The live report of the window's events and the outcomes: ``report.json`` and ``report.md`` in
    ``out_dir``, the ``engage_live_*`` figures pushed to ``pushgateway`` (when given), and with ``retrain``
    a training run with ``train_params`` (``ENGAGE_RUN_*`` settings: fresh data) started on ``kfp_host``
    (or by ``runner``) when a drift, live-accuracy or live-fairness rule is crossed, recorded on the
    audit trail of ``governance_db`` (``retrain.json``). Returns the step's summary."""
    from engage.feedback import push_live_metrics, report_window, write_report

    if not events_uri or not outcomes_uri:
        raise ConfigError("the feedback run needs events_uri (the event store) and outcomes_uri (a table)")
    start, end = feedback_window(days, since, until, now)
    trigger = (runner or _cluster(kfp_host, experiment)) if retrain else None  # a bad host fails first
    report = report_window(
        events_uri, outcomes_uri, since=start, until=end, contract=contract or None, policy=policy or None,
        reference_uri=reference_uri or None,
    )  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    write_report(report, out_dir)
    if pushgateway:
        push_live_metrics(report, pushgateway, model=report.model or "engage")
    done: dict[str, Any] = {
        "verdict": report.verdict,
        "reasons": report.reasons,
        "crossed": report.crossed,
        "model": report.model,
        "predictions": report.predictions,
        "labelled": report.labelled,
        "coverage": report.coverage,
        "since": start.isoformat() if start else None,
        "until": end.isoformat() if end else None,
        "pushgateway": pushgateway or None,
        "retrain": None,
    }
    if trigger is not None:
        done["retrain"] = _retrain(report, out_dir, train_params or {}, trigger, governance_db, actor)
    return done


def _cluster(host: str, experiment: str) -> Runner:
    from ._feedback import cluster_runner

    if not host:
        raise ConfigError("retrain: kfp_host is empty (the KFP API that starts the training run)")
    return cluster_runner(host, experiment=experiment)


def _retrain(
    report: Any, out_dir: Path, values: dict[str, Any], runner: Runner, governance_db: str, actor: str
) -> dict[str, Any]:
    from engage._io import write_text_atomic
    from engage.governance import AuditTrail, open_database
    from engage.settings import RunSettings

    from ._feedback import retrain_if_needed

    params = RunSettings(**values).pipeline_params()
    trail = AuditTrail(open_database(governance_db or None))
    decision = retrain_if_needed(report, params, runner=runner, trail=trail, actor=actor)
    written = decision.to_json()
    write_text_atomic(out_dir / "retrain.json", json.dumps(written, indent=2) + "\n")
    return written


def feedback_line(done: dict[str, Any]) -> str:
    """The step's one line: the verdict, the window's counts, and what the trigger did."""
    line = (
        f"feedback: {done['verdict']} on {done['predictions']:,} predictions, {done['labelled']:,} with an "
        f"outcome (coverage {done['coverage']:.1%})"
    )
    if done.get("crossed"):
        line += "; crossed: " + ", ".join(done["crossed"])
    retrain = done.get("retrain")
    if retrain is not None:
        line += (
            f"; retraining run {retrain['run_id']} ({retrain['state']}), audit record {retrain['audit_seq']}"
            if retrain["triggered"]
            else "; retraining not needed"
        )
    return line


# ---- the rollout after promotion ---------------------------------------------------------------------


@dataclass(frozen=True)
class Canary:
    """What the promote step deployed as a canary: the rendered InferenceService and the two versions."""

    manifest: dict[str, Any]
    percent: int
    stable: str
    canary: str

    @property
    def name(self) -> str:
        return str(self.manifest["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.manifest["metadata"].get("namespace") or "")


def _canary_of(promotion: Path) -> Canary | str:
    """The canary the promotion deployed, or why there is nothing to watch."""
    import yaml

    file = promotion / "promotion.json"
    if not file.is_file():
        return "the promote step wrote no promotion.json"
    done: dict[str, Any] = json.loads(file.read_text(encoding="utf-8"))
    if not done.get("promoted"):
        return "this run promoted no new version"
    moved = [m for m in done.get("moves", []) if m.get("alias") == "production" and m.get("changed", True)]
    if not moved or moved[0].get("from_version") in (None, moved[0].get("to_version")):
        return "no earlier production version: there is no stable revision to compare a canary with"
    manifest = done.get("inference_service")
    if not manifest or not Path(manifest).is_file():
        return "no InferenceService was rendered for the promoted version"
    isvc = yaml.safe_load(Path(manifest).read_text(encoding="utf-8")) or {}
    percent = ((isvc.get("spec") or {}).get("predictor") or {}).get("canaryTrafficPercent")
    if percent is None:
        return "no canary split (canary percent 0 or 100): the new version takes all the traffic"
    return Canary(isvc, percent, moved[0]["from_version"], moved[0]["to_version"])


def rollout_step(
    out_dir: Path,
    *,
    promotion: Path,
    prometheus: str,
    isvc: str = "",
    namespace: str = "",
    stable: str = "",
    canary: str = "",
    period: str = "",
    interval: str = "",
    policy: str = "",
    apply: bool = True,
    governance_db: str = "",
    actor: str = "pipeline",
    clock: Any = None,
    rollout: Callable[..., Any] | None = None,
    deploy: Callable[[dict[str, Any]], str] | None = None,
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Put the canary the promote step rendered (its ``promotion`` folder) in front of its share of the
    traffic, watch it through ``prometheus``, then promote or roll it back: with ``apply``, the rendered
    InferenceService is created or merge-patched first (``deploy``: by default
    :func:`engage_serving.deploy.apply_inference_service` with the pod's service account), then
    :func:`engage.rollout.run_rollout` watches, decides and patches, recorded on the audit trail of
    ``governance_db``, its report in ``out_dir/rollout.json``. Without ``apply`` the canary is assumed
    deployed (``engage deploy``, GitOps) and the decision is only recorded. Skipped (``outcome``
    ``skipped`` and the reason) without a Prometheus URL, a new production version or a canary split.

    ``stable`` / ``canary`` (``LABEL=VALUE``; empty: ``model_version=<short id>`` of the previous and the
    new production version), ``isvc`` / ``namespace`` (empty: the rendered InferenceService's),
    ``period`` / ``interval`` (``10m``, ``30s``; empty: the rollout policy's), ``policy`` (a rollout policy
    file; empty: the defaults). ``summary.json`` in ``out_dir`` says what was done."""
    from engage._io import write_text_atomic

    out_dir.mkdir(parents=True, exist_ok=True)
    deployed = _canary_of(promotion) if prometheus else NOT_WATCHED
    if isinstance(deployed, str):
        summary: dict[str, Any] = {"outcome": "skipped", "reason": deployed}
    else:
        summary = _watch(
            out_dir, deployed, prometheus=prometheus, isvc=isvc, namespace=namespace, stable=stable,
            canary=canary, period=period, interval=interval, policy=policy, apply=apply,
            governance_db=governance_db, actor=actor, clock=clock, rollout=rollout, deploy=deploy, say=say,
        )  # fmt: skip
    write_text_atomic(out_dir / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def _watch(
    out_dir: Path,
    deployed: Canary,
    *,
    prometheus: str,
    isvc: str,
    namespace: str,
    stable: str,
    canary: str,
    period: str,
    interval: str,
    policy: str,
    apply: bool,
    governance_db: str,
    actor: str,
    clock: Any,
    rollout: Callable[..., Any] | None,
    deploy: Callable[[dict[str, Any]], str] | None,
    say: Callable[[str], None] | None,
) -> dict[str, Any]:
    from engage.governance import AuditTrail, open_database
    from engage.rollout import load_rollout_policy, parse_duration, parse_target, run_rollout
    from engage_serving.deploy import version_ids

    chosen = load_rollout_policy(
        policy or None,
        period_seconds=parse_duration(period, "rollout_period") if period else None,
        interval_seconds=parse_duration(interval, "rollout_interval") if interval else None,
    )
    # the short id, as the pods' engage.dev/model-version label carries it
    stable_target = parse_target(
        stable or f"{MODEL_VERSION_LABEL}={version_ids(deployed.stable)[1]}", "rollout_stable"
    )
    canary_target = parse_target(
        canary or f"{MODEL_VERSION_LABEL}={version_ids(deployed.canary)[1]}", "rollout_canary"
    )
    name, ns = isvc or deployed.name, namespace or deployed.namespace
    applied_manifest = None
    if apply:  # the canary split first: the watch needs its traffic
        manifest = copy.deepcopy(deployed.manifest)
        manifest["metadata"].update(name=name, namespace=ns)
        applied_manifest = (deploy or _apply_in_cluster)(manifest)
        if say is not None:
            say(
                f"rollout: InferenceService {ns}/{name} {applied_manifest} with the canary at {deployed.percent} %"
            )
    result = (rollout or run_rollout)(
        prometheus, stable_target, canary_target, chosen, trail=AuditTrail(open_database(governance_db or None)),
        actor=actor, isvc=name, namespace=ns, apply=apply, out=out_dir / "rollout.json", clock=clock, say=say,
    )  # fmt: skip
    decision = result.decision
    return {
        "outcome": decision.outcome,
        "reason": decision.reason,
        "stable": str(stable_target),
        "canary": str(canary_target),
        "isvc": name,
        "namespace": ns,
        "canary_percent": deployed.percent,
        "deployed": applied_manifest,
        "period_seconds": chosen.period_seconds,
        "applied": result.applied,
        "patch": result.patch,
        "audit_seq": result.audit_seq,
    }


def _apply_in_cluster(manifest: dict[str, Any]) -> str:
    """Create or merge-patch the InferenceService with the pod's service account (a pipeline step)."""
    from engage_serving.deploy import apply_inference_service

    return apply_inference_service(manifest, kubeconfig=None)


def rollout_line(done: dict[str, Any]) -> str:
    """The step's one line: skipped and why, or the decision, its reason and whether it was applied."""
    if done["outcome"] == "skipped":
        return f"rollout: skipped: {done['reason']}"
    applied = "applied" if done.get("applied") else "not applied"
    return (
        f"rollout: {done['outcome']} {done['canary']} against {done['stable']} "
        f"({done['namespace']}/{done['isvc']}, {applied}; audit record {done['audit_seq']}): {done['reason']}"
    )
