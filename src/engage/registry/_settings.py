"""Where the registry is, read from ``ENGAGE_REGISTRY_*`` variables when a command runs (flags win).

Credentials and endpoints of an object store are not settings of Engage: s3fs reads the standard AWS
variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL_S3`` for MinIO or another
S3-compatible store) and the pod's service-account role.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["RegistrySettings"]


class RegistrySettings(BaseSettings):
    """The registry ``engage registry`` (and the pipeline's publish step) uses by default."""

    model_config = SettingsConfigDict(env_prefix="ENGAGE_REGISTRY_", extra="forbid", frozen=True)

    uri: str = Field(
        default="artifacts/registry",
        min_length=1,
        description="Registry storage: a local folder (no scheme), file://…, or s3://bucket/prefix",
    )
    model: str = Field(
        default="customers",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$",
        description="The model's folder inside the registry",
    )
