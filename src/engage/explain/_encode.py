"""Model inputs as a float matrix, and back.

The sampling explainers (alibi, LIME, DiCE) and xgboost's own TreeSHAP all want a plain numeric matrix:
numeric features as float64, categorical features as the index of their level in the
:class:`~engage.features.FeatureSet` (NaN when empty or unseen, which the trees already treat as
missing). :meth:`Encoder.decode` rebuilds the design matrix the model was trained on, so a prediction
from the matrix equals a prediction from the table. Small inputs (one customer) take a pure-Python path:
building pandas categoricals costs milliseconds, more than the TreeSHAP itself.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from engage.errors import SchemaError
from engage.features import FeatureSet, numeric_values

__all__ = ["Encoder", "is_empty"]

F64 = npt.NDArray[np.float64]
_SMALL = 64  # rows encoded in pure Python below this


class Encoder:
    """Encode table rows to the float matrix the explainers use; decode it to the model's input."""

    def __init__(self, features: FeatureSet) -> None:
        self.features = features
        self.names = features.columns
        self.categorical = {
            j: list(features.categorical[name])
            for j, name in enumerate(self.names)
            if name in features.categorical
        }
        self._codes = {
            name: {level: i for i, level in enumerate(levels)}
            for name, levels in features.categorical.items()
        }

    @property
    def xgboost_types(self) -> list[str]:
        return ["c" if j in self.categorical else "float" for j in range(len(self.names))]

    def encode(self, frame: pd.DataFrame) -> F64:
        """Rows of ``frame`` (any extra columns ignored) as an ``(n, features)`` float matrix."""
        missing = [c for c in self.names if c not in frame.columns]
        if missing:
            raise SchemaError(f"input lacks feature column(s): {', '.join(missing)}")
        out = np.empty((len(frame), len(self.names)), dtype="float64")
        for j, name in enumerate(self.names):
            values = frame[name]
            if name in self._codes:
                out[:, j] = self._encode_levels(name, values)
            else:
                out[:, j] = numeric_values(name, values)
        return out

    def encode_records(self, records: Sequence[Mapping[str, Any]]) -> F64:
        """Rows given as mappings (a JSON request's instances) as the float matrix, without pandas.

        The same values as :meth:`encode` of the equivalent table; extra keys are ignored.
        """
        out = np.empty((len(records), len(self.names)), dtype="float64")
        for i, record in enumerate(records):
            if not isinstance(record, Mapping):
                raise SchemaError(
                    f"row {i}: expected an object of feature values, got {type(record).__name__}"
                )
            missing = [name for name in self.names if name not in record]
            if missing:
                raise SchemaError(f"row {i}: input lacks feature column(s): {', '.join(missing)}")
            for j, name in enumerate(self.names):
                v = record[name]
                if name in self._codes:
                    out[i, j] = np.nan if is_empty(v) else self._codes[name].get(_text(v), np.nan)
                else:
                    out[i, j] = _number(name, v)
        return out

    def _encode_levels(self, name: str, values: pd.Series) -> F64:
        codes = self._codes[name]
        if len(values) < _SMALL:
            return np.array(
                [np.nan if is_empty(v) else codes.get(_text(v), np.nan) for v in values.tolist()],
                dtype="float64",
            )
        index = pd.Categorical(values.astype("string"), categories=self.features.categorical[name]).codes
        return np.where(index < 0, np.nan, index).astype("float64")

    def decode(self, matrix: F64) -> pd.DataFrame:
        """The design matrix (model input table) of an encoded matrix; codes are rounded to levels."""
        matrix = np.asarray(matrix, dtype="float64").reshape(-1, len(self.names))
        out: dict[str, Any] = {}
        for j, name in enumerate(self.names):
            column = matrix[:, j]
            if j in self.categorical:
                levels = self.categorical[j]
                codes = np.where(np.isnan(column), -1, np.rint(np.nan_to_num(column, nan=-1.0)))
                codes = np.where((codes < 0) | (codes >= len(levels)), -1, codes).astype("int64")
                out[name] = pd.Categorical.from_codes(codes, categories=pd.Index(levels))  # type: ignore[arg-type]
            else:
                out[name] = column
        return pd.DataFrame(out)

    def values(self, matrix: F64) -> list[dict[str, Any]]:
        """Rows of an encoded matrix as readable values: numbers, level names, None when empty."""
        rows = []
        for row in np.asarray(matrix, dtype="float64").reshape(-1, len(self.names)):
            rows.append({name: self.value(j, row[j]) for j, name in enumerate(self.names)})
        return rows

    def value(self, j: int, x: float) -> Any:
        if math.isnan(x):
            return None
        if j in self.categorical:
            return self.categorical[j][round(x)]
        return int(x) if float(x).is_integer() else float(x)


def is_empty(v: Any) -> bool:
    """None, pandas' NA or a float NaN: a value that is not there."""
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def _number(name: str, v: Any) -> float:
    if is_empty(v):
        return math.nan
    if isinstance(v, bool | int | float | np.number):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            pass
    raise SchemaError(f"feature {name!r} must be numeric; got {v!r}")


def _text(v: Any) -> str:
    # the same spelling design_matrix gets from .astype("string"): True -> "True", 1.0 -> "1.0"
    return str(v)
