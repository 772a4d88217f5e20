"""The artifacts a model card is built from, read into typed objects or refused with the file named.

Each reader validates only the keys the card uses (extra keys are ignored, so a newer artifact with more
figures still reads). A missing file, a file that is not JSON, or a missing or mistyped key becomes one
:class:`~engage.errors.ArtifactError` line ``<file>: <key.path>: <what is wrong>``: a card is evidence,
so it is never built from an input it could not read whole.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from engage.artifacts import MANIFEST, verify_manifest
from engage.errors import ArtifactError
from engage.policy import FairnessPolicy
from engage.training import bundle_version

__all__ = [
    "Bundle",
    "EvaluationIn",
    "ExplanationsIn",
    "FairnessIn",
    "read_bundle",
    "read_evaluation",
    "read_explanations",
    "read_fairness",
]

_M = TypeVar("_M", bound=BaseModel)


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


# ---- shared pieces ------------------------------------------------------------------------------------


class NameVersion(_In):
    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.name} {self.version}"


class RuleIn(_In):
    """One rule outcome as :class:`engage.policy.RuleOutcome` writes it."""

    head: str
    rule: str
    observed: float | None
    threshold: float
    passed: bool


# ---- evaluation.json (engage train) ----------------------------------------------------------------


class LearnerIn(_In):
    objective: str
    transform: str
    calibrated: bool
    iterations: int | None = None
    train: dict[str, float | None]
    test: dict[str, float | None]


class HeadEvalIn(_In):
    column: str
    task: str
    distribution: str
    rows: dict[str, int]
    primary_metric: str
    better_learner: str | None = None
    models: dict[str, LearnerIn] = Field(min_length=1)


class FeaturesIn(_In):
    numeric: list[str]
    categorical: list[str]


class PolicyOutcomeIn(_In):
    policy: str
    version: str
    rules: list[RuleIn]
    passed: bool


class ChampionHeadIn(_In):
    metric: str
    champion: float | None
    challenger: float | None
    delta: float | None
    winner: str


class ChampionIn(_In):
    champion: str
    problem: str | None = None
    winner: str
    min_improvement: float
    heads: dict[str, ChampionHeadIn] = Field(default_factory=dict)


class EvaluationIn(_In):
    contract: NameVersion
    trained_at: str
    rows: int
    split: str
    features: FeaturesIn
    config: dict[str, Any] = Field(default_factory=dict)
    heads: dict[str, HeadEvalIn] = Field(min_length=1)
    notes: list[str] = Field(default_factory=list)
    policy: PolicyOutcomeIn
    champion: ChampionIn | None = None


# ---- a model bundle's manifest.json and features.json ------------------------------------------------


class HeadSpecIn(_In):
    column: str
    task: str
    distribution: str
    positive: bool | int | str | None = None
    output: str
    learner: str
    objective: str
    transform: str
    calibrated: bool
    best_iteration: int | None = None
    adjustment: str | None = None


class BundleMetaIn(_In):
    format: str
    engage_version: str | None = None
    learner: str
    trained_at: str
    contract: NameVersion
    policy: NameVersion | None = None
    #: the policy verdict on this bundle; None on the run's comparison (baseline) bundle, never judged
    policy_passed: bool | None = None
    heads: dict[str, HeadSpecIn] = Field(min_length=1)
    #: per head, the candidate the fairness gate chose (only in a bundle the gate wrote)
    fairness: dict[str, str | None] | None = None


class ManifestIn(_In):
    metadata: BundleMetaIn


class BundleFeaturesIn(_In):
    numeric: list[str]
    categorical: dict[str, list[str]]


class Bundle(_In):
    """A verified model bundle: where it is, its version, its metadata and the levels it was fitted on."""

    directory: Path
    version: str
    metadata: BundleMetaIn
    features: BundleFeaturesIn


# ---- fairness.json (engage fairness) ------------------------------------------------------------------


class FigureIn(_In):
    value: float | None
    low: float | None = None
    high: float | None = None


class GroupIn(_In):
    """One group; every key besides group, rows and judged is a figure (selection_rate, mae, ...)."""

    group: str
    rows: int
    judged: bool
    stats: dict[str, FigureIn] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _gather_stats(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "stats" in data:
            return data
        fixed = {k: v for k, v in data.items() if k in ("group", "rows", "judged")}
        return {**fixed, "stats": {k: v for k, v in data.items() if k not in fixed}}


class AttributeIn(_In):
    attribute: str
    judged_groups: list[str]
    summary: dict[str, FigureIn]
    groups: list[GroupIn]
    notes: list[str] = Field(default_factory=list)


class OffsetAttributeIn(_In):
    name: str
    bins: list[float] | None = None


class OffsetsIn(_In):
    kind: str
    attributes: list[OffsetAttributeIn]
    offsets: dict[str, float]


class CandidateIn(_In):
    name: str
    stage: str
    description: str
    shippable: bool
    reads_protected_attributes: bool
    eligible: bool
    why_not_eligible: str | None = None
    problem: str | None = None
    meets_policy: bool
    accuracy: dict[str, float | None]
    rules: list[RuleIn]
    fairness: dict[str, AttributeIn]
    offsets: OffsetsIn | None = None


class HeadFairIn(_In):
    task: str
    verdict: str
    reason: str
    chosen: str | None
    primary_metric: str
    candidates: list[CandidateIn] = Field(min_length=1)

    def candidate(self, name: str) -> CandidateIn | None:
        return next((c for c in self.candidates if c.name == name), None)


class FairPolicyIn(_In):
    name: str
    version: str
    fairness: FairnessPolicy


class FairnessIn(_In):
    verdict: str
    reason: str
    #: false when the contract states fairness does not apply (``reason`` is then the contract's reason)
    applicable: bool = True
    contract: NameVersion
    policy: FairPolicyIn
    attributes: list[str]
    test_rows: int
    heads: dict[str, HeadFairIn]
    notes: list[str] = Field(default_factory=list)


# ---- global explanations (engage.explain) ----------------------------------------------------------


class PermutationIn(_In):
    mean: float | None
    std: float | None = None


class ExplainedHeadIn(_In):
    output: str
    output_space: str | None = None
    base_value: float | None = None
    rows: int | None = None
    mean_abs_shap: dict[str, float | None]
    permutation_importance: dict[str, PermutationIn] | None = None


class ExplainedDataIn(_In):
    heads: dict[str, ExplainedHeadIn]


class ExplainedMetaIn(_In):
    method: str | None = None
    model_version: str | None = None


class ExplanationsIn(_In):
    data: ExplainedDataIn
    meta: ExplainedMetaIn = Field(default_factory=ExplainedMetaIn)


# ---- readers ---------------------------------------------------------------------------------------


def _problem(err: Any) -> str:
    path = ".".join(str(p) for p in err["loc"]) or "(top level)"
    if err["type"] == "missing":
        return f"{path}: required key is missing"
    return f"{path}: {err['msg']} (got {err.get('input')!r:.60})"


def parse(model: type[_M], data: Any, source: str) -> _M:
    """Validate ``data`` as ``model``; one ArtifactError naming ``source`` and the first problems."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        problems = [_problem(err) for err in e.errors()]
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ArtifactError(f"{source}: " + "; ".join(problems[:3]) + more) from None


def load_json(path: Path, what: str) -> Any:
    """The JSON in ``path``; ``what`` says which command writes it, for the missing-file message."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ArtifactError(f"{path}: missing ({what})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{path}: cannot be read: {e}") from None
    try:
        return json.loads(text)
    except ValueError as e:
        raise ArtifactError(f"{path}: not valid JSON ({e})") from None


def read_evaluation(train_dir: Path) -> tuple[Path, EvaluationIn]:
    path = train_dir / "evaluation.json"
    return path, parse(EvaluationIn, load_json(path, "written by engage train"), str(path))


def read_fairness(fairness_dir: Path) -> tuple[Path, FairnessIn]:
    path = fairness_dir / "fairness.json"
    return path, parse(FairnessIn, load_json(path, "written by engage fairness"), str(path))


def read_bundle(directory: Path) -> Bundle:
    """Verify the bundle against its manifest (so the version names intact files), then read its metadata."""
    verify_manifest(directory)
    manifest_path = directory / MANIFEST
    manifest = parse(ManifestIn, load_json(manifest_path, "a model bundle"), str(manifest_path))
    features_path = directory / "features.json"
    features = parse(BundleFeaturesIn, load_json(features_path, "a model bundle"), str(features_path))
    return Bundle(
        directory=directory,
        version=bundle_version(directory),
        metadata=manifest.metadata,
        features=features,
    )


def read_explanations(source: Path | dict[str, Any]) -> tuple[str, ExplanationsIn]:
    """Global explanations from a JSON file or the dict ``engage.explain`` returns."""
    if isinstance(source, dict):
        return "explanations", parse(ExplanationsIn, source, "explanations")
    path = Path(source)
    return str(path), parse(ExplanationsIn, load_json(path, "global explanations"), str(path))
