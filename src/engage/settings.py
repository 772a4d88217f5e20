"""Settings of the main job, read from ``ENGAGE_*`` environment variables; command-line flags win.

Nothing reads the environment at import time: :class:`RunSettings` is built when a command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["RunSettings"]


def _governance_review_sample() -> int:
    """``ENGAGE_GOVERNANCE_REVIEW_SAMPLE`` (400 unless set): the store's own default for a run's sample."""
    from engage.governance import GovernanceSettings

    return GovernanceSettings().review_sample


class RunSettings(BaseSettings):
    """Embedded defaults of ``engage run`` (``make run``): the pipeline's parameters under ``kfp.local``."""

    model_config = SettingsConfigDict(env_prefix="ENGAGE_RUN_", extra="forbid")

    data_uri: str = Field(default="", description="A table to run on (path or s3://...); empty: generate one")
    rows: int = Field(default=100_000, ge=1, description="Customers to generate")
    seed: int = Field(
        default=42, ge=0, description="Seed of the synthetic population, the split and the learners"
    )
    defect_rate: float = Field(
        default=0.002,
        ge=0,
        le=0.2,
        description="Share of rows spoiled per defect kind (shows the gate at work)",
    )
    bias: float = Field(default=0.0, ge=0, le=1, description="Bias knob on the protected attribute")
    drift: float = Field(default=0.0, ge=0, le=1, description="Drift knob on the latest signup cohort")
    snapshots: int = Field(default=4, ge=1, le=36, description="Monthly extracts in the generated table")
    as_of: str = Field(
        default="", description="Snapshot time of the generated table, ISO 8601 (empty: this hour)"
    )
    max_rounds: int = Field(default=1000, ge=1, description="Most boosting rounds per head")
    heads: list[str] = Field(
        default_factory=list,
        description='Heads to train, e.g. ["churn"] (empty: every target the contract defines)',
    )
    contract: Path | None = Field(default=None, description="Contract file (default: the customer contract)")
    policy: Path | None = Field(default=None, description="Promotion policy file (default: the shipped one)")
    registry: str = Field(default="artifacts/registry", description="Model registry URI (folder or s3://...)")
    canary_percent: int = Field(
        default=-1, ge=-1, le=100, description="Canary traffic share (-1: the policy's)"
    )
    pushgateway: str = Field(default="", description="Prometheus Pushgateway host:port for the run's metrics")
    review_sample: int = Field(
        default_factory=_governance_review_sample,
        ge=0,
        description="Records the run puts in the human review queue, stratified (0: none; default "
        "ENGAGE_GOVERNANCE_REVIEW_SAMPLE, 400); the queue is ENGAGE_GOVERNANCE_DATABASE_URL's",
    )
    out_dir: Path = Field(
        default=Path("artifacts/run"), description="Where kfp.local keeps the run's outputs"
    )
    score_version: str = Field(
        default="production",
        min_length=1,
        description="Registry version the batch-score step scores every customer with",
    )
    score_uri: str = Field(
        default="",
        description="Where batch scoring writes run_date=<date>/scores.parquet (empty: the step's output)",
    )
    score_engine: Literal["local", "dask"] = Field(
        default="local", description="Batch scoring's engine: this process, or a Dask cluster (ENGAGE_DASK_*)"
    )
    score_reasons: int = Field(
        default=3, ge=0, le=20, description="Reason codes per scored customer (0: none)"
    )

    def pipeline_params(self) -> dict[str, object]:
        """The pipeline's parameters (the snapshot time is this hour, so a rerun within it hits the cache)."""
        from datetime import UTC, datetime

        hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0).isoformat()
        return {
            "data_uri": self.data_uri,
            "rows": self.rows,
            "seed": self.seed,
            "snapshots": self.snapshots,
            "defect_rate": self.defect_rate,
            "bias": self.bias,
            "drift": self.drift,
            "as_of": self.as_of or hour,
            "contract": str(self.contract.resolve()) if self.contract else "",
            "policy": str(self.policy.resolve()) if self.policy else "",
            "registry": self.registry if "://" in self.registry else str(Path(self.registry).resolve()),
            "max_rounds": self.max_rounds,
            "heads": list(self.heads),
            "canary_percent": self.canary_percent,
            "pushgateway": self.pushgateway,
            "review_sample": self.review_sample,
            "score_version": self.score_version,
            "score_uri": self.score_uri,
            "score_engine": self.score_engine,
            "score_reasons": self.score_reasons,
        }
