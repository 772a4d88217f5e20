"""Which engine runs a step and, for Dask, where its cluster is: ``ENGAGE_DASK_*`` variables (flags win)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DaskSettings", "Engine"]

#: ``local``: one process, the table in memory (tables that fit); ``dask``: a Dask cluster
Engine = Literal["local", "dask"]


class DaskSettings(BaseSettings):
    """Where the Dask cluster is. Empty ``scheduler``: a ``LocalCluster`` of ``workers`` processes is
    started on loopback beside the step and closed after it (the embedded default); on EKS the pipeline
    step starts a ``DaskCluster`` through the Dask Kubernetes operator and passes its address here."""

    model_config = SettingsConfigDict(env_prefix="ENGAGE_DASK_", extra="forbid", frozen=True)

    scheduler: str = Field(
        default="",
        description="Address of a running scheduler (tcp://host:8786); empty: start a LocalCluster",
    )
    workers: int = Field(default=2, ge=1, le=256, description="Worker processes of a LocalCluster")
    threads_per_worker: int = Field(
        default=1, ge=1, le=64, description="Threads of each LocalCluster worker (xgboost's nthread too)"
    )
    memory_limit: str = Field(
        default="auto",
        description="Memory of each LocalCluster worker (Dask's syntax: '2GiB', 'auto' = machine / workers)",
    )
    partition_rows: int = Field(
        default=250_000,
        ge=1_000,
        description="Rows of each partition when a table is split for the engine (Parquet row groups)",
    )
    timeout_seconds: float = Field(
        default=60.0, gt=0, description="How long to wait for the scheduler and the workers at start"
    )
