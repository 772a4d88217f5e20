"""Promotion: judge a whole run by the one promotion policy, and ship only a model that passes.

:func:`judge` reads a run's artifacts (the quality gate's ``report.json``, training's
``evaluation.json``, the fairness gate's ``fairness.json``, the drift reference's ``summary.json``) and
lists every rule of every policy section with its observed value and threshold. The head and
overfitting rules judge the model that ships: where the fairness gate ships a mitigated candidate,
that candidate's figures (from ``fairness.json``), not the trained model's; each such rule, and each
failure line of the audit record, says whose figures it judged. :func:`promote` then
publishes a passing model to the registry (content-addressed, with its reports, card and drift
reference), moves the aliases (``candidate``, ``production``, ``previous``) and has the
InferenceService rendered (by the ``render`` it is given: KServe's models are ``engage-serving``'s); a failing run moves nothing and leaves an audit record of why. Either audit record (``promotion``,
``promotion_refused``) carries the fairness decision: its verdict, whether fairness applied, and why. The same functions
run inside the KFP promote step, under ``kfp.local`` and behind ``engage promote``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engage.errors import ArtifactError
from engage.policy import PolicyVerdict, PromotionPolicy, RuleOutcome, evaluate

__all__ = [
    "PromotionResult",
    "Render",
    "RunArtifacts",
    "Shipped",
    "describe",
    "fairness_decision",
    "judge",
    "promote",
    "shipped_figures",
]

#: ``render(version, canary_percent)``: the InferenceService YAML of a promoted registry version
#: (``engage_serving.deploy.render_version``; this library does not import KServe)
Render = Callable[[Any, int], str]


@dataclass(frozen=True)
class RunArtifacts:
    """Where one run's outputs are (any may be absent: the verdict then says which rule lacks it)."""

    training: Path
    quality: Path | None = None
    fairness: Path | None = None
    explanations: Path | None = None
    card: Path | None = None
    drift: Path | None = None

    @property
    def model(self) -> Path:
        """The model to ship: the fairness gate's choice when it wrote one, else the trained model."""
        if self.fairness is not None and (self.fairness / "model" / "manifest.json").is_file():
            return self.fairness / "model"
        return self.training / "model"


def _read(path: Path | None) -> dict[str, Any] | None:
    if path is None or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: expected a JSON object")
    return data


def judge(policy: PromotionPolicy, run: RunArtifacts, *, champion: bool = True) -> PolicyVerdict:
    """Every rule of the policy against this run's artifacts, in one verdict.

    ``champion=False`` leaves out champion / challenger: the model is the production model itself (a
    rerun of the same inputs), which cannot beat itself and need not.
    """
    rules: list[RuleOutcome] = []
    rules += _quality_rules(policy, _read(run.quality / "report.json" if run.quality else None))
    evaluation = _read(run.training / "evaluation.json")
    if evaluation is None:
        raise ArtifactError(f"{run.training / 'evaluation.json'}: missing: not the output of a training step")
    rules += _training_rules(policy, evaluation, shipped_figures(run))
    if policy.promotion.require_fairness:
        rules += _fairness_rules(_read(run.fairness / "fairness.json" if run.fairness else None))
    if policy.promotion.require_champion_win and champion:
        rules += _champion_rules(evaluation.get("champion"))
    rules += _drift_rules(policy, _read(run.drift / "summary.json" if run.drift else None))
    return PolicyVerdict(policy=policy.policy, version=policy.version, rules=rules)


def _rule(section: str, head: str, rule: str, observed: Any, threshold: Any, passed: bool) -> RuleOutcome:
    return RuleOutcome(
        section=section, head=head, rule=rule, observed=observed, threshold=threshold, passed=passed
    )


def _quality_rules(policy: PromotionPolicy, report: dict[str, Any] | None) -> list[RuleOutcome]:
    allowed = policy.quality.allowed_verdicts
    if report is None:
        return [_rule("quality", "table", "quality report present", None, "report.json", False)]
    verdict = str(report.get("verdict"))
    rows_in = report.get("rows_in") or 0
    share = (report.get("rows_quarantined") or 0) / rows_in if rows_in else None
    limit = policy.quality.max_quarantine_share
    return [
        _rule(
            "quality",
            "table",
            f"gate verdict in {', '.join(allowed)}",
            verdict,
            ", ".join(allowed),
            verdict in allowed,
        ),
        _rule(
            "quality",
            "table",
            f"quarantined share <= {limit:g}",
            share,
            limit,
            share is not None and share <= limit,
        ),
    ]


#: whose figures a head's rules judge when the trained model ships (see :func:`shipped_figures`)
TRAINED = "trained model (evaluation.json)"


@dataclass(frozen=True)
class Shipped:
    """The figures of the model one head ships, when the fairness gate ships a mitigated candidate."""

    candidate: str
    test: dict[str, Any]
    train: dict[str, Any]
    test_rows: int | None

    @property
    def judged_on(self) -> str:
        rows = f" on {self.test_rows:,} test rows" if self.test_rows else ""
        return f"mitigated model {self.candidate} (fairness gate's figures{rows})"


def shipped_figures(run: RunArtifacts) -> dict[str, Shipped]:
    """Per head whose shipped model is a mitigated candidate, that candidate's figures.

    Only when the fairness gate's model is the one that ships (``run.model``); the gate measures each
    candidate on the test rows training measured, and the chosen one on the training rows too. A gate
    output without train figures (written before they were recorded) leaves ``train`` empty, so the
    overfitting rule fails rather than judging the trained model in the shipped one's place."""
    if run.fairness is None or run.model != run.fairness / "model":
        return {}
    fairness = _read(run.fairness / "fairness.json") or {}
    out: dict[str, Shipped] = {}
    for name, head in fairness.get("heads", {}).items():
        chosen = head.get("chosen")
        if chosen in (None, "unmitigated"):
            continue
        shipped = head.get("shipped") or {}
        candidate: dict[str, Any] = next(
            (c for c in head.get("candidates", []) if c.get("name") == chosen), {}
        )
        out[name] = Shipped(
            candidate=str(chosen),
            test=shipped.get("test") or candidate.get("accuracy") or {},
            train=shipped.get("train") or candidate.get("train_accuracy") or {},
            test_rows=shipped.get("test_rows") or head.get("test_rows"),
        )
    return out


def _training_rules(
    policy: PromotionPolicy, evaluation: dict[str, Any], shipped: dict[str, Shipped]
) -> list[RuleOutcome]:
    """The head and overfitting rules, re-judged by this policy on the figures of the model that ships:
    the trained model's (evaluation.json), or the fairness gate's mitigated candidate's for a head where
    the gate ships one. Each rule says whose figures it judged (``judged_on``)."""
    heads = evaluation.get("heads", {})
    test, train, tasks, judged_on = {}, {}, {}, {}
    for name, head in heads.items():
        model = head["models"]["xgboost"]
        test[name], train[name], tasks[name] = model["test"], model["train"], head["task"]
        judged_on[name] = TRAINED
        if name in shipped:
            test[name], train[name] = shipped[name].test, shipped[name].train
            judged_on[name] = shipped[name].judged_on
    rules = evaluate(policy, test, train_metrics=train, tasks=tasks).rules
    return [r.model_copy(update={"judged_on": judged_on.get(r.head)}) for r in rules]


def describe(rule: RuleOutcome) -> str:
    """One failed rule in a line: section, head, rule, observed value and, for a model figure, whose."""
    whose = f"; judged on the {rule.judged_on}" if rule.judged_on else ""
    return f"{rule.section}/{rule.head}: {rule.rule} (observed {rule.observed}{whose})"


def _fairness_rules(fairness: dict[str, Any] | None) -> list[RuleOutcome]:
    if fairness is None:
        return [_rule("fairness", "all", "fairness gate ran", None, "fairness.json", False)]
    out = []
    for name, head in fairness.get("heads", {}).items():
        verdict = str(head.get("verdict"))
        # not_applicable (the contract states fairness does not apply, with a reason) does not block
        out.append(
            _rule("fairness", name, "fairness verdict is not fail", verdict, "pass", verdict != "fail")
        )
    return out


def fairness_decision(run: RunArtifacts) -> dict[str, Any] | None:
    """What the fairness gate decided for this run, for the audit record: its verdict, whether fairness
    applied (false: the contract said it does not) and the reason; None when the gate did not run."""
    fairness = _read(run.fairness / "fairness.json" if run.fairness else None)
    if fairness is None:
        return None
    return {
        "verdict": fairness.get("verdict"),
        "applicable": fairness.get("applicable", True),
        "reason": fairness.get("reason"),
        # per head, the candidate that ships (unmitigated: the trained model); None: the head failed
        "shipped": {name: head.get("chosen") for name, head in fairness.get("heads", {}).items()},
    }


def _champion_rules(champion: dict[str, Any] | None) -> list[RuleOutcome]:
    if not champion or champion.get("problem"):
        return []  # no production model to defend (or it could not be scored): nothing to beat
    winner = str(champion.get("winner"))
    return [
        _rule(
            "champion",
            "all",
            "challenger beats the production model",
            winner,
            "challenger",
            winner == "challenger",
        )
    ]


def _drift_rules(policy: PromotionPolicy, summary: dict[str, Any] | None) -> list[RuleOutcome]:
    want = policy.drift.reference_rows
    if summary is None:
        return [_rule("drift", "all", "drift reference present", None, "summary.json", False)]
    rows = int(summary.get("rows", 0))
    # a small table gives a smaller reference: all of its training rows are enough
    enough = rows >= min(want, int(summary.get("available_rows", want)))
    watched = set(summary.get("features", []))
    missing = sorted(set(policy.drift.features) - watched)
    return [
        _rule("drift", "all", f"reference rows >= {want}", rows, want, enough),
        _rule(
            "drift",
            "all",
            "watched features in the reference",
            ", ".join(missing) or "all",
            "all",
            not missing,
        ),
    ]


@dataclass
class PromotionResult:
    verdict: PolicyVerdict
    version: str | None = None
    moves: list[dict[str, Any]] = field(default_factory=list)
    manifest: Path | None = None
    note: str | None = None

    @property
    def promoted(self) -> bool:
        return self.version is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "promoted": self.promoted,
            "version": self.version,
            "passed": self.verdict.passed,
            "failures": [r.model_dump() for r in self.verdict.failures],
            "rules": [r.model_dump() for r in self.verdict.rules],
            "moves": self.moves,
            "note": self.note,
            "inference_service": str(self.manifest) if self.manifest else None,
        }

    def markdown(self) -> str:
        head = (
            f"**Promoted** version `{self.version}`"
            if self.promoted
            else f"**Not promoted**: {len(self.verdict.failures)} rule(s) failed"
        )
        lines = [f"# Promotion: {self.verdict.policy} {self.verdict.version}", "", head, ""]
        lines += [
            "| section | head | rule | observed | threshold | result | judged on |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in self.verdict.rules:
            shown = f"{r.observed:.4g}" if isinstance(r.observed, float) else str(r.observed)
            lines.append(
                f"| {r.section} | {r.head} | {r.rule} | {shown} | {r.threshold} | {'pass' if r.passed else 'FAIL'} "
                f"| {r.judged_on or ''} |"
            )
        return "\n".join(lines) + "\n"


def promote(
    policy: PromotionPolicy,
    run: RunArtifacts,
    *,
    registry: Any,
    run_id: str,
    out_dir: Path,
    render: Render | None = None,
    approver: str | None = None,
    run_name: str | None = None,
) -> PromotionResult:
    """Judge the run; publish and promote the model when it passes; write promotion.json (+ the ISVC).

    ``registry`` is an :class:`engage.registry.Registry`. Nothing moves when a rule fails: the refusal is
    an audit record. ``render``, when given, writes the promoted version's InferenceService, with the
    policy's canary. Both audit records carry the model version, the data's hash, the run id, every
    gate's verdict and the approver: ``approver`` (a person), else the policy itself (automated).
    """
    from engage._io import write_text_atomic
    from engage.training import bundle_version

    candidate = bundle_version(run.model)
    production = registry.alias("production")
    in_production = production is not None and production.id == candidate
    verdict = judge(policy, run, champion=not in_production)
    result = PromotionResult(verdict=verdict)
    out_dir.mkdir(parents=True, exist_ok=True)
    fairness = fairness_decision(run)
    decided_by = approver or f"policy {policy.policy} {policy.version} (automated)"
    facts = _metadata(run, verdict, run_id)
    if run_name:
        facts["pipeline_run"] = run_name  # the run's folder: what the review sample's items name it by
    gates: dict[str, Any] = {
        "policy": "pass" if verdict.passed else "fail",
        **{
            section: _section_verdict(verdict, section)
            for section in dict.fromkeys(r.section for r in verdict.rules)
        },
        "fairness_gate": None if fairness is None else fairness.get("verdict"),
        "failures": [describe(r) for r in verdict.failures],
    }
    if not verdict.passed:
        registry.record(
            {
                "event": "promotion_refused",
                "candidate": candidate,
                "pipeline_run_id": run_id,
                "pipeline_run": run_name,
                "data_sha256": facts["data_sha256"],
                "failures": gates["failures"],
                "gates": gates,
                "fairness": fairness,
                "approver": decided_by,
            }
        )
    elif in_production:
        result.version = production.id  # the same model is serving: nothing moves
        result.note = "this model is already in production: no alias moved"
        result.manifest = _render(production, policy, out_dir, render)
    else:
        version = registry.publish(run.model, attachments=_attachments(run), metadata=facts)
        reason = f"pipeline run {run_id} passed policy {policy.policy} {policy.version}"
        moves = [registry.set_alias("candidate", version.id, reason=reason)]
        moves += registry.promote(version.id, reason=reason)
        registry.record(
            {
                "event": "promotion",
                "version": version.id,
                "pipeline_run_id": run_id,
                "pipeline_run": run_name,
                "data_sha256": facts["data_sha256"],
                "policy": f"{policy.policy} {policy.version}",
                "gates": gates,
                "fairness": fairness,
                "approver": decided_by,
            }
        )
        result.version = version.id
        result.moves = [m.model_dump(mode="json") if hasattr(m, "model_dump") else dict(m) for m in moves]
        result.manifest = _render(version, policy, out_dir, render)
    write_text_atomic(out_dir / "promotion.json", json.dumps(result.to_json(), indent=2, default=str) + "\n")
    write_text_atomic(out_dir / "promotion.md", result.markdown())
    return result


def _attachments(run: RunArtifacts) -> dict[str, Path]:
    wanted = {
        "evaluation.json": run.training / "evaluation.json",
        "training_report.html": run.training / "report.html",
        "quality_report.json": run.quality / "report.json" if run.quality else None,
        "fairness.json": run.fairness / "fairness.json" if run.fairness else None,
        "fairness_report.html": run.fairness / "report.html" if run.fairness else None,
        "explanations.json": run.explanations / "global.json" if run.explanations else None,
        "model_card.md": run.card / "model_card.md" if run.card else None,
        "model_card.html": run.card / "model_card.html" if run.card else None,
        "model_card.json": run.card / "model_card.json" if run.card else None,
        "drift_reference": run.drift,
    }
    return {name: path for name, path in wanted.items() if path is not None and path.exists()}


def _section_verdict(verdict: PolicyVerdict, section: str) -> str:
    """``pass`` / ``fail`` of one policy section: every rule of it passed, or not."""
    return "pass" if all(r.passed for r in verdict.rules if r.section == section) else "fail"


def _metadata(run: RunArtifacts, verdict: PolicyVerdict, run_id: str) -> dict[str, Any]:
    evaluation = _read(run.training / "evaluation.json") or {}
    quality = _read(run.quality / "report.json" if run.quality else None) or {}
    fairness = _read(run.fairness / "fairness.json" if run.fairness else None) or {}
    shipped = shipped_figures(run)
    # the figures of the model that ships: a mitigated candidate's where the fairness gate ships one
    metrics = {
        name: {
            k: v
            for k, v in (shipped[name].test if name in shipped else head["models"]["xgboost"]["test"]).items()
            if isinstance(v, int | float)
        }
        for name, head in evaluation.get("heads", {}).items()
    }
    return {
        "pipeline_run_id": run_id,
        "data_sha256": quality.get("input_sha256"),
        "contract": evaluation.get("contract"),
        "trained_at": evaluation.get("trained_at"),
        "metrics": metrics,
        "metrics_of": {name: shipped[name].judged_on if name in shipped else TRAINED for name in metrics},
        "fairness_verdict": fairness.get("verdict"),
        "fairness_applicable": fairness.get("applicable", True) if fairness else None,
        "fairness_reason": fairness.get("reason"),
        "policy": verdict.model_dump(mode="json"),
    }


def _render(version: Any, policy: PromotionPolicy, out_dir: Path, render: Render | None) -> Path | None:
    if render is None:
        return None
    from engage._io import write_text_atomic

    path = out_dir / "inferenceservice.yaml"
    write_text_atomic(path, render(version, policy.promotion.canary_percent))
    return path
