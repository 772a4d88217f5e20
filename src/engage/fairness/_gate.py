"""The fairness gate: measure every head, try the mitigation candidates, choose, and decide.

For each head the unmitigated model and every candidate are scored on the same test rows: accuracy
(the head's metrics) and fairness (per protected attribute and intersection). A candidate *meets the
policy* when every fairness rule holds on every attribute with at least two groups large enough to
judge. The chosen candidate is the most accurate (policy primary metric: AUC, R²) among those that meet
the policy and can ship (a safe artifact; reading protected attributes at scoring time only if the
policy allows it). Verdict per head: ``pass`` (the unmitigated model meets the policy),
``pass_after_mitigation`` (a candidate does) or ``fail``; the run's verdict is the worst of its heads.
A contract that states ``fairness: {applicable: false, reason: ...}`` gets ``not_applicable`` with that
reason on every head: nothing is measured, and the unmitigated model ships.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from engage.contract import Contract
from engage.errors import SchemaError
from engage.features import Split, design_matrix, time_split
from engage.model._groups import attribute_specs, cell_labels, protected_groups
from engage.policy import OPS, FairnessRule, PromotionPolicy, RuleOutcome, load_policy
from engage.training import ModelBundle, TrainConfig, head_labels, head_metrics

from ._metrics import AttributeFairness, classification_fairness, regression_fairness
from ._mitigate import Candidate, HeadData, Select, candidates_for, predict_rows, unmitigated

__all__ = [
    "NOT_APPLICABLE",
    "CandidateResult",
    "FairnessResult",
    "HeadFairness",
    "assess",
    "assess_training",
]

Verdict = Literal["pass", "pass_after_mitigation", "fail", "not_applicable"]
_ORDER = {"not_applicable": -1, "pass": 0, "pass_after_mitigation": 1, "fail": 2}  # nosec B105 # verdicts
#: the verdict of every head of a contract that states fairness does not apply (promotion does not block on it)
NOT_APPLICABLE: Verdict = "not_applicable"


@dataclass
class CandidateResult:
    candidate: Candidate
    accuracy: dict[str, float]
    fairness: dict[str, AttributeFairness]
    rules: list[RuleOutcome]
    eligible: bool
    why_not: str | None = None
    #: the head's figures on the training rows (what the overfitting rule compares the test figures
    #: with); measured for the chosen candidate only, the model that ships
    train_accuracy: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.candidate.name

    @property
    def meets_policy(self) -> bool:
        return self.candidate.problem is None and all(r.passed for r in self.rules)


@dataclass
class HeadFairness:
    head: str
    task: str
    primary_metric: str
    candidates: list[CandidateResult]
    chosen: str | None
    verdict: Verdict
    reason: str
    #: labelled test rows every candidate's accuracy and fairness figures were measured on
    test_rows: int = 0
    #: labels and group labels of the test rows (for the per-group reliability curves of the report)
    y_test: npt.NDArray[np.float64] | None = None
    groups: dict[str, npt.NDArray[np.object_]] = field(default_factory=dict)

    def candidate(self, name: str) -> CandidateResult:
        return next(c for c in self.candidates if c.name == name)

    def accuracy_rank(self, name: str) -> int | None:
        """1 for the most accurate candidate on the primary metric (higher is better); None unscored."""
        scored = [
            (c.accuracy[self.primary_metric], c.name)
            for c in self.candidates
            if math.isfinite(c.accuracy.get(self.primary_metric, math.nan))
        ]
        order = [n for _, n in sorted(scored, key=lambda t: -t[0])]
        return order.index(name) + 1 if name in order else None

    def why(self, c: CandidateResult) -> str:
        """Why this candidate was or was not chosen, in one line (the trade-off report shows it)."""
        if c.candidate.problem is not None:
            return f"not chosen: it failed to train ({c.candidate.problem})"
        failing = [r.rule for r in c.rules if not r.passed]
        rank = self.accuracy_rank(c.name)
        ranked = f"accuracy rank {rank} of {len(self.candidates)}" if rank is not None else "not scored"
        if c.name == self.chosen:
            if c.name == "unmitigated" and self.verdict == "pass":
                return "chosen: the trained model meets every fairness rule (no mitigation needed)"
            if self.verdict == NOT_APPLICABLE:
                return "chosen: fairness does not apply (the contract says why); the trained model ships"
            return f"chosen: the most accurate candidate that meets the policy and can ship ({ranked})"
        if failing:
            return f"not chosen: fails {'; '.join(failing[:3])}" + ("; …" if len(failing) > 3 else "")
        if not c.eligible:
            return f"not chosen: meets the policy, but {c.why_not}"
        if self.chosen is None:
            return f"not chosen: meets the policy and can ship, but the head fails ({ranked})"
        if self.chosen == "unmitigated":
            return f"not needed: the trained model meets the policy ({ranked})"
        return f"not chosen: meets the policy and can ship, but {self.chosen} is more accurate ({ranked})"


@dataclass
class FairnessResult:
    contract: Contract
    policy: PromotionPolicy
    heads: dict[str, HeadFairness]
    attributes: list[str]
    test_rows: int
    seconds: float
    base: ModelBundle
    notes: list[str] = field(default_factory=list)
    #: the contract's reason when it states fairness does not apply (``fairness.applicable: false``)
    not_applicable_reason: str | None = None

    @property
    def applicable(self) -> bool:
        return self.not_applicable_reason is None

    @property
    def verdict(self) -> Verdict:
        if not self.applicable:
            return NOT_APPLICABLE
        return max((h.verdict for h in self.heads.values()), key=_ORDER.__getitem__, default="pass")

    @property
    def reason(self) -> str:
        if self.not_applicable_reason is not None:
            return self.not_applicable_reason
        return "; ".join(f"{h.head}: {h.reason}" for h in self.heads.values())

    def chosen_bundle(self) -> ModelBundle | None:
        """The model to promote: each head's chosen candidate; ``None`` when a head failed."""
        if self.verdict == "fail":
            return None
        heads = dict(self.base.heads)
        adjustments = dict(self.base.adjustments)
        for name, h in self.heads.items():
            chosen = h.candidate(h.chosen or "unmitigated").candidate
            if chosen.model is not None:
                heads[name] = chosen.model
            if chosen.offsets is not None:
                adjustments[name] = chosen.offsets.to_json()
        metadata = {**self.base.metadata, "fairness": {n: h.chosen for n, h in self.heads.items()}}
        return ModelBundle(
            features=self.base.features, heads=heads, metadata=metadata, adjustments=adjustments
        )


#: the rule a head fails when no protected attribute has two groups large enough to judge any rule
UNJUDGED = "two groups in one protected attribute, each of at least"


def _score(
    c: Any,
    head: Any,
    name: str,
    y_test: npt.NDArray[np.float64],
    groups: dict[str, npt.NDArray[np.object_]],
    policy: PromotionPolicy,
    seed: int,
    minimum: int,
) -> CandidateResult:
    """One candidate's accuracy, fairness figures (point estimates) and rule outcomes, and whether it may ship."""
    if c.problem is not None or c.predictions is None:
        return CandidateResult(c, {}, {}, [], False, c.problem or "no predictions")
    accuracy = head_metrics(head, y_test, c.predictions)
    # judged on point estimates; intervals are added later for the models the report details
    fairness = _measure(head.task.value, y_test, c.predictions, groups, policy, seed, 0, minimum)
    rules = _judge(name, head.task.value, fairness, policy, minimum)
    why_not = None
    if not c.shippable:
        why_not = f"not shippable: {c.unshippable or 'no safe artifact'}"
    elif c.needs_protected and not policy.fairness.allow_protected_at_inference:
        why_not = "reads protected attributes at scoring (policy forbids)"
    return CandidateResult(c, accuracy, fairness, rules, why_not is None, why_not)


def _second_largest(groups: dict[str, npt.NDArray[np.object_]]) -> int:
    """The largest second-largest group of any single protected attribute (``unknown`` not counted)."""
    from engage.model._groups import UNKNOWN

    best = 0
    for attribute, labels in groups.items():
        if "&" in attribute:
            continue
        names, counts = np.unique(labels[labels != UNKNOWN].astype(str), return_counts=True)
        if len(names) >= 2:
            best = max(best, int(np.sort(counts)[-2]))
    return best


def _unjudgeable(rules: list[RuleOutcome]) -> bool:
    return any(r.rule.startswith(UNJUDGED) and not r.passed for r in rules)


def _rule_text(attribute: str, rule: FairnessRule) -> str:
    """How a fairness rule on one attribute (or intersection) is named in a :class:`RuleOutcome`."""
    return f"{attribute}: {rule.metric} {rule.op} {rule.value:g}"


def _judge(
    head: str,
    task: str,
    fairness: dict[str, AttributeFairness],
    policy: PromotionPolicy,
    minimum: int,
    *,
    on: Literal["value", "interval"] = "value",
) -> list[RuleOutcome]:
    """Every fairness rule of ``head`` on every attribute, pass or fail (``observed``: the point value).

    ``on="value"`` (the gate) judges the point estimate. ``on="interval"`` (live windows) crosses a rule
    only when its whole 95 % bootstrap interval lies on the wrong side of the threshold: the bound
    nearest to passing is judged (the high bound of a ``>=`` rule, the low bound of a ``<=`` rule); a
    figure without an interval (too few finite replicates) is not judged."""
    rules = policy.fairness.rules(head, task)
    out: list[RuleOutcome] = []
    judged_any = False
    for attribute, figures in fairness.items():
        intersection = "&" in attribute
        for rule in rules:
            if (rule.scope == "attributes" and intersection) or (
                rule.scope == "intersections" and not intersection
            ):
                continue
            figure = figures.summary.get(rule.metric)
            if figure is None:
                raise SchemaError(
                    f"fairness policy: {head}: unknown metric {rule.metric!r} for a {task} head"
                )
            text = _rule_text(attribute, rule)
            judged = figure.value
            if on == "interval":
                judged = figure.high if rule.op in (">", ">=") else figure.low
                if math.isfinite(figure.value) and not math.isfinite(judged):
                    out.append(
                        RuleOutcome(
                            head=head,
                            rule=text + " (not judged: no bootstrap interval)",
                            observed=figure.value,
                            threshold=rule.value,
                            passed=True,
                        )
                    )
                    continue
            if not math.isfinite(figure.value):
                out.append(
                    RuleOutcome(
                        head=head,
                        rule=text + " (not judged: fewer than two groups large enough)",
                        observed=None,
                        threshold=rule.value,
                        passed=True,
                    )
                )
                continue
            judged_any = True
            out.append(
                RuleOutcome(
                    head=head,
                    rule=text,
                    observed=figure.value,
                    threshold=rule.value,
                    passed=OPS[rule.op](judged, rule.value),
                )
            )
    if rules and not judged_any:
        largest = "; ".join(
            f"{a}: " + ", ".join(f"{g.group} {g.rows:,}" for g in figures.groups[:4])
            for a, figures in fairness.items()
            if "&" not in a
        )
        out.append(
            RuleOutcome(
                head=head,
                rule=f"{UNJUDGED} {minimum:,} test rows (groups: {largest or 'none'})",
                observed=None,
                threshold=minimum,
                passed=False,
            )
        )
    return out


def _measure(
    task: str,
    y: npt.NDArray[np.float64],
    pred: npt.NDArray[np.float64],
    groups: dict[str, npt.NDArray[np.object_]],
    policy: PromotionPolicy,
    seed: int,
    bootstrap: int | None,
    minimum: int,
) -> dict[str, AttributeFairness]:
    f = policy.fairness
    replicates = f.bootstrap if bootstrap is None else bootstrap
    if task == "binary_classification":
        return {
            a: classification_fairness(
                y,
                pred,
                g,
                attribute=a,
                threshold=f.decision_threshold,
                min_group_size=minimum,
                bootstrap=replicates,
                seed=seed,
            )
            for a, g in groups.items()
        }
    return {
        a: regression_fairness(
            y, pred, g, attribute=a, min_group_size=minimum, bootstrap=replicates, seed=seed
        )
        for a, g in groups.items()
    }


def assess(
    frame: pd.DataFrame,
    contract: Contract,
    bundle: ModelBundle,
    split: Split,
    *,
    config: TrainConfig | None = None,
    policy: PromotionPolicy | None = None,
    mitigate: bool = True,
) -> FairnessResult:
    """Measure, mitigate and decide for every head of ``bundle`` on ``frame``'s test rows.

    When the contract states that fairness does not apply, every head is ``not_applicable`` with the
    contract's reason and keeps its trained model (scored for accuracy on the same test rows).
    """
    started = time.perf_counter()
    policy = policy or load_policy()
    config = config or TrainConfig()
    if not contract.fairness_applicable:
        return _not_applicable(frame, contract, bundle, split, policy, started)
    f = policy.fairness
    specs = attribute_specs(contract, f.attributes or None)
    groups_all = protected_groups(frame, contract, f.attributes or None, intersections=f.intersections)
    cells = cell_labels(frame, specs)
    X = design_matrix(frame, bundle.features)
    heads: dict[str, HeadFairness] = {}
    for name, model in bundle.heads.items():
        head = model.head
        y = head_labels(frame, head)
        labelled = np.isfinite(y)
        test = split.test[labelled[split.test]]
        data = HeadData(
            model=model,
            config=config,
            X=X,
            y=y,
            cells=cells,
            train=split.train[labelled[split.train]],
            valid=split.valid[labelled[split.valid]],
            test=test,
            threshold=f.decision_threshold,
        )
        groups = {a: g[test] for a, g in groups_all.items()}
        bound = next((r.value for r in f.heads.get(name, []) if r.metric == "max_group_rmse"), None)
        parity = next((r.value for r in f.classification if r.metric == "demographic_parity_ratio"), 0.8)
        minimum = f.group_minimum(len(test), _second_largest(groups))
        data.select = _policy_judge(head, name, y[test], groups, policy, config.seed, minimum)

        y_test = y[test]

        def judged(c: Any) -> CandidateResult:
            return _score(c, head, name, y_test, groups, policy, config.seed, minimum)  # noqa: B023  (used at once)

        # mitigation only where a rule fails, and only when the table lets any rule be judged
        results = [judged(unmitigated(data))]
        if mitigate and not results[0].meets_policy and not _unjudgeable(results[0].rules):
            results += [judged(c) for c in candidates_for(data, specs, bound, parity)[1:]]
        decided = _decide(name, head.task.value, results, policy)
        for r in results:
            if r.candidate.predictions is not None and r.name in ("unmitigated", decided.chosen):
                r.fairness = _measure(
                    head.task.value,
                    y[test],
                    r.candidate.predictions,
                    groups,
                    policy,
                    config.seed,
                    None,
                    minimum,
                )
        if decided.chosen is not None:
            _measure_train(decided.candidate(decided.chosen), data)
        decided.y_test, decided.groups, decided.test_rows = y[test], groups, len(test)
        heads[name] = decided
    return FairnessResult(
        contract=contract,
        policy=policy,
        heads=heads,
        attributes=list(groups_all),
        test_rows=len(split.test),
        seconds=time.perf_counter() - started,
        base=bundle,
    )


def _measure_train(chosen: CandidateResult, data: HeadData) -> None:
    """The chosen candidate's figures on the training rows (the same seeded sample training measures
    when there are more than ``TRAIN_METRIC_ROWS``): the overfitting rule judges the model that ships."""
    from engage.training._train import TRAIN_METRIC_ROWS

    rows = data.train
    if len(rows) > TRAIN_METRIC_ROWS:
        rng = np.random.default_rng(data.config.seed)
        rows = np.sort(rng.choice(rows, TRAIN_METRIC_ROWS, replace=False))
    predictions = predict_rows(data, chosen.candidate, rows)
    if predictions is not None and len(rows):
        chosen.train_accuracy = head_metrics(data.model.head, data.y[rows], predictions)


def _policy_judge(
    head: Any,
    name: str,
    y_test: npt.NDArray[np.float64],
    groups: dict[str, npt.NDArray[np.object_]],
    policy: PromotionPolicy,
    seed: int,
    minimum: int,
) -> Select:
    """The gate's own judgement of predictions on the test rows: meets every rule; primary metric.

    The same rules on the same rows as every candidate, so a reduction's member that meets the policy
    here makes its candidate meet it."""
    primary = policy.primary_metric(head.task.value)

    def meets(predictions: npt.NDArray[np.float64]) -> bool:
        fairness = _measure(head.task.value, y_test, predictions, groups, policy, seed, 0, minimum)
        return all(r.passed for r in _judge(name, head.task.value, fairness, policy, minimum))

    def accuracy(predictions: npt.NDArray[np.float64]) -> float:
        return float(head_metrics(head, y_test, predictions).get(primary, -math.inf))

    return Select(meets, accuracy)


def _not_applicable(
    frame: pd.DataFrame,
    contract: Contract,
    bundle: ModelBundle,
    split: Split,
    policy: PromotionPolicy,
    started: float,
) -> FairnessResult:
    """Every head ``not_applicable`` with the contract's reason; the unmitigated model, scored for accuracy."""
    reason = contract.fairness.reason or ""
    X = design_matrix(frame, bundle.features)
    heads: dict[str, HeadFairness] = {}
    for name, model in bundle.heads.items():
        head = model.head
        y = head_labels(frame, head)
        test = split.test[np.isfinite(y)[split.test]]
        predictions = model.predict(X.iloc[test])
        base = Candidate("unmitigated", "none", "the trained model", True, False, predictions=predictions)
        scored = CandidateResult(base, head_metrics(head, y[test], predictions), {}, [], True)
        primary = policy.primary_metric(head.task.value)
        heads[name] = HeadFairness(
            name, head.task.value, primary, [scored], "unmitigated", NOT_APPLICABLE, reason,
            test_rows=len(test), y_test=y[test],
        )  # fmt: skip
    return FairnessResult(
        contract=contract,
        policy=policy,
        heads=heads,
        attributes=[],
        test_rows=len(split.test),
        seconds=time.perf_counter() - started,
        base=bundle,
        not_applicable_reason=reason,
    )


def _decide(head: str, task: str, results: list[CandidateResult], policy: PromotionPolicy) -> HeadFairness:
    primary = policy.primary_metric(task)
    base = results[0]
    failures = [r.rule for r in base.rules if not r.passed]
    if base.meets_policy:
        return HeadFairness(
            head,
            task,
            primary,
            results,
            "unmitigated",
            "pass",
            "the unmitigated model meets every fairness rule",
        )
    if _unjudgeable(base.rules):
        return HeadFairness(
            head, task, primary, results, None, "fail",
            f"fails {failures[0]}: fairness cannot be judged on this test split; more rows, or the "
            "policy's fairness.min_group_share, would let it be (no mitigation tried)",
        )  # fmt: skip
    passing = [r for r in results[1:] if r.meets_policy and r.eligible]
    if not passing:
        tried = ", ".join(r.name for r in results[1:]) or "none"
        return HeadFairness(
            head,
            task,
            primary,
            results,
            None,
            "fail",
            f"fails {'; '.join(failures[:3])}; no shippable candidate meets the policy (tried: {tried})",
        )
    best = max(passing, key=lambda r: r.accuracy.get(primary, -math.inf))
    cost = base.accuracy[primary] - best.accuracy[primary]
    return HeadFairness(
        head,
        task,
        primary,
        results,
        best.name,
        "pass_after_mitigation",
        f"unmitigated fails {'; '.join(failures[:3])}; {best.name} meets the policy at {primary} "
        f"{best.accuracy[primary]:.4f} ({-cost:+.4f} against unmitigated)",
    )


def assess_training(
    result: Any, frame: pd.DataFrame, *, policy: PromotionPolicy | None = None
) -> FairnessResult:
    """The fairness gate on a training run still in memory (``engage.training.TrainResult``)."""
    return assess(
        frame,
        result.contract,
        result.bundle("xgboost"),
        result.split,
        config=result.config,
        policy=policy or result.policy,
    )


def split_for(frame: pd.DataFrame, contract: Contract, bundle: ModelBundle) -> tuple[Split, TrainConfig]:
    """Rebuild the split a bundle was trained with (its seed is in the bundle's metadata)."""
    trained_on = bundle.metadata.get("rows", {}).get("table")
    if trained_on is not None and trained_on != len(frame):
        raise SchemaError(
            f"the table has {len(frame):,} rows but the model was trained on {trained_on:,}: pass the table "
            "the model was trained on (its test rows are rebuilt from it)"
        )
    config = TrainConfig(**bundle.metadata.get("config", {}))
    return time_split(frame, contract, seed=config.seed), config
