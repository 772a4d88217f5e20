"""What the registry stores and answers: versions, alias pointers, alias moves (pydantic, frozen)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AliasMove", "AliasPointer", "ModelVersion"]

#: layout version of ``version.json`` and of the alias files
REGISTRY_FORMAT = 1


class ModelVersion(BaseModel):
    """One committed model version: its ``version.json`` plus the aliases it holds when read.

    ``uri`` and ``aliases`` are filled in when the version is read (the registry may have been copied
    elsewhere since, and aliases move), so the file stores neither.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^sha256:[0-9a-f]{64}$", description="sha256 of the bundle's manifest.json")
    short_id: str = Field(pattern=r"^[0-9a-f]{12}$", description="The first 12 hex characters of the id")
    model: str = Field(description="The registry's model name (a folder of the registry)")
    created_at: datetime = Field(description="When the version was published, UTC")
    uri: str = Field(default="", description="The version's folder (holds model/ and the attachments)")
    metadata: dict[str, Any] = Field(
        default_factory=dict,
        description="Free-form facts: metrics, data_sha256, pipeline_run_id, policy and fairness verdicts",
    )
    attachments: tuple[str, ...] = Field(default=(), description="Names of the files beside model/")
    aliases: tuple[str, ...] = Field(default=(), description="Aliases that point at this version now")
    registry_format: int = REGISTRY_FORMAT

    @property
    def hex(self) -> str:
        """The id without its ``sha256:`` prefix: the version's folder name."""
        return self.id.removeprefix("sha256:")


class AliasPointer(BaseModel):
    """The content of ``aliases/<alias>.json``: which version the alias names, and the last move."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    alias: str
    version: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    set_at: datetime
    actor: str
    reason: str
    registry_format: int = REGISTRY_FORMAT


class AliasMove(BaseModel):
    """One alias move and the audit record that documents it.

    ``changed`` is false for a move to the version the alias already names (promoting production again):
    nothing is rewritten, but the request is still audited.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    alias: str
    from_version: str | None = Field(description="What the alias named before (None: it was new)")
    to_version: str
    actor: str
    reason: str
    at: datetime
    changed: bool
    audit_key: str = Field(description="The audit record of this move on the audit trail (``seq:<n>``)")
