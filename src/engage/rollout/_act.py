"""Acting on a rollout decision: the InferenceService patch (through kubectl), the audit record, the report.

KServe's canary: ``spec.predictor.canaryTrafficPercent`` sends that share of the traffic to the latest
revision. Promote sets it to 100 (the latest revision takes all the traffic and becomes the one rolled out);
rollback sets it to 0 (all the traffic back to the previous revision). Insufficient data moves nothing.
"""

from __future__ import annotations

import hashlib
import json
import subprocess  # nosec B404 # kubectl, with an argument list
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engage.errors import ConfigError, DeployError

from ._policy import RolloutPolicy
from ._queries import Target
from ._watch import Clock, RolloutDecision, watch

if TYPE_CHECKING:
    from engage.governance import AuditTrail

__all__ = [
    "KUBECTL_TIMEOUT_SECONDS",
    "RolloutResult",
    "apply_patch",
    "kubectl_patch_command",
    "record_decision",
    "run_rollout",
    "traffic_patch",
]

#: seconds kubectl may take for the patch
KUBECTL_TIMEOUT_SECONDS = 60.0
_PERCENT = {"promote": 100, "rollback": 0}


def traffic_patch(outcome: str) -> dict[str, Any] | None:
    """The JSON merge patch of the InferenceService for ``outcome`` (None: nothing to change)."""
    percent = _PERCENT.get(outcome)
    return None if percent is None else {"spec": {"predictor": {"canaryTrafficPercent": percent}}}


def kubectl_patch_command(
    isvc: str, namespace: str, patch: dict[str, Any], *, kubectl: str = "kubectl", context: str | None = None
) -> list[str]:
    """``kubectl patch inferenceservice <isvc> --namespace <ns> --type merge --patch <json>``."""
    if not isvc or not namespace:
        raise ConfigError("patching an InferenceService needs its name (--isvc) and namespace (--namespace)")
    command = [kubectl, "patch", "inferenceservice", isvc, "--namespace", namespace]
    if context:
        command += ["--context", context]
    return [*command, "--type", "merge", "--patch", json.dumps(patch, separators=(",", ":"))]


def apply_patch(command: list[str], *, timeout: float = KUBECTL_TIMEOUT_SECONDS) -> str:
    """Run the kubectl command; its output. :class:`DeployError` (one line) when it fails or is missing."""
    try:
        done = subprocess.run(  # nosec B603 # an argument list, no shell
            command, capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise DeployError(f"{command[0]} is not installed (or not on PATH)") from None
    except subprocess.TimeoutExpired:
        raise DeployError(f"kubectl patch did not finish within {timeout:.0f} s") from None
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        raise DeployError(f"kubectl patch failed ({done.returncode}): {lines[-1] if lines else 'no output'}")
    return done.stdout.strip()


def record_decision(
    trail: AuditTrail,
    decision: RolloutDecision,
    *,
    actor: str,
    subject: str,
    extra: dict[str, Any] | None = None,
) -> int:
    """Append ``rollout.<outcome>`` with the versions, the failed checks and the decisive evidence; its seq."""
    payload = {
        "outcome": decision.outcome,
        "reason": decision.reason,
        "stable": decision.stable,
        "canary": decision.canary,
        "stable_versions": decision.versions.get("stable", []),
        "canary_versions": decision.versions.get("canary", []),
        "failed": decision.failed,
        "started": decision.started,
        "ended": decision.ended,
        "evaluations": decision.evaluations,
        "evidence": [e.to_json() for e in decision.decisive],
        **(extra or {}),
    }
    entry = trail.append(f"rollout.{decision.outcome}", actor=actor, subject=subject, payload=payload)
    return entry.seq


@dataclass
class RolloutResult:
    """The decision, what was (or would be) done on the cluster, and where it was recorded."""

    decision: RolloutDecision
    patch: dict[str, Any] | None
    command: list[str] | None
    applied: bool
    apply_output: str | None
    apply_error: str | None
    audit_seq: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            **self.decision.to_json(),
            "patch": self.patch,
            "command": self.command,
            "applied": self.applied,
            "apply_output": self.apply_output,
            "apply_error": self.apply_error,
            "audit_seq": self.audit_seq,
        }


def run_rollout(
    prometheus_url: str,
    stable: Target,
    canary: Target,
    policy: RolloutPolicy,
    *,
    trail: AuditTrail | None,
    actor: str = "engage",
    isvc: str | None = None,
    namespace: str | None = None,
    apply: bool = False,
    kubectl: str = "kubectl",
    context: str | None = None,
    out: Path | None = None,
    clock: Clock | None = None,
    say: Callable[[str], None] | None = None,
) -> RolloutResult:
    """Watch, decide, act: what ``engage rollout`` and a pipeline step after promotion call.

    With ``apply`` the InferenceService ``namespace/isvc`` is patched by kubectl; the decision is then
    recorded on ``trail`` (applied or not, with the kubectl error if any) and the report written to
    ``out``. A failed patch is raised as :class:`DeployError` after the record and the report.
    """
    if apply and not (isvc and namespace):
        raise ConfigError("--apply needs the InferenceService: --isvc NAME and --namespace NS")
    decision = watch(prometheus_url, policy, stable, canary, clock, say=say)
    patch = traffic_patch(decision.outcome)
    command = (
        kubectl_patch_command(isvc, namespace, patch, kubectl=kubectl, context=context)
        if patch is not None and isvc and namespace
        else None
    )
    applied, output, error = False, None, None
    if apply and command is not None:
        try:
            output, applied = apply_patch(command), True
        except DeployError as e:
            error = str(e)
    result = RolloutResult(decision, patch, command, applied, output, error, None)
    if trail is not None:
        subject = f"inferenceservice:{namespace}/{isvc}" if isvc and namespace else f"rollout:{canary}"
        extra = {
            "isvc": isvc,
            "namespace": namespace,
            "patch": patch,
            "applied": applied,
            "apply_error": error,
        }
        result.audit_seq = record_decision(trail, decision, actor=actor, subject=subject, extra=extra)
    if out is not None:
        write_report(result, out)
    if error is not None:
        raise DeployError(f"the {decision.outcome} decision was recorded but not applied: {error}")
    return result


def write_report(result: RolloutResult, out: Path) -> str:
    """The JSON report, written whole or not at all; its SHA-256."""
    from engage._io import write_text_atomic

    text = json.dumps(result.to_json(), indent=2, allow_nan=False) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, text)
    return hashlib.sha256(text.encode()).hexdigest()
