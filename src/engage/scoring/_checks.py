"""The predictor's contract checks, a column at a time over a table: which rows may be scored, and why not.

:class:`engage.encoding.Encoder` in contract mode (``strict=True``) is what the predictor runs on every
request row; :func:`check_frame` applies the same rules to every row of a table partition at numpy speed
and, where a column's values are not plainly typed (text read from CSV, mixed objects), asks the encoder
itself, value by value. A row with a problem is not scored: it goes to quarantine with the first problem
the predictor would have named for it (the same reason code, the same field, in the same order).

Checked per value, as the predictor does: empty where the contract says not nullable
(``null_not_allowed``), not a finite number or past float32 (``not_finite``), a fraction in an integer
column or a boolean that is not 0/1 (``wrong_type``), outside the contract's bounds (``out_of_range``), a
level the model does not know (``unknown_category``), a number where a category belongs or text where a
number belongs (``wrong_type``). Checked per partition: a model input column that is absent, repeated, or
of a type that can hold no valid value (``schema``): the whole partition is quarantined with the reason.

Columns of the table that the contract does not name are not refused (the predictor refuses them in a
request, where they are likely a misspelt feature; in a table they are other teams' columns): they are
ignored and listed in the run's report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from engage.encoding import BEYOND_FLOAT32, FLOAT32_MAX, NULL_NOT_ALLOWED, Encoder, Field, Kind, describe

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Checked", "check_frame", "schema_problem"]

F64 = npt.NDArray[np.float64]
BOOL = npt.NDArray[np.bool_]


@dataclass
class Checked:
    """The rows of one partition that may be scored (``X``, float32, in model input order) and the rest."""

    X: npt.NDArray[np.float32]
    #: which rows of the partition ``X`` holds
    accepted: BOOL
    #: per rejected row (in partition order): reason code, field, message
    reasons: list[tuple[str, str, str]]

    @property
    def rejected(self) -> npt.NDArray[np.intp]:
        return np.flatnonzero(~self.accepted)


def schema_problem(frame: pd.DataFrame, encoder: Encoder) -> str | None:
    """Why no row of ``frame`` can be scored (a model input absent, repeated, or of a type no valid value
    has), or None."""
    repeated = set(frame.columns[frame.columns.duplicated()])
    for spec in encoder.fields:
        if spec.name not in frame.columns:
            return f"column {spec.name!r}: missing (a model input; the predictor needs it in every row)"
        if spec.name in repeated:
            return f"column {spec.name!r}: the partition has it more than once"
        problem = _dtype_problem(frame[spec.name], spec)
        if problem is not None:
            return f"column {spec.name!r}: {problem}"
    return None


def _dtype_problem(column: pd.Series, spec: Field) -> str | None:
    """Why no value of ``column`` can be the model input ``spec``, judged on its dtype alone, or None.

    Text is no number; categories are no number; a number or bool column can be a category only when it
    holds no value (or is a boolean field's bools); any other dtype (datetime, …) is neither."""
    import pandas as pd

    dtype, number = column.dtype, spec.kind != Kind.CATEGORY
    if pd.api.types.is_object_dtype(dtype) or isinstance(dtype, pd.StringDtype):
        text = pd.api.types.infer_dtype(column, skipna=True) in ("string", "bytes")
        return "holds text, but the contract says it is a number" if number and text else None
    if isinstance(dtype, pd.CategoricalDtype):
        return "holds categories, but the contract says it is a number" if number else None
    numeric = pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)
    if number:
        return None if numeric else f"holds {dtype} values, but the contract says it is a number"
    if (spec.boolean and pd.api.types.is_bool_dtype(dtype)) or (numeric and column.isna().all()):
        return None
    return f"holds {dtype} values, but the contract says it is a category"


def check_frame(frame: pd.DataFrame, encoder: Encoder) -> Checked:
    """Every row of ``frame`` checked as the predictor checks a request row (``encoder`` is strict)."""
    n = len(frame)
    X = np.empty((n, encoder.width), dtype=np.float32, order="F")  # filled a column at a time
    first: dict[int, tuple[str, str, str]] = {}
    for j, spec in enumerate(encoder.fields):
        values, problems = _column(frame[spec.name], spec, encoder)
        X[:, j] = values
        for i, problem in problems:
            if i not in first:
                first[i] = (problem[0], spec.name, problem[1])
    accepted = np.ones(n, dtype=bool)
    accepted[list(first)] = False
    reasons = [first[i] for i in sorted(first)]
    return Checked(np.ascontiguousarray(X[accepted] if first else X), accepted, reasons)


Problem = tuple[str, str]


def _column(column: pd.Series, spec: Field, encoder: Encoder) -> tuple[F64, list[tuple[int, Problem]]]:
    import pandas as pd

    dtype = column.dtype
    plain = not (pd.api.types.is_object_dtype(dtype) or isinstance(dtype, pd.StringDtype))
    if spec.kind == Kind.CATEGORY and (
        isinstance(dtype, pd.CategoricalDtype)
        or (isinstance(dtype, pd.StringDtype) and _all_text(column))
        or (pd.api.types.is_object_dtype(dtype) and _all_text(column))
    ):
        return _categories(column, spec)
    if spec.kind == Kind.CATEGORY and pd.api.types.is_bool_dtype(dtype) and spec.boolean:
        return _categories(column.map({True: "True", False: "False"}), spec)
    if spec.kind != Kind.CATEGORY and plain:
        return _numbers(column, spec)
    return _one_by_one(column, spec, encoder)


def _all_text(column: pd.Series) -> bool:
    import pandas as pd

    return pd.api.types.infer_dtype(column, skipna=True) in ("string", "empty")


def _categories(column: pd.Series, spec: Field) -> tuple[F64, list[tuple[int, Problem]]]:
    import pandas as pd

    missing = column.isna().to_numpy()
    if isinstance(column.dtype, pd.CategoricalDtype):  # Parquet's dictionary columns: map the levels once
        lookup = np.array([spec.codes.get(str(c), -1) for c in column.cat.categories] + [-1], dtype=np.int64)
        codes = lookup[column.cat.codes.to_numpy()]  # code -1 (missing) takes the last entry
    else:
        codes = pd.Categorical(column.astype(object).mask(missing), categories=list(spec.levels)).codes
    values = codes.astype(np.float64)
    values[codes < 0] = np.nan
    problems: list[tuple[int, Problem]] = []
    if not spec.nullable:
        problems += [(int(i), ("null_not_allowed", NULL_NOT_ALLOWED)) for i in np.flatnonzero(missing)]
    unknown = np.flatnonzero((codes < 0) & ~missing)
    if len(unknown):
        levels = ", ".join(spec.levels)
        raw = column.to_numpy(dtype=object)
        problems += [
            (int(i), ("unknown_category", f"unknown category {raw[i]!r}; known: {levels}")) for i in unknown
        ]
    problems.sort(key=lambda p: p[0])
    return values, problems


def _numbers(column: pd.Series, spec: Field) -> tuple[F64, list[tuple[int, Problem]]]:
    import pandas as pd

    if pd.api.types.is_bool_dtype(column.dtype):
        values = column.astype("float64").to_numpy(dtype="float64", na_value=np.nan)
        if spec.kind != Kind.BOOLEAN:
            present = np.flatnonzero(~np.isnan(values))
            flags = column.to_numpy(dtype=object)
            return np.full(len(values), np.nan), [
                (int(i), ("wrong_type", f"expected a number, got {describe(bool(flags[i]))}"))
                for i in present
            ]
        return values, _nulls(values, spec)
    values = column.to_numpy(dtype="float64", na_value=np.nan, copy=True)  # changed below: never a view
    missing = np.isnan(values)
    with np.errstate(invalid="ignore"):
        infinite = np.isinf(values)
        huge = ~infinite & ~missing & (np.abs(values) > FLOAT32_MAX)
        if spec.kind == Kind.INTEGER:
            shape = ~missing & ~infinite & ~huge & (values != np.floor(values))
        elif spec.kind == Kind.BOOLEAN:
            shape = ~missing & ~infinite & ~huge & ~np.isin(values, (0.0, 1.0))
        else:
            shape = np.zeros(len(values), dtype=bool)
        lo = values < spec.lo if spec.lo is not None else np.zeros(len(values), dtype=bool)
        hi = values > spec.hi if spec.hi is not None else np.zeros(len(values), dtype=bool)
    outside = ~missing & ~infinite & ~huge & ~shape & (lo | hi)
    problems: list[tuple[int, Problem]] = _nulls(values, spec)
    raw: Any = None
    for mask, code in ((infinite, "inf"), (huge, "huge"), (shape, "shape"), (outside, "range")):
        hits = np.flatnonzero(mask)
        if not len(hits):
            continue
        raw = column.to_numpy(dtype=object) if raw is None else raw
        for i in hits:
            problems.append((int(i), _problem(code, spec, raw[i])))
    values[infinite | huge] = np.nan
    problems.sort(key=lambda p: p[0])
    return values, problems


def _problem(code: str, spec: Field, v: Any) -> Problem:
    if code == "inf":
        return ("not_finite", f"{float(v)!r} is not a finite number")
    if code == "huge":
        return ("not_finite", f"{float(v):.6g} is too large: {BEYOND_FLOAT32}")
    if code == "shape":
        expected = "an integer" if spec.kind == Kind.INTEGER else "true or false"
        return ("wrong_type", f"expected {expected}, got {v!r}")
    return ("out_of_range", f"{v!r} is outside the contract's bounds {spec.bounds()}")


def _nulls(values: F64, spec: Field) -> list[tuple[int, Problem]]:
    if spec.nullable:
        return []
    return [(int(i), ("null_not_allowed", NULL_NOT_ALLOWED)) for i in np.flatnonzero(np.isnan(values))]


def _one_by_one(column: pd.Series, spec: Field, encoder: Encoder) -> tuple[F64, list[tuple[int, Problem]]]:
    """Values that are not plainly typed: each checked by the predictor's own encoder."""
    from engage.encoding import is_empty

    problems = encoder.problems()
    out = np.empty(len(column), dtype=np.float64)
    found: list[tuple[int, Problem]] = []
    for i, v in enumerate(column.tolist()):
        before = problems.count
        out[i] = encoder._strict(i, spec, None if is_empty(v) else v, problems)
        if problems.count > before:
            detail = problems.details[-1] if len(problems.details) > before else None
            found.append((i, (problems.reason or "schema", detail["error"] if detail else "")))
            problems = encoder.problems()
    return out, found
