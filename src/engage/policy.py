"""The promotion policy: one YAML file holding every threshold a model is held to.

Loaded into typed objects (unknown keys and wrong types fail with the file and key path, like a data
contract) and evaluated by :func:`evaluate`, which lists every rule with its observed value and threshold.
Sections: per-head quality thresholds, the overfitting rule, champion / challenger, fairness, the data
quality gate, drift baselines and promotion (canary). :func:`promotion_verdict` judges a whole run by
every section at once, the same way under ``kfp.local``, on a cluster and in ``engage promote``.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from engage._io import shipped_file
from engage.errors import ConfigError

__all__ = [
    "CLASSIFICATION_METRICS",
    "DEFAULT_POLICY",
    "OPS",
    "REGRESSION_METRICS",
    "DriftBaseline",
    "FairnessPolicy",
    "FairnessRule",
    "MetricRule",
    "PolicyVerdict",
    "Promotion",
    "PromotionPolicy",
    "QualityGate",
    "RuleOutcome",
    "default_policy_path",
    "evaluate",
    "load_policy",
]

DEFAULT_POLICY = "promotion_policy.yml"

OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


#: metrics a head's rule may name (the keys of engage.evaluation's metric functions)
REGRESSION_METRICS = frozenset({"r2", "rmse", "mae", "spearman", "top_decile_capture", "gini"})
CLASSIFICATION_METRICS = frozenset(
    {
        "auc_roc", "pr_auc", "log_loss", "brier", "ece", "lift_top_decile", "capture_top_decile",
        "accuracy", "precision", "recall", "f1", "positive_rate", "ece_uncalibrated",
    }
)  # fmt: skip
#: figures a fairness rule may name (engage.fairness gap figures)
FAIRNESS_METRICS = frozenset(
    {
        "demographic_parity_ratio", "demographic_parity_difference", "equalized_odds_difference",
        "equal_opportunity_difference", "max_group_ece",
        "mae_ratio", "rmse_ratio", "mean_prediction_ratio", "max_group_rmse",
    }
)  # fmt: skip


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class MetricRule(_Strict):
    metric: str = Field(min_length=1)
    op: Literal["<", "<=", ">", ">="]
    value: float = Field(allow_inf_nan=False)

    @field_validator("metric")
    @classmethod
    def _known(cls, metric: str) -> str:
        known = REGRESSION_METRICS | CLASSIFICATION_METRICS
        if metric not in known:
            raise ValueError(f"unknown metric {metric!r}; known: {', '.join(sorted(known))}")
        return metric


class Overfitting(_Strict):
    min_test_to_train_ratio: float = Field(gt=0, le=1)
    primary_metric: dict[Literal["regression", "binary_classification"], str]


class Champion(_Strict):
    min_improvement: float = Field(default=0.0, ge=0)


class FairnessRule(_Strict):
    metric: str = Field(min_length=1)
    op: Literal["<", "<=", ">", ">="]
    value: float = Field(allow_inf_nan=False)
    #: where the rule applies: every attribute and intersection, single attributes only, or intersections only
    scope: Literal["all", "attributes", "intersections"] = "all"

    @field_validator("metric")
    @classmethod
    def _known(cls, metric: str) -> str:
        if metric not in FAIRNESS_METRICS:
            raise ValueError(
                f"unknown fairness figure {metric!r}; known: {', '.join(sorted(FAIRNESS_METRICS))}"
            )
        return metric


class QualityGate(_Strict):
    """What the data-quality gate must have said about the training table."""

    allowed_verdicts: list[Literal["pass", "pass_after_remediation"]] = Field(
        default=["pass", "pass_after_remediation"], min_length=1
    )
    max_quarantine_share: float = Field(default=0.05, ge=0, le=1)


class DriftBaseline(_Strict):
    """The training distribution the drift detector compares serving traffic against."""

    reference_rows: int = Field(default=5_000, ge=100, le=1_000_000)
    #: which rows the reference samples: ``latest_extract``, the customers of the table's latest extract
    #: (the contract's event time; the whole table when it names none), who are what the model will
    #: score next; or ``training``, the training split (older extracts: calendar-bound features such as
    #: tenure then differ from live traffic by the age of the data, and the detector says so every time)
    source: Literal["latest_extract", "training"] = "latest_extract"
    #: the detector's per-feature test level (Bonferroni-corrected across features by the detector)
    p_value: float = Field(default=0.05, gt=0, lt=1)
    #: features watched (empty: every model feature)
    features: list[str] = Field(default_factory=list)


class Promotion(_Strict):
    """How a model that passes is rolled out."""

    canary_percent: int = Field(default=10, ge=0, le=100)
    require_fairness: bool = True
    #: a challenger must beat the production model (the champion) when there is one
    require_champion_win: bool = True


class FairnessPolicy(_Strict):
    """How fairness is measured and the rules each head's figures must meet (issue: fairness gate)."""

    attributes: list[str] = Field(default_factory=list, description="empty: every protected column")
    intersections: bool = True
    min_group_size: int = Field(
        default=1000, ge=1, description="a group with at least this many test rows is always judged"
    )
    min_group_share: float | None = Field(
        default=None,
        gt=0,
        le=0.5,
        description="on a table where no protected attribute has two groups of min_group_size test rows, a "
        "group holding this share of the test rows is judged instead (None: min_group_size alone)",
    )
    min_group_floor: int = Field(
        default=30, ge=1, description="never judge a group of fewer test rows than this, whatever the share"
    )
    bootstrap: int = Field(default=200, ge=0, le=10_000)
    decision_threshold: float = Field(default=0.5, gt=0, lt=1)
    allow_protected_at_inference: bool = True
    classification: list[FairnessRule] = Field(default_factory=list)
    regression: list[FairnessRule] = Field(default_factory=list)
    heads: dict[str, list[FairnessRule]] = Field(default_factory=dict)

    def group_minimum(self, test_rows: int, second_largest: int | None = None) -> int:
        """The fewest test rows a group needs to be judged, on a test split of ``test_rows`` rows whose
        protected attributes' second-largest group holds ``second_largest`` rows at most.

        ``min_group_size`` whenever some attribute has two groups that large: then the figures are
        solid and nothing smaller is judged. Only on a table too small for that does ``min_group_share``
        of the test rows do instead (never under ``min_group_floor``), so a small table is judged rather
        than not at all."""
        if self.min_group_share is None:
            return self.min_group_size
        if second_largest is not None and second_largest >= self.min_group_size:
            return self.min_group_size
        scaled = math.ceil(self.min_group_share * test_rows)
        return max(min(self.min_group_floor, self.min_group_size), min(self.min_group_size, scaled))

    def rules(self, head: str, task: str) -> list[FairnessRule]:
        common = self.classification if task == "binary_classification" else self.regression
        return [*common, *self.heads.get(head, [])]


class PromotionPolicy(_Strict):
    policy: str = Field(min_length=1)
    version: str = Field(pattern=r"^\d+\.\d+\.\d+$")
    heads: dict[str, list[MetricRule]]
    overfitting: Overfitting
    champion: Champion = Field(default_factory=Champion)
    fairness: FairnessPolicy = Field(default_factory=FairnessPolicy)
    quality: QualityGate = Field(default_factory=QualityGate)
    drift: DriftBaseline = Field(default_factory=DriftBaseline)
    promotion: Promotion = Field(default_factory=Promotion)

    def primary_metric(self, task: str) -> str:
        return self.overfitting.primary_metric[task]  # type: ignore[index]


class RuleOutcome(BaseModel):
    head: str
    rule: str
    observed: float | str | None
    threshold: float | str
    passed: bool
    #: the policy section the rule comes from: heads, overfitting, quality, fairness, champion, drift
    section: str = "heads"
    #: whose figures a head or overfitting rule judged: the trained model's (evaluation.json) or, when the
    #: fairness gate ships a mitigated candidate, that candidate's (None: not a model figure)
    judged_on: str | None = None


class PolicyVerdict(BaseModel):
    policy: str
    version: str
    rules: list[RuleOutcome]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rules)

    @property
    def failures(self) -> list[RuleOutcome]:
        return [r for r in self.rules if not r.passed]


def default_policy_path() -> Path:
    """The promotion policy Engage ships (``policies/promotion_policy.yml``)."""
    return shipped_file("policies", DEFAULT_POLICY)


def load_policy(path: str | Path | None = None) -> PromotionPolicy:
    """Read and check a policy file (``None``: the default policy)."""
    file = Path(path) if path is not None else default_policy_path()
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such file") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{file}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: expected a mapping of policy keys")
    try:
        return PromotionPolicy.model_validate(data)
    except ValidationError as e:
        from engage.contract import describe_error

        raise ConfigError(f"{file}: " + "; ".join(describe_error(err) for err in e.errors())) from None


def evaluate(
    policy: PromotionPolicy,
    metrics: Mapping[str, Mapping[str, float]],
    *,
    train_metrics: Mapping[str, Mapping[str, float]] | None = None,
    tasks: Mapping[str, str] | None = None,
) -> PolicyVerdict:
    """Judge each trained head's test ``metrics`` (and the train/test ratio) against the policy.

    Heads the policy names but that were not trained are left out (a table without that target).
    """
    rules: list[RuleOutcome] = []
    for head, head_rules in policy.heads.items():
        if head not in metrics:
            continue
        for rule in head_rules:
            observed = metrics[head].get(rule.metric)
            passed = observed is not None and OPS[rule.op](observed, rule.value)
            rules.append(
                RuleOutcome(
                    head=head,
                    rule=f"{rule.metric} {rule.op} {rule.value:g}",
                    observed=observed,
                    threshold=rule.value,
                    passed=passed,
                )
            )
    if train_metrics and tasks:
        ratio = policy.overfitting.min_test_to_train_ratio
        for head, task in tasks.items():
            name = policy.primary_metric(task)
            test, train = metrics.get(head, {}).get(name), train_metrics.get(head, {}).get(name)
            observed = None if test is None or not train else test / train
            rules.append(
                RuleOutcome(
                    head=head,
                    rule=f"test {name} >= {ratio:g} x train {name}",
                    observed=observed,
                    threshold=ratio,
                    passed=observed is not None and observed >= ratio,
                    section="overfitting",
                )
            )
    return PolicyVerdict(policy=policy.policy, version=policy.version, rules=rules)
