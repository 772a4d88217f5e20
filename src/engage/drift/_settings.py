"""Settings of the drift detector, read from ``ENGAGE_DRIFT_*`` variables (server flags override some)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DriftSettings"]


class DriftSettings(BaseSettings):
    """Backend, window and cadence of :class:`~engage.drift.DriftDetector`.

    alibi-detect is under the Business Source License 1.1; ``backend="scipy"`` runs the same tests
    (Kolmogorov-Smirnov per numeric feature, chi-square per categorical one, the same correction) with
    scipy alone, for a deployment that must stay on OSI licences.
    """

    model_config = SettingsConfigDict(env_prefix="ENGAGE_DRIFT_", extra="forbid", frozen=True)

    backend: Literal["auto", "alibi-detect", "scipy"] = Field(
        default="auto",
        description="alibi-detect: its TabularDrift (BSL 1.1); scipy: the same tests, licence-clean; auto: "
        "alibi-detect when it is installed, else scipy (a licence-clean install needs no setting)",
    )
    window_size: int = Field(
        default=1000, ge=10, le=1_000_000, description="Most recent rows a test looks at"
    )
    min_rows: int = Field(
        default=200, ge=10, description="No window test before the window holds this many rows"
    )
    test_every_rows: int = Field(default=250, ge=1, description="Test after this many new rows ...")
    test_every_seconds: float = Field(default=30.0, gt=0, description="... or this long after the last test")
    p_value: float | None = Field(
        default=None, gt=0, lt=1, description="Significance before correction; None: the reference's p_value"
    )
    correction: Literal["bonferroni", "fdr"] = Field(
        default="bonferroni", description="Multiple-test correction across features (fdr: Benjamini-Hochberg)"
    )
    outlier_quantile: float = Field(
        default=0.99, gt=0.5, lt=1, description="A row is an outlier above this quantile of reference scores"
    )

    @model_validator(mode="after")
    def _window_holds_min_rows(self) -> DriftSettings:
        if self.min_rows > self.window_size:
            raise ValueError(f"min_rows ({self.min_rows}) is larger than window_size ({self.window_size})")
        return self
