"""The retraining trigger: when the live report crosses the policy, start a training run and say why.

A report whose prediction drift, live accuracy or live fairness rule is crossed (its ``crossed``
sections) starts one run of the training pipeline with the given parameters (fresh data: the newest
table, ``data_uri``, or a table generated as of this hour): under ``kfp.local`` here
(:func:`local_runner`, :func:`engage_components.run_local`), on a cluster through the KFP API
(:func:`cluster_runner`, :func:`engage_components.submit`). Each trigger is recorded on the audit trail
as ``retraining.triggered`` with the crossed rules, their observed values and thresholds, and the run id
(``run_id`` None and ``error`` set when the run could not be started; the error is then raised).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engage.feedback import LiveReport
    from engage.governance import AuditTrail

__all__ = [
    "RETRAIN_EVENT",
    "TRIGGERS",
    "RetrainDecision",
    "Runner",
    "cluster_runner",
    "local_runner",
    "retrain_if_needed",
]

RETRAIN_EVENT = "retraining.triggered"
#: the report sections whose crossed rules start a training run
TRIGGERS = ("prediction_drift", "live_accuracy", "live_fairness")

#: starts a run of the training pipeline with these parameters: returns (run id, state)
Runner = Callable[[dict[str, Any]], tuple[str, str]]


@dataclass
class RetrainDecision:
    triggered: bool
    #: the crossed rules that decided it ("section: head: rule")
    reasons: list[str] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)
    run_id: str | None = None
    state: str | None = None
    audit_seq: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "triggered": self.triggered,
            "reasons": self.reasons,
            "sections": self.sections,
            "run_id": self.run_id,
            "state": self.state,
            "audit_seq": self.audit_seq,
        }


def local_runner(pipeline_root: Path) -> Runner:
    """The whole pipeline under ``kfp.local`` (synchronous): the run id is its job folder's name."""

    def run(params: dict[str, Any]) -> tuple[str, str]:
        from ._local import run_local

        summary = run_local(params, pipeline_root=pipeline_root)
        return (summary.job_dir.name if summary.job_dir is not None else ""), summary.state

    return run


def cluster_runner(host: str, *, experiment: str = "engage", namespace: str | None = None) -> Runner:
    """A run on the cluster's KFP API (it runs on; the state is ``SUBMITTED``)."""

    def run(params: dict[str, Any]) -> tuple[str, str]:
        from ._local import submit

        ids = submit(host, params, experiment=experiment, namespace=namespace)
        return ids["run_id"], "SUBMITTED"

    return run


def retrain_if_needed(
    report: LiveReport,
    params: dict[str, Any],
    *,
    runner: Runner,
    trail: AuditTrail,
    actor: str,
) -> RetrainDecision:
    """Start ``runner(params)`` when ``report`` crossed a drift, live-accuracy or live-fairness rule, and
    record why on ``trail``; nothing (``triggered`` False) otherwise."""
    crossed = [r for r in report.failures if r.section in TRIGGERS]
    if not crossed:
        return RetrainDecision(False)
    reasons = [f"{r.section}: {r.head}: {r.rule}" for r in crossed]
    sections = [s for s in TRIGGERS if any(r.section == s for r in crossed)]
    payload: dict[str, Any] = {
        "model": report.model,
        "versions": report.versions,
        "verdict": report.verdict,
        "sections": sections,
        "rules": [
            {
                "section": r.section,
                "head": r.head,
                "rule": r.rule,
                "observed": r.observed,
                "threshold": r.threshold,
            }
            for r in crossed
        ],
        "window": {
            "since": report.since.isoformat() if report.since else None,
            "until": report.until.isoformat() if report.until else None,
            "predictions": report.predictions,
            "labelled": report.labelled,
        },
        "params": {k: str(v) for k, v in params.items()},
    }
    try:
        run_id, state = runner(params)
    except Exception as e:
        trail.append(
            RETRAIN_EVENT,
            actor=actor,
            subject=report.model,
            payload={**payload, "run_id": None, "error": f"{type(e).__name__}: {e}"},
        )
        raise
    entry = trail.append(
        RETRAIN_EVENT,
        actor=actor,
        subject=report.model,
        payload={**payload, "run_id": run_id, "state": state},
    )
    return RetrainDecision(True, reasons, sections, run_id, state, entry.seq)
