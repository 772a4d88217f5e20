"""Settings of ``engage cloudwatch-bridge``, read from ``ENGAGE_CLOUDWATCH_*`` variables (flags win).

Credentials are not settings of Engage: boto3 reads the standard chain (``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY``, a profile, or on EKS the pod's IRSA web identity token).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["MAX_BATCH_BYTES", "MAX_BATCH_DATUMS", "CloudWatchSettings"]

#: PutMetricData's limits: 1,000 datums and 1 MB (1,048,576 bytes) of request payload per call
MAX_BATCH_DATUMS = 1000
MAX_BATCH_BYTES = 1_048_576


class CloudWatchSettings(BaseSettings):
    """Where the bridge reads, where it publishes, and how it buffers and retries."""

    model_config = SettingsConfigDict(env_prefix="ENGAGE_CLOUDWATCH_", extra="forbid", frozen=True)

    prometheus_url: str = Field(
        default="http://127.0.0.1:9090", min_length=1, description="Prometheus' base URL (its HTTP API)"
    )
    mapping: Path | None = Field(
        default=None,
        description="Mapping file: CloudWatch metric -> PromQL query, unit, dimensions "
        "(default: monitoring/cloudwatch/bridge.yml when present, else the built-in default)",
    )
    namespace: str = Field(
        default="Engage",
        min_length=1,
        max_length=255,
        pattern=r"^[^:].*$",
        description="CloudWatch namespace",
    )
    region: str = Field(default="", description="AWS region (empty: boto3's own chain, e.g. AWS_REGION)")
    endpoint_url: str = Field(
        default="", description="CloudWatch endpoint (empty: AWS'; set for moto or a VPC endpoint)"
    )
    interval_seconds: float = Field(
        default=60.0, gt=0, le=3600, description="Seconds between two scrapes of Prometheus"
    )
    storage_resolution: Literal[1, 60] = Field(
        default=60, description="1 (high resolution) or 60 (standard): CloudWatch's StorageResolution"
    )
    buffer_path: Path = Field(
        default=Path("artifacts/cloudwatch/buffer.sqlite3"),
        description="The on-disk buffer (SQLite): datums wait here until CloudWatch accepted them",
    )
    buffer_max_datums: int = Field(
        default=1_000_000, ge=1, description="Datums the buffer holds at most; past it the oldest are dropped"
    )
    batch_size: int = Field(
        default=MAX_BATCH_DATUMS,
        ge=1,
        le=MAX_BATCH_DATUMS,
        description="Datums per PutMetricData call (at most 1,000; calls also stay under 1 MB)",
    )
    max_retries: int = Field(
        default=8, ge=0, le=50, description="Retries of one throttled or failed call before the flush stops"
    )
    backoff_base_seconds: float = Field(
        default=0.2, gt=0, le=60, description="First backoff; doubles per retry, with full jitter"
    )
    backoff_cap_seconds: float = Field(default=20.0, gt=0, le=600, description="Longest single backoff")
    timeout_seconds: float = Field(
        default=10.0, gt=0, le=300, description="Timeout of one Prometheus query or CloudWatch call"
    )
    stop_flush_seconds: float = Field(
        default=10.0, ge=0, le=600, description="On SIGTERM / Ctrl-C: time left to flush before stopping"
    )
    metrics_port: int = Field(
        default=0, ge=0, le=65535, description="Port of the bridge's own /metrics (0: not served)"
    )
    metrics_address: str = Field(default="0.0.0.0", description="Address the bridge's /metrics listens on")  # nosec B104 # scraped from outside the pod
