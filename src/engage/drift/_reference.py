"""The training reference a drift detector compares traffic against, and the one encoding of rows to it.

A reference folder is what the pipeline's drift-reference step writes (the registry attachment
``drift_reference``): ``reference.parquet``, a seeded sample of training rows holding the watched
features, and ``summary.json`` (``features``, ``categorical`` levels, ``p_value``, ...).

Rows from traffic and reference rows go through the same encoding: a float matrix in the reference's
feature order, numerics as float64 and categoricals as the code of their level in the summary's list.
Empty values, and levels the reference does not know, are NaN: what the detector does with NaN is its
business (see :class:`~engage.drift.DriftDetector`). A row that cannot be encoded at all (not an object,
a feature missing, text in a numeric feature) is refused with :class:`~engage.errors.RequestRejected`
naming each row and field.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from engage.errors import ArtifactError, EngageError, RequestRejected

__all__ = ["REFERENCE_FILE", "SUMMARY_FILE", "Reference"]

F64 = npt.NDArray[np.float64]
REFERENCE_FILE = "reference.parquet"
SUMMARY_FILE = "summary.json"
#: problems listed in a refusal (the count says how many there were in all)
MAX_DETAILS = 50


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
        #: per feature in order: its name and, for a categorical one, level -> code
        self._plan: list[tuple[str, dict[str, int] | None]] = [
            (
                name,
                {level: i for i, level in enumerate(self.categorical[name])}
                if name in self.categorical
                else None,
            )
            for name in self.features
        ]
        try:
            self.matrix: F64 = self.encode(frame)
        except RequestRejected as e:
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
            return self._encode_frame(rows)
        if not isinstance(rows, Sequence) or isinstance(rows, str | bytes):
            raise RequestRejected("rows must be a list of objects", status=400, reason="bad_request")
        out = np.empty((len(rows), len(self._plan)), dtype=np.float64)
        problems: list[dict[str, object]] = []
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                problems.append(
                    {"row": i, "field": None, "error": f"row is not an object (got {type(row).__name__})"}
                )
                continue
            for j, (name, codes) in enumerate(self._plan):
                if name not in row:
                    problems.append({"row": i, "field": name, "error": "missing feature"})
                    continue
                value = row[name]
                if codes is None:
                    number = _number(value)
                    if isinstance(number, str):
                        problems.append({"row": i, "field": name, "error": number})
                        continue
                    out[i, j] = number
                else:
                    out[i, j] = _code(codes, value)
        if problems:
            raise _refusal(problems)
        return out

    def encode_columns(self, columns: Mapping[str, Sequence[Any]]) -> F64:
        """Column-wise input (feature -> values, as in a v2 request) as the reference's float matrix."""
        missing: list[dict[str, object]] = [
            {"row": None, "field": name, "error": "missing feature"}
            for name in self.features
            if name not in columns
        ]
        if missing:
            raise _refusal(missing)
        lengths = {name: len(columns[name]) for name in self.features}
        if len(set(lengths.values())) > 1:
            raise RequestRejected(
                "feature columns differ in length: " + ", ".join(f"{k}={v}" for k, v in lengths.items()),
                status=422,
                reason="schema",
                details=[{"row": None, "field": k, "error": f"{v} values"} for k, v in lengths.items()],
            )
        frame = pd.DataFrame({name: pd.Series(list(columns[name]), dtype=object) for name in self.features})
        return self._encode_frame(frame)

    def _encode_frame(self, frame: pd.DataFrame) -> F64:
        problems: list[dict[str, object]] = [
            {"row": None, "field": name, "error": "missing feature"}
            for name in self.features
            if name not in frame.columns
        ]
        if problems:
            raise _refusal(problems)
        out = np.empty((len(frame), len(self._plan)), dtype=np.float64)
        for j, (name, codes) in enumerate(self._plan):
            column = frame[name]
            if codes is None:
                values, bad = _numeric_column(column)
                problems += [{"row": i, "field": name, "error": error} for i, error in bad]
                out[:, j] = values
            else:
                text = column.astype("string")
                coded = pd.Categorical(text, categories=list(codes)).codes.astype(np.float64)
                coded[coded < 0] = np.nan
                out[:, j] = coded
        if problems:
            raise _refusal(problems)
        return out


def _number(value: Any) -> float | str:
    """``value`` as a float (None and blank text are NaN), or the reason it is not a number."""
    if value is None:
        return math.nan
    if isinstance(value, bool):
        return f"expected a number, got {str(value).lower()}"
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        if not value.strip():
            return math.nan
        try:
            number = float(value)
        except ValueError:
            return f"expected a number, got {value[:40]!r}"
    else:
        return f"expected a number, got {type(value).__name__}"
    return number if not math.isinf(number) else "expected a finite number"


def _code(codes: Mapping[str, int], value: Any) -> float:
    if value is None:
        return math.nan
    code = codes.get(value if isinstance(value, str) else str(value))
    return math.nan if code is None else float(code)


def _numeric_column(column: pd.Series) -> tuple[F64, list[tuple[int, str]]]:
    """A numeric column as float64 and its bad values; values of mixed type (JSON) are checked one by one
    so that ``true`` or ``"abc"`` is refused as in a row object."""
    try:
        if column.dtype == object:
            raise TypeError("checked value by value")
        values = column.to_numpy(dtype="float64", na_value=np.nan)
    except (TypeError, ValueError):
        values = np.empty(len(column), dtype=np.float64)
        bad: list[tuple[int, str]] = []
        for i, v in enumerate(column.tolist()):
            number = math.nan if v is pd.NA else _number(v)
            if isinstance(number, str):
                bad.append((i, number))
                number = math.nan
            values[i] = number
        return values, bad
    infinite = np.flatnonzero(np.isinf(values))
    return values, [(int(i), "expected a finite number") for i in infinite]


def _refusal(problems: list[dict[str, object]]) -> RequestRejected:
    first = problems[0]
    where = f"row {first['row']}, " if first["row"] is not None else ""
    field = f"field {first['field']}: " if first["field"] is not None else ""
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return RequestRejected(
        f"rows do not match the drift reference: {where}{field}{first['error']}{more}",
        status=422,
        reason="schema",
        details=problems[:MAX_DETAILS],
    )
