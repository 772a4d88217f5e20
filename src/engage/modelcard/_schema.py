"""The model card's schema: the typed sections of "Model Cards for Model Reporting" (Mitchell et al., 2019).

Plain data: :mod:`engage.modelcard._card` builds it from the artifacts, :mod:`engage.modelcard._render`
turns it into Markdown and HTML.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CARD_FORMAT", "CardContent"]

CARD_FORMAT = "engage-model-card/1"

# ---- the card ---------------------------------------------------------------------------------------


class _Card(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HeadDetails(_Card):
    head: str
    title: str
    output: str
    task: str
    target: str
    target_description: str | None
    positive: str | None
    distribution: str
    learner: str
    objective: str
    transform: str
    calibrated: bool
    boosting_rounds: int | None
    #: the fairness post-processor inside the bundle (``group_logit_offsets``), if any
    adjustment: str | None
    #: the fairness candidate this bundle carries for the head (None: not from a fairness gate)
    fairness_candidate: str | None


class ModelDetails(_Card):
    name: str
    version: str
    version_source: str
    bundle: str
    format: str
    engage_version: str | None
    learner: str
    baseline: str | None
    trained_at: str
    contract: str
    contract_owner: str
    policy: str
    training_config: dict[str, Any]
    heads: list[HeadDetails]


class IntendedUse(_Card):
    primary_uses: list[str]
    users: str
    out_of_scope: list[str]


class ProtectedAttribute(_Card):
    name: str
    description: str
    groups: list[str]
    #: True would break the contract; reported, never hidden
    model_input: bool
    #: heads whose shipped post-processor reads this attribute when scoring
    read_at_scoring_by: list[str]


class Factors(_Card):
    protected: list[ProtectedAttribute]
    #: the contract's reason when it states fairness does not apply to this model (None: it applies)
    fairness_not_applicable: str | None = None
    measured: list[str]
    min_group_size: int | None
    decision_threshold: float | None
    prohibited_attributes: list[str]


class MetricRow(_Card):
    metric: str
    model_test: float | None
    model_train: float | None
    baseline_test: float | None
    #: test figure of the shipped fairness candidate, when it changes the predictions
    shipped_test: float | None = None


class RuleRow(_Card):
    rule: str
    observed: float | None
    threshold: float
    passed: bool


class HeadMetrics(_Card):
    head: str
    task: str
    primary_metric: str
    rows: dict[str, int]
    shipped_candidate: str | None
    metrics: list[MetricRow]
    policy_rules: list[RuleRow]
    calibration: list[str]


class ChampionHead(_Card):
    head: str
    metric: str
    champion: float | None
    challenger: float | None
    delta: float | None
    winner: str


class ChampionComparison(_Card):
    champion: str
    winner: str
    problem: str | None
    min_improvement: float
    heads: list[ChampionHead]


class Metrics(_Card):
    model_learner: str
    #: the run's other learner, trained on the same rows (the scikit-learn baseline of an xgboost model)
    baseline_learner: str | None
    policy: str
    policy_passed: bool
    #: False for the run's comparison bundle: the policy judged the other learner, not this model
    judged_by_policy: bool
    heads: list[HeadMetrics]
    champion: ChampionComparison | None


class EvaluationData(_Card):
    split: str
    test_rows: dict[str, int]
    fairness_test_rows: int | None
    table: str


class FeatureRow(_Card):
    name: str
    kind: Literal["numeric", "categorical"]
    type: str | None
    unit: str | None
    description: str | None
    levels: list[str]


class ExcludedColumn(_Card):
    name: str
    role: str
    description: str
    why: str


class TrainingData(_Card):
    table: str
    rows: int
    rows_by_head: dict[str, dict[str, int]]
    source: str | None
    features: list[FeatureRow]
    excluded: list[ExcludedColumn]
    prohibited_attributes: list[str]


class Figure(_Card):
    value: float | None
    low: float | None = None
    high: float | None = None


class GroupFigures(_Card):
    group: str
    rows: int
    judged: bool
    stats: dict[str, Figure]


class GapFigure(_Card):
    figure: str
    shipped: Figure
    unmitigated: Figure | None


class AttributeAnalysis(_Card):
    attribute: str
    judged_groups: list[str]
    groups: list[GroupFigures]
    gaps: list[GapFigure]
    notes: list[str]


class FairnessRuleRow(_Card):
    rule: str
    threshold: float
    unmitigated: float | None
    shipped: float | None
    passed: bool


class CandidateRow(_Card):
    name: str
    stage: str
    primary: float | None
    meets_policy: bool
    eligible: bool
    why_not: str | None
    chosen: bool


class HeadFairness(_Card):
    head: str
    task: str
    verdict: str
    reason: str
    chosen: str | None
    shipped: str
    shipped_stage: str
    shipped_description: str
    reads_protected_attributes: bool
    primary_metric: str
    candidates: list[CandidateRow]
    rules: list[FairnessRuleRow]
    attributes: list[AttributeAnalysis]


class Fairness(_Card):
    assessed: bool
    #: False when the contract states fairness does not apply; ``reason`` is then the contract's reason
    applicable: bool = True
    verdict: str | None = None
    reason: str | None = None
    policy: str | None = None
    attributes: list[str] = Field(default_factory=list)
    test_rows: int | None = None
    required_rules: list[str] = Field(default_factory=list)
    heads: list[HeadFairness] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


class Importance(_Card):
    feature: str
    mean_abs_shap: float | None
    permutation_mean: float | None
    permutation_std: float | None


class HeadExplanation(_Card):
    head: str
    output: str
    output_space: str | None
    base_value: float | None
    rows: int | None
    features: list[Importance]


class Explanations(_Card):
    computed: bool
    source: str | None = None
    method: str | None = None
    model_version: str | None = None
    #: False when the explanations were computed on another model than the one this card describes
    matches_model: bool | None = None
    heads: list[HeadExplanation] = Field(default_factory=list)


class QuantitativeAnalyses(_Card):
    fairness: Fairness
    explanations: Explanations


class Source(_Card):
    role: str
    path: str


class CardContent(_Card):
    """The fields of a model card: the nine sections of Mitchell et al. (2019) (``model_card.json``)."""

    format: str = CARD_FORMAT
    title: str
    summary: list[str]
    model_details: ModelDetails
    intended_use: IntendedUse
    factors: Factors
    metrics: Metrics
    evaluation_data: EvaluationData
    training_data: TrainingData
    quantitative_analyses: QuantitativeAnalyses
    ethical_considerations: list[str]
    caveats: list[str]
    sources: list[Source]

    def to_json(self) -> str:
        return self.model_dump_json(indent=2) + "\n"
