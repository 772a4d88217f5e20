"""Settings of the explanation methods, read from ``ENGAGE_EXPLAIN_*`` variables when an explainer is built."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ExplainSettings"]


class ExplainSettings(BaseSettings):
    """Budgets and switches of :mod:`engage.explain` (defaults are what ``engage explain`` uses)."""

    model_config = SettingsConfigDict(env_prefix="ENGAGE_EXPLAIN_", extra="forbid", frozen=True)

    licence_clean: bool = Field(
        default=False,
        description="Serve only methods under OSI licences (TreeSHAP, LIME, DiCE, reason codes, "
        "permutation importance); refuse the alibi methods (Business Source License 1.1)",
    )
    seed: int = Field(default=0, ge=0, description="Seed of every sampling method")
    background_rows: int = Field(
        default=500,
        ge=20,
        le=100_000,
        description="Reference rows drawn from the table (LIME, anchors, DiCE)",
    )
    kernel_background_rows: int = Field(
        default=50, ge=5, le=1_000, description="KernelSHAP background rows (its cost grows with them)"
    )
    kernel_samples: int = Field(
        default=1_000, ge=50, le=100_000, description="KernelSHAP budget: coalitions evaluated per row"
    )
    anchor_threshold: float = Field(default=0.95, gt=0, lt=1, description="Anchor precision to reach")
    lime_samples: int = Field(default=2_000, ge=100, le=100_000, description="LIME perturbations per row")
    top_features: int = Field(default=5, ge=1, le=50, description="Reasons / LIME features reported per row")
    counterfactuals: int = Field(default=3, ge=1, le=20, description="Counterfactuals asked of DiCE per row")
    counterfactual_samples: int = Field(
        default=2_000, ge=100, le=100_000, description="DiCE budget: random candidates drawn per round"
    )
    decision_threshold: float = Field(
        default=0.5,
        gt=0,
        lt=1,
        description="A classifier's decision threshold: counterfactuals bring the probability below it",
    )
    regression_lift: float = Field(
        default=0.2,
        gt=0,
        le=10,
        description="A regression counterfactual asks for this relative rise (0.2: +20 %, capped at the "
        "top of a unit-interval score)",
    )
