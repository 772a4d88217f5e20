"""Per-cell logit offsets of a classifier head: the post-processor a fairness mitigation ships.

It lives beside the model bundle (which applies it) so that a server loads it without the fairness stack.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from ._groups import AttributeSpec, Labels, cell_labels

__all__ = ["GroupOffsets"]

F64 = npt.NDArray[np.float64]


@dataclass
class GroupOffsets:
    """Per-cell logit offsets of a classifier head (a post-processor with a JSON artifact)."""

    attributes: list[AttributeSpec]
    offsets: dict[str, float]

    def apply_frame(self, prob: F64, frame: pd.DataFrame) -> F64:
        """Shift probabilities by the offset of each row's cell, read from ``frame``'s protected columns."""
        return self.apply(prob, cell_labels(frame, self.attributes))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GroupOffsets:
        if data.get("kind") != "group_logit_offsets":
            raise ValueError(f"unknown adjustment kind {data.get('kind')!r}")
        return cls(
            attributes=list(data["attributes"]),
            offsets={str(k): float(v) for k, v in data["offsets"].items()},
        )

    def apply(self, prob: F64, cells: Labels) -> F64:
        from scipy.special import expit, logit

        shift = np.array([self.offsets.get(str(c), 0.0) for c in cells], dtype="float64")
        return np.asarray(expit(logit(np.clip(prob, 1e-7, 1 - 1e-7)) + shift), dtype="float64")

    def to_json(self) -> dict[str, Any]:
        return {"kind": "group_logit_offsets", "attributes": self.attributes, "offsets": self.offsets}
