"""The training reference a drift detector compares traffic against, and its encoder of rows.

A reference folder is what the pipeline's drift-reference step writes (the registry attachment
``drift_reference``): ``reference.parquet``, a seeded sample of training rows holding the watched
features, and ``summary.json`` (``features``, ``categorical`` levels, ``p_value``, ...).

Rows from traffic and reference rows go through the same encoding (:class:`engage.encoding.Encoder`,
lenient mode): a float matrix in the reference's feature order, numerics as float64 and categoricals as
the code of their level in the summary's list.
Empty values, and levels the reference does not know, are NaN: what the detector does with NaN is its
business (see :class:`~engage.drift.DriftDetector`). A row that cannot be encoded at all (not an object,
a feature missing, text in a numeric feature) is refused with :class:`~engage.errors.RequestRejected`
naming each row and field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from engage.encoding import Encoder
from engage.errors import ArtifactError, EngageError, RequestRejected

__all__ = ["REFERENCE_FILE", "REFUSED", "SUMMARY_FILE", "Reference"]

F64 = npt.NDArray[np.float64]
REFERENCE_FILE = "reference.parquet"
SUMMARY_FILE = "summary.json"
#: what a refusal of rows says first
REFUSED = "rows do not match the drift reference"


class Reference:
    """Reference rows (``frame``), their encoded ``matrix`` and the levels of each categorical feature."""

    def __init__(
        self,
        frame: pd.DataFrame,
        *,
        features: Sequence[str] | None = None,
        categorical: Mapping[str, Sequence[str]] | None = None,
        p_value: float = 0.05,
        source: str = "in memory",
    ) -> None:
        self.features: list[str] = list(features if features is not None else frame.columns)
        self.categorical: dict[str, list[str]] = {
            k: [str(v) for v in levels] for k, levels in (categorical or {}).items()
        }
        unknown = [name for name in self.categorical if name not in self.features]
        if unknown:
            raise ArtifactError(
                f"{source}: categorical feature(s) not among the features: {', '.join(unknown)}"
            )
        self.p_value = float(p_value)
        self.source = source
        #: the one encoding (lenient: numeric text is a number, blank and unseen levels are missing)
        self.encoder = Encoder(
            self.features, self.categorical, strict=False, positional=False, context=REFUSED
        )
        try:
            self.matrix: F64 = self.encode(frame)
        except EngageError as e:
            raise ArtifactError(f"{source}: the reference rows cannot be encoded: {e.message}") from None
        if len(self.matrix) == 0:
            raise ArtifactError(f"{source}: the reference holds no rows")
        self.frame = frame[self.features].reset_index(drop=True)

    @classmethod
    def load(cls, folder: str | Path) -> Reference:
        """Read ``reference.parquet`` and ``summary.json`` from ``folder``; :class:`ArtifactError` when
        they are missing, unreadable or disagree."""
        from engage.tables import read_table

        folder = Path(folder)
        table, summary_file = folder / REFERENCE_FILE, folder / SUMMARY_FILE
        if not table.is_file() or not summary_file.is_file():
            raise ArtifactError(
                f"{folder}: not a drift reference (expected {REFERENCE_FILE} and {SUMMARY_FILE}, which the "
                "pipeline's drift-reference step writes)"
            )
        try:
            summary = json.loads(summary_file.read_text(encoding="utf-8"))
            features = [str(f) for f in summary["features"]]
            categorical = {
                str(k): [str(v) for v in levels] for k, levels in summary.get("categorical", {}).items()
            }
            p_value = float(summary.get("p_value", 0.05))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise ArtifactError(f"{summary_file}: unreadable or incomplete drift summary: {e}") from None
        if not 0 < p_value < 1:
            raise ArtifactError(f"{summary_file}: p_value must lie in (0, 1); got {p_value}")
        try:
            frame = read_table(table)
        except EngageError as e:
            raise ArtifactError(f"{table}: {e.message}") from None
        except (OSError, ValueError) as e:
            raise ArtifactError(f"{table}: unreadable: {e}") from None
        missing = [f for f in features if f not in frame.columns]
        if missing:
            raise ArtifactError(f"{table}: lacks the summary's feature column(s): {', '.join(missing)}")
        return cls(frame, features=features, categorical=categorical, p_value=p_value, source=str(folder))

    @property
    def numeric(self) -> list[str]:
        return [name for name in self.features if name not in self.categorical]

    @property
    def categorical_indices(self) -> list[int]:
        """Column positions of the categorical features in the matrix."""
        return [j for j, name in enumerate(self.features) if name in self.categorical]

    @property
    def rows(self) -> int:
        return len(self.matrix)

    def encode(self, rows: Sequence[Any] | pd.DataFrame) -> F64:
        """Rows (a list of objects as parsed from JSON, or a DataFrame) as the reference's float matrix."""
        if isinstance(rows, pd.DataFrame):
            return self.encoder.frame(rows)
        if not isinstance(rows, Sequence) or isinstance(rows, str | bytes):
            raise RequestRejected("rows must be a list of objects", status=400, reason="malformed_request")
        return self.encoder.rows(rows)

    def encode_columns(self, columns: Mapping[str, Sequence[Any]]) -> F64:
        """Column-wise input (feature -> values, as in a v2 request) as the reference's float matrix."""
        return self.encoder.columns(columns)
