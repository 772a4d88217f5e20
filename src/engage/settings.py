"""Settings of the main job, read from ``ENGAGE_*`` environment variables; command-line flags win.

Nothing reads the environment at import time: :class:`RunSettings` is built when a command runs.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["RunSettings"]


class RunSettings(BaseSettings):
    """Embedded defaults of ``engage run`` (``make run``)."""

    model_config = SettingsConfigDict(env_prefix="ENGAGE_RUN_", extra="forbid")

    rows: int = Field(default=100_000, ge=1, description="Customers to generate")
    seed: int = Field(default=42, description="Seed of the synthetic population")
    defect_rate: float = Field(
        default=0.002,
        ge=0,
        le=0.2,
        description="Share of rows spoiled per defect kind (shows the gate at work)",
    )
    bias: float = Field(default=0.0, ge=0, le=1, description="Bias knob on the protected attribute")
    drift: float = Field(default=0.0, ge=0, le=1, description="Drift knob on the latest signup cohort")
    snapshots: int = Field(default=4, ge=1, le=36, description="Monthly extracts in the generated table")
    train: bool = Field(default=True, description="Train the models on the gate's remediated table")
    fairness: bool = Field(default=True, description="Run the fairness gate after training")
    explain: bool = Field(
        default=True, description="Explain the chosen model and write its model card after training"
    )
    champion: Path | None = Field(default=None, description="Model bundle in production, to challenge")
    out_dir: Path = Field(default=Path("artifacts/run"), description="Where the run writes its outputs")
    contract: Path | None = Field(default=None, description="Contract file (default: the customer contract)")
    great_expectations: bool = Field(default=True, description="Run the generated Great Expectations suite")
