"""The model card builder: the card assembled from what training and the fairness gate wrote.

The sections follow "Model Cards for Model Reporting" (Mitchell et al., 2019). Every figure and name comes
from an artifact (evaluation.json, the bundle's manifest, fairness.json, the contract, the explanations);
the only fixed text is the wording around them, kept in the templates below. Card text is plain text:
:mod:`engage.modelcard._render` escapes it, so a contract description cannot inject Markdown or HTML.
"""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path
from typing import Any

from engage.contract import Contract, Role, load_contract
from engage.contract._model import NoProhibitedFeaturesCheck, ProxyAssociationCheck
from engage.errors import ArtifactError, ConfigError
from engage.policy import FairnessPolicy, PromotionPolicy

from ._inputs import (
    Bundle,
    CandidateIn,
    EvaluationIn,
    ExplanationsIn,
    FairnessIn,
    HeadFairIn,
    read_bundle,
    read_evaluation,
    read_explanations,
    read_fairness,
)
from ._render import render_html, render_markdown
from ._schema import (
    CARD_FORMAT,
    AttributeAnalysis,
    CandidateRow,
    CardContent,
    ChampionComparison,
    ChampionHead,
    EvaluationData,
    ExcludedColumn,
    Explanations,
    Factors,
    Fairness,
    FairnessRuleRow,
    FeatureRow,
    Figure,
    GapFigure,
    GroupFigures,
    HeadDetails,
    HeadExplanation,
    HeadFairness,
    HeadMetrics,
    Importance,
    IntendedUse,
    MetricRow,
    Metrics,
    ModelDetails,
    ProtectedAttribute,
    QuantitativeAnalyses,
    RuleRow,
    Source,
    TrainingData,
)

__all__ = ["CARD_FORMAT", "ModelCard", "build_model_card"]

UNMITIGATED = "unmitigated"


class ModelCard(CardContent):
    """A model card: the nine sections of Mitchell et al. (2019), as data (``model_card.json``)."""

    def to_markdown(self) -> str:
        return render_markdown(self)

    def to_html(self) -> str:
        return render_html(self)


# ---- templates: the fixed wording around the facts ---------------------------------------------------

_USE = {
    "binary_classification": (
        "{title} ({output}): the probability that {target} is {positive} in the {window} after the "
        "snapshot ({description}). Use it to rank customers and segments for retention work that people "
        "review and act on."
    ),
    "regression": (
        "{title} ({output}): predicts {target} ({description}). Use it to compare, plan for and track "
        "customer segments."
    ),
}
_USERS = (
    "Teams planning engagement, retention and revenue work on the {table} table (contract {contract}); "
    "questions go to the contract owner, {owner}."
)
_OUT_OF_SCOPE = [
    "Decisions about an individual customer with legal or similarly significant effects (credit, individual "
    "prices, refusing or ending a service) taken on the scores alone: every such use needs human review, "
    "above all of edge cases.",
    "Tables other than {contract}, or tables that fail that contract: score only what the quality gate "
    "passes.",
    "Customers with categorical values the model never saw in training (the levels it saw are listed under "
    "Training data), and horizons other than the one each head was trained for.",
    "Inferring, or acting on, the protected attributes ({protected}): they are not model inputs and the "
    "scores say nothing about them.",
]
#: what each excluded role means, from :class:`engage.contract.Role`
_ROLE_WHY = {
    Role.id: "identifier: never a model input",
    Role.target: "label of a prediction head",
    Role.protected: "measured for fairness only, never a model input",
    Role.prohibited: "kept for audit at most; never used",
    Role.pii: "personal data: never a model input, masked in logs and reports",
    Role.metadata: "bookkeeping (dates the checks and the split use); not a model input",
    Role.event_time: "when the row was extracted; the split orders extracts by it",
    Role.feature: "a feature of the contract that this model does not use",
}
_HUMAN_REVIEW = (
    "The scores are estimates learnt from past customers. Do not use them for decisions about individual "
    "customers without human review of edge cases{threshold}: customers near the threshold, customers in "
    "groups too small to judge, and customers whose data look unusual."
)


# ---- building ---------------------------------------------------------------------------------------


def build_model_card(
    train_dir: Path,
    *,
    fairness_dir: Path | None = None,
    explanations: Path | dict[str, Any] | None = None,
    contract: Contract | None = None,
    policy: PromotionPolicy | None = None,
    model_dir: Path | None = None,
) -> ModelCard:
    """Assemble the card of the model a training run (and optionally a fairness gate) produced.

    The model described is ``model_dir`` when given, else ``fairness_dir/model`` when the fairness gate
    wrote one (the model to promote), else ``train_dir/model``. Its version is the SHA-256 of its
    manifest, which names the digest of every file, so the card identifies the exact artifact. Inputs
    that are missing, malformed or from different runs raise :class:`ArtifactError` naming the file.
    ``policy`` is optional: evaluation.json records the outcomes of the policy the model was judged by;
    a policy given here is compared with it (and its fairness rules listed when fairness was not assessed).
    """
    train_dir = Path(train_dir)
    eval_path, evaluation = read_evaluation(train_dir)
    fair_path, fairness = read_fairness(Path(fairness_dir)) if fairness_dir is not None else (None, None)
    bundle = read_bundle(_described_bundle(train_dir, fairness_dir, model_dir))
    _check_bundle(bundle, evaluation, eval_path)
    if fairness is not None and fair_path is not None:
        _check_fairness(fairness, evaluation, fair_path, eval_path)
    spec = _contract_for(contract, evaluation, eval_path)
    expl_source, expl = read_explanations(explanations) if explanations is not None else (None, None)

    parts = _Parts(evaluation, bundle, spec, fairness, policy)
    sources = [
        Source(role="training evaluation", path=str(eval_path)),
        Source(role="model manifest", path=str(bundle.directory / "manifest.json")),
        *([Source(role="fairness report", path=str(fair_path))] if fair_path else []),
        *([Source(role="global explanations", path=expl_source)] if expl_source else []),
    ]
    explained = _explanations(expl, expl_source, bundle)
    return ModelCard(
        title=f"Engage {spec.contract} model {bundle.version[:19]}",
        summary=parts.summary(),
        model_details=parts.model_details(),
        intended_use=parts.intended_use(),
        factors=parts.factors(),
        metrics=parts.metrics(),
        evaluation_data=parts.evaluation_data(),
        training_data=parts.training_data(),
        quantitative_analyses=QuantitativeAnalyses(fairness=parts.fairness(), explanations=explained),
        ethical_considerations=parts.ethical_considerations(),
        caveats=parts.caveats(explained),
        sources=sources,
    )


def _described_bundle(train_dir: Path, fairness_dir: Path | None, model_dir: Path | None) -> Path:
    if model_dir is not None:
        return Path(model_dir)
    if fairness_dir is not None and (Path(fairness_dir) / "model").is_dir():
        return Path(fairness_dir) / "model"
    return train_dir / "model"


def _check_bundle(bundle: Bundle, evaluation: EvaluationIn, eval_path: Path) -> None:
    """The bundle must come from the run evaluation.json records, or every figure would describe another."""
    meta, where = bundle.metadata, bundle.directory / "manifest.json"
    if meta.trained_at != evaluation.trained_at or meta.contract != evaluation.contract:
        raise ArtifactError(
            f"{where}: the model was trained at {meta.trained_at} on contract {meta.contract}, but {eval_path} "
            f"records a run at {evaluation.trained_at} on contract {evaluation.contract}: not the same run"
        )
    for head in meta.heads:
        if head not in evaluation.heads or meta.learner not in evaluation.heads[head].models:
            raise ArtifactError(f"{where}: head {head} ({meta.learner}) has no figures in {eval_path}")


def _same_figures(a: dict[str, float | None], b: dict[str, float | None]) -> bool:
    """Equal test figures (to rounding): the same model scored on the same rows."""
    pairs = [(x, y) for k, x in a.items() if x is not None and (y := b.get(k)) is not None]
    return bool(pairs) and all(math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12) for x, y in pairs)


def _check_fairness(fairness: FairnessIn, evaluation: EvaluationIn, fair_path: Path, eval_path: Path) -> None:
    """fairness.json must judge a model of this run: its unmitigated figures equal one learner's test figures."""
    if fairness.contract != evaluation.contract:
        raise ArtifactError(
            f"{fair_path}: judged contract {fairness.contract}, but {eval_path} is of contract {evaluation.contract}"
        )
    for head, h in fairness.heads.items():
        base = h.candidate(UNMITIGATED)
        models = evaluation.heads[head].models if head in evaluation.heads else {}
        if base is None or not any(_same_figures(base.accuracy, m.test) for m in models.values()):
            raise ArtifactError(
                f"{fair_path}: head {head}: the unmitigated model's test figures match no model in {eval_path}: "
                "the fairness report is of another training run"
            )


def _contract_for(contract: Contract | None, evaluation: EvaluationIn, eval_path: Path) -> Contract:
    spec = contract if contract is not None else load_contract()
    if (spec.contract, spec.version) != (evaluation.contract.name, evaluation.contract.version):
        raise ConfigError(
            f"{eval_path}: the model was trained on contract {evaluation.contract}, but the contract given is "
            f"{spec.contract} {spec.version}: pass the contract the model was trained with"
        )
    return spec


def _fmt(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:,.1f}" if abs(value) >= 1000 else f"{value:.4f}"


def _bin_labels(bins: list[float]) -> list[str]:
    """The group labels the fairness gate gives a binned attribute (``18-24``: lower edge to upper - 1)."""
    return [f"{int(lo)}-{int(hi) - 1}" for lo, hi in itertools.pairwise(bins)]


_LEARNER_NOTE = re.compile(r"^head (?P<head>\S+) \((?P<learner>[^)]+)\): (?P<text>.*)$")
_SOURCE_WORDS = re.compile(r"\b(synthetic|generated)\b", re.IGNORECASE)


class _Parts:
    """The card's sections, each from the inputs it needs; one instance per card."""

    def __init__(
        self,
        evaluation: EvaluationIn,
        bundle: Bundle,
        spec: Contract,
        fairness: FairnessIn | None,
        policy: PromotionPolicy | None,
    ) -> None:
        self.evaluation = evaluation
        self.bundle = bundle
        self.spec = spec
        self.fair = fairness
        self.policy = policy
        self.learner = bundle.metadata.learner
        # training writes policy_passed: null into its comparison bundle only (a bundle without the key
        # predates it and is taken as judged)
        meta = bundle.metadata
        self.judged = meta.policy_passed is not None or "policy_passed" not in meta.model_fields_set
        self.heads = [h for h in evaluation.heads if h in bundle.metadata.heads]
        self.baseline = next(
            (name for h in self.heads for name in evaluation.heads[h].models if name != self.learner), None
        )

    # -- helpers -------------------------------------------------------------------------------------

    def title(self, head: str) -> str:
        target = self.spec.targets.get(head)
        return (target.display_name if target is not None else None) or head

    def shipped(self, head: str) -> str:
        """The fairness candidate this bundle carries for ``head`` (``unmitigated`` outside a fairness gate)."""
        chosen = (self.bundle.metadata.fairness or {}).get(head)
        return chosen or UNMITIGATED

    def fair_head(self, head: str) -> HeadFairIn | None:
        return self.fair.heads.get(head) if self.fair is not None else None

    def shipped_candidate(self, head: str) -> CandidateIn | None:
        h = self.fair_head(head)
        return h.candidate(self.shipped(head)) if h is not None else None

    def decision_threshold(self) -> float | None:
        return self.fair.policy.fairness.decision_threshold if self.fair is not None else None

    def protected_readers(self, attribute: str) -> list[str]:
        heads = []
        for head in self.heads:
            c = self.shipped_candidate(head)
            if (
                c is not None
                and c.offsets is not None
                and attribute in [a.name for a in c.offsets.attributes]
            ):
                heads.append(head)
        return heads

    def notes_for(self, head: str) -> list[str]:
        out = []
        for note in self.evaluation.notes:
            m = _LEARNER_NOTE.match(note)
            if m and m["head"] == head and m["learner"] == self.learner:
                out.append(m["text"])
        return out

    def other_notes(self) -> list[str]:
        """Notes of the run that are not one learner's note on one head (skipped heads and the like)."""
        return [n for n in self.evaluation.notes if not _LEARNER_NOTE.match(n)]

    def source(self) -> str | None:
        """Where the training table came from, only when an artifact says so."""
        for where, text in (
            (f"contract {self.spec.contract}", self.spec.description),
            ("split", self.evaluation.split),
            *(("training note", n) for n in self.evaluation.notes),
        ):
            m = _SOURCE_WORDS.search(text)
            if m:
                return f"{m[1].lower()} data (the {where} says: {text.strip()})"
        return None

    # -- sections ------------------------------------------------------------------------------------

    def summary(self) -> list[str]:
        ev, meta = self.evaluation, self.bundle.metadata
        heads = ", ".join(f"{self.title(h)} ({meta.heads[h].output})" for h in self.heads)
        verdict = "every promotion-policy rule passes" if ev.policy.passed else "promotion-policy rules FAIL"
        if not self.judged:
            verdict = "not applied to this model (it judged the run's other learner)"
        out = [
            f"Model {self.bundle.version}, trained at {ev.trained_at} on {ev.rows:,} rows of the "
            f"{self.spec.contract} table (contract {self.spec.version}).",
            f"Predictions: {heads}.",
            f"Promotion policy {ev.policy.policy} {ev.policy.version}: {verdict}.",
        ]
        if self.fair is None:
            out.append("Fairness: not assessed (no fairness report was given).")
        elif not self.fair.applicable:
            out.append(self.not_applicable())
        else:
            out.append(f"Fairness gate: {self.fair.verdict.replace('_', ' ')}.")
        return out

    def not_applicable(self) -> str:
        """The card's one line for a contract that states fairness does not apply, with its reason."""
        reason = self.fair.reason if self.fair is not None else ""
        return f"Fairness: not applicable — {reason.rstrip('.')}."

    def model_details(self) -> ModelDetails:
        meta = self.bundle.metadata
        heads = []
        for head in self.heads:
            spec = meta.heads[head]
            column = self.spec.columns.get(spec.column)
            heads.append(
                HeadDetails(
                    head=head,
                    title=self.title(head),
                    output=spec.output,
                    task=spec.task,
                    target=spec.column,
                    target_description=column.description if column is not None else None,
                    positive=None if spec.positive is None else str(spec.positive),
                    distribution=spec.distribution,
                    learner=spec.learner,
                    objective=spec.objective,
                    transform=spec.transform,
                    calibrated=spec.calibrated,
                    boosting_rounds=spec.best_iteration,
                    adjustment=spec.adjustment,
                    fairness_candidate=(meta.fairness or {}).get(head),
                )
            )
        return ModelDetails(
            name=f"Engage {self.spec.contract} model",
            version=self.bundle.version,
            version_source=f"SHA-256 of {self.bundle.directory / 'manifest.json'}",
            bundle=str(self.bundle.directory),
            format=meta.format,
            engage_version=meta.engage_version,
            learner=self.learner,
            baseline=self.baseline,
            trained_at=self.evaluation.trained_at,
            contract=f"{self.spec.contract} {self.spec.version}",
            contract_owner=self.spec.owner,
            policy=f"{self.evaluation.policy.policy} {self.evaluation.policy.version}",
            training_config=self.evaluation.config,
            heads=heads,
        )

    def intended_use(self) -> IntendedUse:
        window = f"{self.spec.label_window_days} days" if self.spec.label_window_days else "label window"
        uses = []
        for head in self.heads:
            spec = self.bundle.metadata.heads[head]
            column = self.spec.columns.get(spec.column)
            template = _USE["binary_classification" if spec.task == "binary_classification" else "regression"]
            uses.append(
                template.format(
                    title=self.title(head),
                    output=spec.output,
                    target=spec.column,
                    positive=spec.positive,
                    window=window,
                    description=column.description if column is not None else "not described in the contract",
                )
            )
        contract = f"{self.spec.contract} {self.spec.version}"
        protected = ", ".join(self.spec.protected) or "none declared"
        return IntendedUse(
            primary_uses=uses,
            users=_USERS.format(table=self.spec.contract, contract=contract, owner=self.spec.owner),
            out_of_scope=[t.format(contract=contract, protected=protected) for t in _OUT_OF_SCOPE],
        )

    def factors(self) -> Factors:
        used = set(self.evaluation.features.numeric) | set(self.evaluation.features.categorical)
        protected = []
        for name in self.spec.protected:
            col = self.spec.columns[name]
            protected.append(
                ProtectedAttribute(
                    name=name,
                    description=col.description,
                    groups=self._groups_of(name),
                    model_input=name in used,
                    read_at_scoring_by=self.protected_readers(name),
                )
            )
        fair = self.fair.policy.fairness if self.fair is not None and self.fair.applicable else None
        return Factors(
            protected=protected,
            fairness_not_applicable=self.fair.reason
            if self.fair is not None and not self.fair.applicable
            else None,
            measured=self.fair.attributes if self.fair is not None else [],
            min_group_size=fair.min_group_size if fair is not None else None,
            decision_threshold=fair.decision_threshold if fair is not None else None,
            prohibited_attributes=self._prohibited(),
        )

    def _groups_of(self, attribute: str) -> list[str]:
        """The groups the fairness report found, else the contract's categories or bins."""
        for head in self.heads:
            c = self.shipped_candidate(head)
            if c is not None and attribute in c.fairness:
                return [g.group for g in c.fairness[attribute].groups]
        col = self.spec.columns[attribute]
        if col.categories:
            return list(col.categories)
        return _bin_labels(col.bins) if col.bins else []

    def _prohibited(self) -> list[str]:
        return list(dict.fromkeys([*self.spec.prohibited_attributes, *self.spec.by_role(Role.prohibited)]))

    def metrics(self) -> Metrics:
        ev = self.evaluation
        heads = []
        for head in self.heads:
            h = ev.heads[head]
            model = h.models[self.learner]
            base = h.models.get(self.baseline) if self.baseline else None
            shipped = self.shipped_candidate(head) if self.shipped(head) != UNMITIGATED else None
            rows = [
                MetricRow(
                    metric=metric,
                    model_test=value,
                    model_train=model.train.get(metric),
                    baseline_test=base.test.get(metric) if base is not None else None,
                    shipped_test=shipped.accuracy.get(metric) if shipped is not None else None,
                )
                for metric, value in model.test.items()
            ]
            heads.append(
                HeadMetrics(
                    head=head,
                    task=h.task,
                    primary_metric=h.primary_metric,
                    rows=h.rows,
                    shipped_candidate=self.shipped(head) if self.shipped(head) != UNMITIGATED else None,
                    metrics=rows,
                    policy_rules=[
                        RuleRow(rule=r.rule, observed=r.observed, threshold=r.threshold, passed=r.passed)
                        for r in ev.policy.rules
                        if r.head == head and self.judged
                    ],
                    calibration=self.notes_for(head),
                )
            )
        return Metrics(
            model_learner=self.learner,
            baseline_learner=self.baseline,
            policy=f"{ev.policy.policy} {ev.policy.version}",
            policy_passed=ev.policy.passed,
            judged_by_policy=self.judged,
            heads=heads,
            champion=self._champion(),
        )

    def _champion(self) -> ChampionComparison | None:
        c = self.evaluation.champion
        if c is None:
            return None
        return ChampionComparison(
            champion=c.champion,
            winner=c.winner,
            problem=c.problem,
            min_improvement=c.min_improvement,
            heads=[
                ChampionHead(
                    head=head,
                    metric=h.metric,
                    champion=h.champion,
                    challenger=h.challenger,
                    delta=h.delta,
                    winner=h.winner,
                )
                for head, h in c.heads.items()
            ],
        )

    def evaluation_data(self) -> EvaluationData:
        return EvaluationData(
            split=self.evaluation.split,
            test_rows={h: self.evaluation.heads[h].rows.get("test", 0) for h in self.heads},
            fairness_test_rows=self.fair.test_rows if self.fair is not None else None,
            table=self.spec.description,
        )

    def training_data(self) -> TrainingData:
        ev, levels = self.evaluation, self.bundle.features.categorical
        features = []
        for kind, names in (("numeric", ev.features.numeric), ("categorical", ev.features.categorical)):
            for name in names:
                col = self.spec.columns.get(name)
                features.append(
                    FeatureRow(
                        name=name,
                        kind=kind,
                        type=col.type.value if col is not None else None,
                        unit=col.unit if col is not None else None,
                        description=col.description if col is not None else None,
                        levels=levels.get(name, []),
                    )
                )
        used = {f.name for f in features}
        excluded = [
            ExcludedColumn(
                name=name, role=col.role.value, description=col.description, why=_ROLE_WHY[col.role]
            )
            for name, col in self.spec.columns.items()
            if name not in used
        ]
        excluded.sort(key=lambda c: list(Role).index(Role(c.role)))
        return TrainingData(
            table=self.spec.description,
            rows=ev.rows,
            rows_by_head={h: ev.heads[h].rows for h in self.heads},
            source=self.source(),
            features=features,
            excluded=excluded,
            prohibited_attributes=self._prohibited(),
        )

    def fairness(self) -> Fairness:
        if self.fair is None:
            return Fairness(assessed=False, required_rules=self._required_rules())
        fair = self.fair
        if not fair.applicable:
            # the contract's decision: nothing was measured, so no rule, group or candidate is shown
            return Fairness(
                assessed=True,
                applicable=False,
                verdict=fair.verdict,
                reason=fair.reason,
                policy=f"{fair.policy.name} {fair.policy.version}",
                test_rows=fair.test_rows,
                notes=fair.notes,
            )
        return Fairness(
            assessed=True,
            verdict=fair.verdict,
            reason=fair.reason,
            policy=f"{fair.policy.name} {fair.policy.version}",
            attributes=fair.attributes,
            test_rows=fair.test_rows,
            required_rules=self._required_rules(),
            heads=[self._head_fairness(head, fair.heads[head]) for head in self.heads if head in fair.heads],
            notes=fair.notes,
        )

    def _required_rules(self) -> list[str]:
        """The fairness rules of the policy the report used (or of the policy given, without a report)."""
        rules: FairnessPolicy | None
        if self.fair is not None:
            rules = self.fair.policy.fairness
        else:
            rules = self.policy.fairness if self.policy is not None else None
        if rules is None:
            return []
        out = []
        for head in self.heads:
            task = self.evaluation.heads[head].task
            for r in rules.rules(head, task):
                out.append(f"{head}: {r.metric} {r.op} {r.value:g} (scope: {r.scope})")
        return out

    def _head_fairness(self, head: str, h: HeadFairIn) -> HeadFairness:
        shipped_name = self.shipped(head) if h.candidate(self.shipped(head)) is not None else UNMITIGATED
        shipped = h.candidate(shipped_name) or h.candidates[0]
        base = h.candidate(UNMITIGATED)
        differs = base is not None and base.name != shipped.name
        base_rules = {r.rule: r.observed for r in base.rules} if base is not None else {}
        return HeadFairness(
            head=head,
            task=h.task,
            verdict=h.verdict,
            reason=h.reason,
            chosen=h.chosen,
            shipped=shipped.name,
            shipped_stage=shipped.stage,
            shipped_description=shipped.description,
            reads_protected_attributes=shipped.reads_protected_attributes,
            primary_metric=h.primary_metric,
            candidates=[
                CandidateRow(
                    name=c.name,
                    stage=c.stage,
                    primary=c.accuracy.get(h.primary_metric),
                    meets_policy=c.meets_policy,
                    eligible=c.eligible,
                    why_not=c.why_not_eligible or c.problem,
                    chosen=c.name == h.chosen,
                )
                for c in h.candidates
            ],
            rules=[
                FairnessRuleRow(
                    rule=r.rule,
                    threshold=r.threshold,
                    unmitigated=base_rules.get(r.rule),
                    shipped=r.observed,
                    passed=r.passed,
                )
                for r in shipped.rules
            ],
            attributes=[_attribute(shipped, base if differs else None, name) for name in shipped.fairness],
        )

    def ethical_considerations(self) -> list[str]:
        return [
            *self._protected_use(),
            *self._excluded_inputs(),
            *self._fairness_outcome(),
            *self._unjudged_groups(),
            _HUMAN_REVIEW.format(threshold=self._threshold_phrase()),
        ]

    def _threshold_phrase(self) -> str:
        threshold = self.decision_threshold()
        has_classifier = any(self.evaluation.heads[h].task == "binary_classification" for h in self.heads)
        if threshold is None or not has_classifier:
            return ""
        return f" (the fairness gate judged classifications at the decision threshold {threshold:g})"

    def _protected_use(self) -> list[str]:
        protected = self.spec.protected
        if self.fair is not None and not self.fair.applicable:
            return [
                f"{self.not_applicable()} Contract {self.spec.contract} states this; it declares no protected "
                "attribute, so none is measured, read when scoring or used as a model input, and the model "
                "ships without fairness mitigation."
            ]
        if not protected:
            return [
                f"Contract {self.spec.contract} declares no protected attribute: fairness cannot be measured."
            ]
        used = set(self.evaluation.features.numeric) | set(self.evaluation.features.categorical)
        inputs = [p for p in protected if p in used]
        if inputs:
            return [f"Protected attributes are model inputs, against the contract: {', '.join(inputs)}."]
        readers = []
        for head in self.heads:
            c = self.shipped_candidate(head)
            if c is not None and c.reads_protected_attributes:
                names = (
                    ", ".join(a.name for a in c.offsets.attributes) if c.offsets else "protected attributes"
                )
                readers.append(
                    f"{head} (fairness post-processor {c.name}: {c.description}; it reads {names} when scoring)"
                )
        text = f"The protected attributes ({', '.join(protected)}) are not model inputs. They are used"
        if not readers:
            return [f"{text} only to measure fairness."]
        return [
            f"{text} to measure fairness and by the post-processing the fairness gate chose for {'; '.join(readers)}."
        ]

    def _excluded_inputs(self) -> list[str]:
        out = []
        prohibited = self._prohibited()
        if prohibited:
            rule = next(
                (r.id for r in self.spec.rules if isinstance(r.check, NoProhibitedFeaturesCheck)), None
            )
            checked = f"; contract rule {rule} checks every table against them" if rule else ""
            out.append(f"Prohibited attributes are never model inputs: {', '.join(prohibited)}{checked}.")
        if self.spec.pii:
            out.append(f"Personal data columns are never model inputs: {', '.join(self.spec.pii)}.")
        for r in self.spec.rules:
            if isinstance(r.check, ProxyAssociationCheck):
                out.append(
                    f"Features can stand in for a protected attribute (proxies); contract rule {r.id} "
                    f"({r.severity.value}) flags features associated with one above {r.check.threshold:g}."
                )
        return out

    def _fairness_outcome(self) -> list[str]:
        if self.fair is None:
            return [
                "Fairness was not assessed: no fairness report was given. Run the fairness gate (engage "
                "fairness) before this model is promoted or used."
            ]
        if not self.fair.applicable:
            return [
                "No fairness figure exists for this model: whoever reviews the contract reviews the reason "
                "above before the model is used for decisions about people."
            ]
        out = [f"Fairness gate verdict: {self.fair.verdict.replace('_', ' ')} (section 7 has the figures)."]
        if self.fair.verdict == "fail":
            out.append("The fairness gate failed: this model must not be promoted.")
        return out

    def _unjudged_groups(self) -> list[str]:
        """Groups left out of the gap figures, once per attribute (every head sees the same test rows)."""
        if self.fair is None:
            return []
        heads_by_groups: dict[tuple[str, tuple[str, ...]], list[str]] = {}
        for head in self.heads:
            c = self.shipped_candidate(head)
            for name, a in (c.fairness if c is not None else {}).items():
                small = tuple(f"{g.group} ({g.rows:,})" for g in a.groups if not g.judged)
                if small and "&" not in name:
                    heads_by_groups.setdefault((name, small), []).append(head)
        size = self.fair.policy.fairness.min_group_size
        return [
            f"{name}: groups reported but not judged (fewer than {size:,} test rows, or no value) for "
            f"{', '.join(heads)}: {', '.join(small)}. The model's fairness for them is not established."
            for (name, small), heads in heads_by_groups.items()
        ]

    def caveats(self, explained: Explanations) -> list[str]:
        ev = self.evaluation
        out = [
            f"Training data: {self.source()}."
            if self.source()
            else "Training data: the artifacts do not record whether the table was production or synthetic "
            "data; say so before sharing this card.",
            f"Test figures come from one split ({ev.split}); they carry no interval, and performance on later "
            "extracts can differ as customer behaviour drifts. Monitor the model after release.",
        ]
        failures = [
            f"{r.head}: {r.rule} (observed {_fmt(r.observed)})"
            for r in ev.policy.rules
            if not r.passed and self.judged
        ]
        if failures:
            out.append("Promotion-policy rules that fail: " + "; ".join(failures) + ".")
        out += self._mitigation_caveats()
        if ev.champion is not None:
            c = ev.champion
            result = f"could not be scored: {c.problem}" if c.problem else f"the {c.winner} wins"
            out.append(f"Champion / challenger against {c.champion}: {result}.")
        out += self._policy_caveats()
        out += [f"Training note: {n}" for n in self.other_notes()]
        if self.fair is not None:
            out += [f"Fairness note: {n}" for n in self.fair.notes]
        if not explained.computed:
            out.append("Explanations were not computed for this card: no global feature importance is shown.")
        elif explained.matches_model is False:
            out.append(
                f"The explanations were computed on model {explained.model_version}, not on the model this card "
                f"describes ({self.bundle.version}); read them as indicative only."
            )
        return out

    def _mitigation_caveats(self) -> list[str]:
        out = []
        for head in self.heads:
            h, shipped = self.fair_head(head), self.shipped(head)
            if h is not None and h.chosen and h.chosen != shipped:
                out.append(
                    f"{head}: the fairness gate chose {h.chosen}, but this bundle carries {shipped}; the "
                    "fairness figures shown are those of the model in this bundle."
                )
            c = self.shipped_candidate(head) if shipped != UNMITIGATED else None
            if c is not None:
                metric = self.evaluation.heads[head].primary_metric
                out.append(
                    f"{head}: the promotion-policy figures were measured on the trained model, before fairness mitigation; "
                    f"the shipped {shipped} model scores {metric} {_fmt(c.accuracy.get(metric))} on the same "
                    "test rows (fairness report)."
                )
        return out

    def _policy_caveats(self) -> list[str]:
        if self.policy is None:
            return []
        recorded = (self.evaluation.policy.policy, self.evaluation.policy.version)
        if (self.policy.policy, self.policy.version) == recorded:
            return []
        return [
            f"The policy given ({self.policy.policy} {self.policy.version}) is not the one the model was judged "
            f"by ({' '.join(recorded)}); the outcomes shown are those recorded at training."
        ]


def _attribute(shipped: CandidateIn, base: CandidateIn | None, name: str) -> AttributeAnalysis:
    a = shipped.fairness[name]
    before = base.fairness.get(name) if base is not None else None
    return AttributeAnalysis(
        attribute=name,
        judged_groups=a.judged_groups,
        groups=[
            GroupFigures(
                group=g.group,
                rows=g.rows,
                judged=g.judged,
                stats={k: Figure(value=f.value, low=f.low, high=f.high) for k, f in g.stats.items()},
            )
            for g in a.groups
        ],
        gaps=[
            GapFigure(
                figure=figure,
                shipped=Figure(value=f.value, low=f.low, high=f.high),
                unmitigated=(
                    Figure(value=b.value, low=b.low, high=b.high)
                    if before is not None and (b := before.summary.get(figure)) is not None
                    else None
                ),
            )
            for figure, f in a.summary.items()
        ],
        notes=a.notes,
    )


def _explanations(expl: ExplanationsIn | None, source: str | None, bundle: Bundle) -> Explanations:
    if expl is None:
        return Explanations(computed=False)
    heads = []
    for head, h in expl.data.heads.items():
        perm = h.permutation_importance or {}
        ranked = sorted(h.mean_abs_shap.items(), key=lambda kv: -(kv[1] or 0.0))
        names = [f for f, _ in ranked] + [f for f in perm if f not in h.mean_abs_shap]
        heads.append(
            HeadExplanation(
                head=head,
                output=h.output,
                output_space=h.output_space,
                base_value=h.base_value,
                rows=h.rows,
                features=[
                    Importance(
                        feature=f,
                        mean_abs_shap=h.mean_abs_shap.get(f),
                        permutation_mean=perm[f].mean if f in perm else None,
                        permutation_std=perm[f].std if f in perm else None,
                    )
                    for f in names
                ],
            )
        )
    version = expl.meta.model_version
    return Explanations(
        computed=True,
        source=source,
        method=expl.meta.method,
        model_version=version,
        matches_model=None if version is None else version == bundle.version,
        heads=heads,
    )
