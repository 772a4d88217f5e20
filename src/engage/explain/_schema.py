"""One result schema for every explanation method: ``{"data": ..., "meta": ...}``.

``data`` holds what the method found, in a shape per method (documented in docs/explanations.md);
``meta`` says which method, which head of which model version, on what output scale, with which
parameters, under which licence, and how long it took. Servers return :meth:`Explanation.to_dict`
as their JSON body; the customer document and the model card read the same objects.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Explanation", "ExplanationMeta", "Timings"]


class Timings(BaseModel):
    """Wall-clock time of the explanation itself (model loading and imports excluded)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    total_ms: float = Field(ge=0)
    rows: int = Field(ge=0)
    per_row_ms: float = Field(ge=0)


class ExplanationMeta(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    method: str
    #: the library doing the work and its licence (alibi is BSL 1.1; the rest are OSI licences)
    library: str
    licence: str
    head: str | None = None
    #: the prediction column the head writes (``churn_probability``)
    output: str | None = None
    #: ``sha256:...`` of the model bundle's manifest; ``unsaved`` for a bundle never written
    model_version: str
    #: the scale of attributions: ``log-odds``, ``logit``, ``log``, ``identity`` or ``prediction``
    output_space: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    timings: Timings


class Explanation(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    data: dict[str, Any]
    meta: ExplanationMeta

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
