"""Where the governance store is and how long it keeps things, from ``ENGAGE_GOVERNANCE_*`` (flags win)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DEFAULT_DATABASE_URL", "GovernanceSettings"]

#: embedded, no set-up: a SQLite file beside the registry's default folder
DEFAULT_DATABASE_URL = "sqlite:///artifacts/governance.db"
#: seven years (the readiness checklist's audit history), in days
SEVEN_YEARS = 7 * 365 + 2


class GovernanceSettings(BaseSettings):
    """The governance store every Engage part uses by default (CLI, pipeline steps, predictor, API).

    Production sets ``ENGAGE_GOVERNANCE_DATABASE_URL=postgresql+psycopg://user@host/db`` (the password
    from ``PGPASSWORD`` or the URL, kept in a Kubernetes Secret).
    """

    model_config = SettingsConfigDict(env_prefix="ENGAGE_GOVERNANCE_", extra="forbid", frozen=True)

    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        min_length=1,
        description="SQLAlchemy URL: sqlite:///path (default, embedded) or postgresql+psycopg://…",
    )
    retention_days: int = Field(
        default=SEVEN_YEARS,
        ge=1,
        description="Audit payloads older than this are purged by `engage audit purge` (legal holds excepted)",
    )
    review_sample: int = Field(
        default=400, ge=0, description="Records a pipeline run puts in the human review queue (stratified)"
    )
    review_threshold_band: float = Field(
        default=0.05,
        ge=0,
        le=0.5,
        description="A classification score this close to its decision threshold goes to human review",
    )
    review_outlier_z: float = Field(
        default=6.0,
        gt=0,
        description="A numeric feature this many robust deviations from the training median marks an outlier",
    )
