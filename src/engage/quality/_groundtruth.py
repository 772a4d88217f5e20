"""Score a validation against the defects a generator recorded: recall and precision per defect kind."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from pydantic import BaseModel

from ._validate import Validation

__all__ = ["DefectScore", "score_defects"]


class DefectScore(BaseModel):
    kind: str
    check: str
    injected: int
    found: int
    flagged: int

    @property
    def recall(self) -> float:
        return self.found / self.injected if self.injected else 1.0

    @property
    def precision(self) -> float:
        return self.found / self.flagged if self.flagged else 1.0


def score_defects(
    validation: Validation, defects: pd.DataFrame, checks: Mapping[str, str]
) -> list[DefectScore]:
    """Compare the rows each check flagged with the rows spoiled on purpose.

    ``defects`` has one row per spoiled row (columns ``row``, ``kind``, ``column``); ``checks`` maps a
    defect kind to the check that should find it: a rule id, or a schema check name such as
    ``not_null``, which then means ``schema.<spoiled column>.not_null``.
    """
    n = validation.report.rows
    scores = []
    for kind, check in checks.items():
        spoiled_rows = defects.loc[defects["kind"] == kind]
        spoiled = np.zeros(n, dtype=bool)
        spoiled[spoiled_rows["row"].to_numpy(dtype=np.int64)] = True
        if check in validation.masks:
            flagged = validation.masks[check]
        else:
            # a schema check name (not_null): the union of that check over every column
            flagged = np.zeros(n, dtype=bool)
            for check_id, mask in validation.masks.items():
                if check_id.startswith("schema.") and check_id.endswith(f".{check}"):
                    flagged |= mask
        scores.append(
            DefectScore(
                kind=kind,
                check=check,
                injected=int(spoiled.sum()),
                found=int((flagged & spoiled).sum()),
                flagged=int(flagged.sum()),
            )
        )
    return scores
