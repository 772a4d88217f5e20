"""The one encoding of customer rows to a model's float matrix, driven by the contract.

Every part that turns rows into numbers goes through :class:`Encoder`: training's design matrix
(:func:`engage.features.design_matrix`), the explainers' matrix, the drift reference and its traffic,
the predictor's V1 / V2 requests. The matrix has one column per input in a fixed order: numbers as
float, categories as the index of their level (the level list fixed at training), missing as NaN.

Two modes, one per kind of caller:

* **contract** (``strict=True``; the predictor, batch scoring): each value must be what the contract
  column says: a number where it says integer or float (no numeric text, no ``true``), a whole number
  for an integer, ``true``/``false`` (or 0/1) for a boolean, one of the known levels for a category,
  not empty unless the column is nullable, inside the column's ``min``/``max``. NaN is empty.
* **lenient** (``strict=False``; training tables, explanations, drift): numbers may be numeric text,
  blank text and None are missing, an unknown level is missing (what the trees do with an unseen
  level), ``true`` or an infinity where a number belongs is refused.

Every problem of a request is reported, up to :data:`MAX_DETAILS`, as ``{"row", "field", "error"}``
(``row`` left out when the problem is a whole column's); the refusal's ``reason`` is the first problem's.
Refusals of request rows are :class:`~engage.errors.RequestRejected` (422, with the details); a table
that cannot be encoded (:meth:`Encoder.frame`, :meth:`Encoder.design_matrix`) is a
:class:`~engage.errors.SchemaError`.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from engage.errors import RequestRejected, SchemaError

if TYPE_CHECKING:
    import pandas as pd

    from engage.contract import Contract


class ModelInputs(Protocol):
    """What :meth:`Encoder.for_model` reads of a :class:`~engage.features.FeatureSet` (which imports this
    module: a protocol here keeps the two acyclic)."""

    @property
    def columns(self) -> list[str]: ...

    @property
    def categorical(self) -> dict[str, list[str]]: ...


__all__ = [
    "BEYOND_FLOAT32",
    "COLUMNAR_FROM",
    "EXPECTED_FINITE",
    "FLOAT32_MAX",
    "MAX_DETAILS",
    "MISSING_FEATURE",
    "NOT_A_ROW",
    "NULL_NOT_ALLOWED",
    "Encoder",
    "Field",
    "Kind",
    "Problems",
    "describe",
    "is_empty",
    "lenient_number",
    "unknown_field",
]

F64 = npt.NDArray[np.float64]
#: problems listed in one refusal (its message counts them all)
MAX_DETAILS = 20
#: below this many rows a column of a table is encoded in pure Python (pandas categoricals cost ms)
_SMALL = 64
#: from this many rows, row objects are first checked a column at a time
COLUMNAR_FROM = 32

# the messages tests match (each problem's ``error``); the rest say the value they got
MISSING_FEATURE = "missing: the model needs this feature"
EXPECTED_FINITE = "expected a finite number"
#: the largest magnitude a model input can have: the models compute in float32, where more is infinite
FLOAT32_MAX = float(np.finfo(np.float32).max)
BEYOND_FLOAT32 = "expected a finite number within ±3.4e38 (the models compute in float32)"
NULL_NOT_ALLOWED = "empty, and the contract does not allow it"
NOT_A_ROW = "a row must be an object{lists}, not {kind}"


class Kind(IntEnum):
    FLOAT = 0
    INTEGER = 1
    BOOLEAN = 2
    CATEGORY = 3


@dataclass(frozen=True)
class Field:
    """One model input: its kind, and what the contract allows (nothing checked when no contract)."""

    name: str
    kind: Kind
    nullable: bool = True
    lo: float | None = None
    hi: float | None = None
    levels: tuple[str, ...] = ()
    #: level -> code of a category
    codes: Mapping[str, int] = dataclasses.field(default_factory=dict, compare=False)
    #: a boolean column, encoded as the category of levels "False" and "True" (as training spells them)
    boolean: bool = False

    def bounds(self) -> str:
        lo = "-inf" if self.lo is None else f"{self.lo:g}"
        hi = "inf" if self.hi is None else f"{self.hi:g}"
        return f"[{lo}, {hi}]"


class Problems:
    """The problems of one request or table, in the order found; :meth:`raise_if_any` refuses it."""

    def __init__(self, context: str = "") -> None:
        self.details: list[dict[str, Any]] = []
        self.count = 0
        self.reason: str | None = None
        self.context = context

    def add(self, row: int | None, name: str | None, reason: str, error: str) -> None:
        self.count += 1
        self.reason = self.reason or reason
        if len(self.details) < MAX_DETAILS:
            detail: dict[str, Any] = {"field": name, "error": error}
            if row is not None:
                detail = {"row": row, **detail}
            self.details.append(detail)

    def refusal(self) -> RequestRejected:
        first = self.details[0]
        where = f"row {first['row']}, " if "row" in first else ""
        field_name = f"field {first['field']!r}: " if first.get("field") else ""
        more = f" (and {self.count - 1} more problem(s), see details)" if self.count > 1 else ""
        context = f"{self.context}: " if self.context else ""
        return RequestRejected(
            f"{context}{where}{field_name}{first['error']}{more}",
            status=422,
            reason=self.reason or "schema",
            details=self.details,
        )

    def raise_if_any(self) -> None:
        if self.count:
            raise self.refusal()


class Encoder:
    """Rows -> the model's float matrix (and back), checked in ``strict`` (contract) or lenient mode.

    ``positional``: rows may also be lists of values in this order (the model's input order); an
    encoder over another order (the drift reference's watched features) takes only objects.
    """

    def __init__(
        self,
        names: Sequence[str],
        categorical: Mapping[str, Sequence[Any]],
        contract: Contract | None = None,
        *,
        strict: bool = False,
        positional: bool = True,
        context: str = "",
    ) -> None:
        self.names: list[str] = list(names)
        self.strict = strict
        self.positional = positional
        self.context = context
        unknown = [name for name in categorical if name not in self.names]
        if unknown:
            raise SchemaError(f"categorical input(s) not among the inputs: {', '.join(unknown)}")
        self.fields = [_field(name, categorical, contract) for name in self.names]
        #: positions of the categorical inputs, and their levels
        self.categorical: dict[int, list[str]] = {
            j: list(f.levels) for j, f in enumerate(self.fields) if f.kind == Kind.CATEGORY
        }
        self.allowed = set(self.names) | (set(contract.columns) if contract is not None else set())
        self._value = self._strict if strict else self._lenient

    @classmethod
    def for_model(
        cls,
        features: ModelInputs,
        contract: Contract | None = None,
        *,
        strict: bool = False,
        positional: bool = True,
    ) -> Encoder:
        """The encoder of a model's inputs (its :class:`~engage.features.FeatureSet`, in its order)."""
        return cls(features.columns, features.categorical, contract, strict=strict, positional=positional)

    @property
    def width(self) -> int:
        return len(self.names)

    @property
    def xgboost_types(self) -> list[str]:
        return ["c" if j in self.categorical else "float" for j in range(self.width)]

    def problems(self) -> Problems:
        return Problems(self.context)

    # ---------------------------------------------------------------------------- rows and columns
    def rows(self, rows: Sequence[Any], problems: Problems | None = None) -> F64:
        """Row objects (``{feature: value}``; extra keys of the contract ride along unchecked) or, when
        ``positional``, lists of values in input order."""
        own = problems is None
        problems = problems or self.problems()
        if len(rows) >= COLUMNAR_FROM and not problems.count:
            fast = self._columns_of_objects(rows)
            if fast is not None:
                return fast
        X = np.full((len(rows), self.width), np.nan, dtype=np.float64)
        for i, row in enumerate(rows):
            if isinstance(row, Mapping):
                for j, spec in enumerate(self.fields):
                    if spec.name in row:
                        X[i, j] = self._value(i, spec, row[spec.name], problems)
                    else:
                        problems.add(i, spec.name, "missing_feature", MISSING_FEATURE)
                if self.strict and len(row) > self.width:
                    for key in row:
                        if key not in self.allowed:
                            problems.add(i, str(key), "unknown_field", unknown_field(str(key), self.names))
            elif isinstance(row, list) and self.positional:
                if len(row) != self.width:
                    problems.add(
                        i, None, "feature_count",
                        f"has {len(row)} values; the model takes {self.width} in this order: {', '.join(self.names)}",
                    )  # fmt: skip
                    continue
                for j, spec in enumerate(self.fields):
                    X[i, j] = self._value(i, spec, row[j], problems)
            else:
                lists = " or a list" if self.positional else ""
                problems.add(i, None, "wrong_type", NOT_A_ROW.format(lists=lists, kind=describe(row)))
        if own:
            problems.raise_if_any()
        return X

    def columns(
        self,
        columns: Mapping[str, Sequence[Any]],
        problems: Problems | None = None,
        *,
        coded: frozenset[str] | set[str] = frozenset(),
    ) -> F64:
        """Column-wise values (input name -> one value a row, as V2 tensors carry them); every column the
        same length. The categories named in ``coded`` come as level codes (a numeric tensor)."""
        own = problems is None
        problems = problems or self.problems()
        for name in self.names:
            if name not in columns:
                problems.add(None, name, "missing_feature", MISSING_FEATURE)
        problems.raise_if_any()
        lengths = {name: len(columns[name]) for name in self.names}
        rows = lengths[self.names[0]] if self.names else 0
        for name, n in lengths.items():
            if n != rows:
                problems.add(
                    None,
                    name,
                    "shape_mismatch",
                    f"{n} values, but {self.names[0]!r} has {rows}: one value a row",
                )
        problems.raise_if_any()
        X = np.full((rows, self.width), np.nan, dtype=np.float64)
        for j, spec in enumerate(self.fields):
            data = columns[spec.name]
            if spec.name in coded:
                for i, v in enumerate(data):
                    X[i, j] = self.code(i, spec, v, problems)
                continue
            fast = _column(spec, list(data), self.strict) if rows >= COLUMNAR_FROM else None
            if fast is not None:
                X[:, j] = fast
                continue
            for i, v in enumerate(data):
                X[i, j] = self._value(i, spec, v, problems)
        if own:
            problems.raise_if_any()
        return X

    def codes(self, rows: int, data: Sequence[Any], problems: Problems | None = None) -> F64:
        """A ``[rows, inputs]`` numeric matrix (row-major ``data``) whose categories are level codes."""
        own = problems is None
        problems = problems or self.problems()
        X = np.full((rows, self.width), np.nan, dtype=np.float64)
        for i in range(rows):
            for j, spec in enumerate(self.fields):
                v = data[i * self.width + j]
                X[i, j] = (
                    self.code(i, spec, v, problems)
                    if spec.kind == Kind.CATEGORY
                    else self._value(i, spec, v, problems)
                )
        if own:
            problems.raise_if_any()
        return X

    def code(self, i: int, spec: Field, v: Any, problems: Problems) -> float:
        """A category sent as its level code (a numeric tensor): a whole number in ``0..levels-1``."""
        if v is None:
            return self._value(i, spec, None, problems)
        levels = len(spec.levels)
        if (
            isinstance(v, bool)
            or not isinstance(v, int | float)
            or not 0 <= v < levels
            or not float(v).is_integer()
        ):
            problems.add(
                i, spec.name, "unknown_category", f"expected a level code 0..{levels - 1}, got {v!r}"
            )
            return math.nan
        return float(v)

    def _columns_of_objects(self, rows: Sequence[Any]) -> F64 | None:
        """Row objects that are all valid, checked a column at a time (about 4x faster on large
        batches); None when any value needs a closer look and the row-by-row path names every problem."""
        if not all(type(row) is dict for row in rows):
            return None
        width = self.width
        if (
            self.strict
            and any(len(row) != width for row in rows)
            and any(key not in self.allowed for row in rows if len(row) != width for key in row)
        ):
            return None
        X = np.empty((len(rows), width), dtype=np.float64)
        for j, spec in enumerate(self.fields):
            values = _column(spec, [row.get(spec.name, _ABSENT) for row in rows], self.strict)
            if values is None:
                return None
            X[:, j] = values
        return X

    # ---------------------------------------------------------------------------- one value
    def _strict(self, i: int, spec: Field, v: Any, problems: Problems) -> float:
        if v is None:
            if not spec.nullable:
                problems.add(i, spec.name, "null_not_allowed", NULL_NOT_ALLOWED)
            return math.nan
        kind = spec.kind
        if kind == Kind.CATEGORY:
            if isinstance(v, bytes):  # a BYTES tensor element of a gRPC request
                v = v.decode("utf-8", errors="replace")
            if spec.boolean and not isinstance(v, bool) and not (isinstance(v, str) and v in spec.codes):
                problems.add(i, spec.name, "wrong_type", f"expected true or false, got {describe(v)}")
                return math.nan
            if isinstance(
                v, bool
            ):  # a boolean column's levels are "False" and "True", as training spelt them
                v = str(v)
            if not isinstance(v, str):
                problems.add(
                    i,
                    spec.name,
                    "wrong_type",
                    f"expected one of its categories (a string), got {describe(v)}",
                )
                return math.nan
            code = spec.codes.get(v)
            if code is None:
                levels = ", ".join(spec.levels)
                problems.add(i, spec.name, "unknown_category", f"unknown category {v!r}; known: {levels}")
                return math.nan
            return float(code)
        if isinstance(v, bool):
            if kind != Kind.BOOLEAN:
                problems.add(i, spec.name, "wrong_type", f"expected a number, got {describe(v)}")
                return math.nan
            return 1.0 if v else 0.0
        if not isinstance(v, int | float):
            expected = "true or false" if kind == Kind.BOOLEAN else "a number"
            problems.add(i, spec.name, "wrong_type", f"expected {expected}, got {describe(v)}")
            return math.nan
        try:
            x = float(v)
        except OverflowError:  # an integer no float can hold
            x = math.inf if v > 0 else -math.inf
        if x != x:  # NaN: how a binary (gRPC, V2 binary) FP tensor carries a missing value
            return self._strict(i, spec, None, problems)
        if isinstance(v, float) and math.isinf(v):
            problems.add(i, spec.name, "not_finite", f"{v!r} is not a finite number")
            return math.nan
        if abs(x) > FLOAT32_MAX:
            problems.add(i, spec.name, "not_finite", f"{_short(v)} is too large: {BEYOND_FLOAT32}")
            return math.nan
        if kind == Kind.INTEGER and not x.is_integer():
            problems.add(i, spec.name, "wrong_type", f"expected an integer, got {v!r}")
        elif kind == Kind.BOOLEAN and x not in (0.0, 1.0):
            problems.add(i, spec.name, "wrong_type", f"expected true or false, got {v!r}")
        elif (spec.lo is not None and x < spec.lo) or (spec.hi is not None and x > spec.hi):
            problems.add(
                i, spec.name, "out_of_range", f"{v!r} is outside the contract's bounds {spec.bounds()}"
            )
        return x

    def _lenient(self, i: int, spec: Field, v: Any, problems: Problems) -> float:
        if is_empty(v):
            return math.nan
        if spec.kind == Kind.CATEGORY:
            code = spec.codes.get(v if isinstance(v, str) else str(v))
            return math.nan if code is None else float(code)
        number = lenient_number(v)
        if isinstance(number, str):
            finite = number in (EXPECTED_FINITE, BEYOND_FLOAT32)
            problems.add(i, spec.name, "not_finite" if finite else "wrong_type", number)
            return math.nan
        return number

    # ---------------------------------------------------------------------------- tables
    def frame(self, frame: pd.DataFrame) -> F64:
        """The rows of a table (extra columns ignored) as the matrix, a column at a time;
        :class:`SchemaError` naming the first problem (and counting the rest) when it cannot be."""
        try:
            return self._frame(frame)
        except RequestRejected as e:
            raise SchemaError(e.message) from None

    def _frame(self, frame: pd.DataFrame) -> F64:
        import pandas as pd

        problems = self.problems()
        repeated = set(frame.columns[frame.columns.duplicated()])
        for name in self.names:
            if name not in frame.columns:
                problems.add(None, name, "missing_feature", MISSING_FEATURE)
            elif name in repeated:
                problems.add(None, name, "repeated_column", "the table has this column more than once")
        problems.raise_if_any()
        if self.strict:
            return self.columns(
                {name: [None if is_empty(v) else v for v in frame[name].tolist()] for name in self.names}
            )
        X = np.empty((len(frame), self.width), dtype=np.float64)
        for j, spec in enumerate(self.fields):
            column = frame[spec.name]
            if spec.kind == Kind.CATEGORY:
                if len(column) < _SMALL:
                    X[:, j] = [self._lenient(i, spec, v, problems) for i, v in enumerate(column.tolist())]
                else:
                    index = pd.Categorical(column.astype("string"), categories=list(spec.levels)).codes
                    X[:, j] = np.where(index < 0, np.nan, index)
                continue
            values = None
            if column.dtype != object and column.dtype.kind != "b":
                try:
                    values = column.to_numpy(dtype="float64", na_value=np.nan)
                except (TypeError, ValueError):
                    values = None
            if values is None:  # mixed values (JSON, text): checked one by one, as in a row object
                values = np.array(
                    [self._lenient(i, spec, v, problems) for i, v in enumerate(column.tolist())]
                )
            else:
                for i in np.flatnonzero(np.isinf(values)):
                    problems.add(int(i), spec.name, "not_finite", EXPECTED_FINITE)
                for i in np.flatnonzero(np.isfinite(values) & (np.abs(values) > FLOAT32_MAX)):
                    problems.add(int(i), spec.name, "not_finite", BEYOND_FLOAT32)
            X[:, j] = values
        problems.raise_if_any()
        return X

    def design_matrix(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The model input table of ``frame``: float numerics and fixed-level categoricals, in input
        order, on ``frame``'s index. :class:`SchemaError` when a row cannot be encoded."""
        out = self.decode(self.frame(frame))
        out.index = frame.index
        return out

    def decode(self, matrix: F64) -> pd.DataFrame:
        """The design matrix (model input table) of an encoded matrix; codes are rounded to levels."""
        import pandas as pd

        matrix = np.asarray(matrix, dtype="float64").reshape(-1, self.width)
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
        return [
            {name: self.value(j, row[j]) for j, name in enumerate(self.names)}
            for row in np.asarray(matrix, dtype="float64").reshape(-1, self.width)
        ]

    def value(self, j: int, x: float) -> Any:
        if math.isnan(x):
            return None
        if j in self.categorical:
            return self.categorical[j][round(x)]
        return int(x) if float(x).is_integer() else float(x)


def _field(name: str, categorical: Mapping[str, Sequence[Any]], contract: Contract | None) -> Field:
    column = contract.columns.get(name) if contract is not None else None
    levels = categorical.get(name)
    if levels is not None:
        kind = Kind.CATEGORY
    else:
        kind = {"integer": Kind.INTEGER, "boolean": Kind.BOOLEAN}.get(
            column.type.value if column else "", Kind.FLOAT
        )
    names = tuple(str(v) for v in levels or ())
    codes = {level: i for i, level in enumerate(names)}
    if column is None:
        return Field(name, kind, levels=names, codes=codes)
    return Field(
        name,
        kind,
        nullable=bool(column.nullable),
        lo=column.min,
        hi=column.max,
        levels=names,
        codes=codes,
        boolean=column.type.value == "boolean" and kind == Kind.CATEGORY,
    )


_ABSENT = object()
_NUMBERS = frozenset({int, float})


def _column(spec: Field, column: list[Any], strict: bool) -> F64 | None:
    """One input's values of every row, if every one is plainly valid; else None (checked one by one)."""
    kinds = set(map(type, column))
    nullable = spec.nullable or not strict
    if spec.kind == Kind.CATEGORY:
        codes = spec.codes
        if kinds == {str}:
            coded = [codes.get(v, -1) for v in column]
        elif kinds <= {str, bool, type(None)} and (nullable or type(None) not in kinds):
            coded = [-2 if v is None else codes.get(str(v) if type(v) is bool else v, -1) for v in column]
        else:
            return None
        if strict and -1 in coded:
            return None
        out = np.asarray(coded, dtype=np.float64)
        out[out < 0] = np.nan
        return out
    has_null = type(None) in kinds
    allowed = (
        _NUMBERS
        | ({bool} if strict and spec.kind == Kind.BOOLEAN else set())
        | ({type(None)} if nullable else set())
    )
    if not kinds <= allowed:
        return None
    try:
        values = np.asarray(
            [np.nan if v is None else v for v in column] if has_null else column, dtype=np.float64
        )
    except OverflowError:  # an integer no float can hold: named one by one
        return None
    missing = np.isnan(values)
    if strict and not spec.nullable and missing.any():
        return None  # a NaN sent as a number is empty: named one by one
    present = values[~missing]
    if not (np.abs(present) <= FLOAT32_MAX).all():  # infinite, or infinite in float32
        return None
    if strict:
        if spec.kind == Kind.INTEGER and (present != np.floor(present)).any():
            return None
        if spec.kind == Kind.BOOLEAN and not np.isin(present, (0.0, 1.0)).all():
            return None
        if spec.lo is not None and (present < spec.lo).any():
            return None
        if spec.hi is not None and (present > spec.hi).any():
            return None
    return values


def lenient_number(value: Any) -> float | str:
    """``value`` as a float (None, NaN and blank text are NaN; numeric text is its number), or why not."""
    if is_empty(value):
        return math.nan
    if isinstance(value, bool | np.bool_):
        return f"expected a number, got {describe(bool(value))}"
    if isinstance(value, int | float | np.integer | np.floating):
        try:
            number = float(value)
        except OverflowError:  # an integer no float can hold
            return BEYOND_FLOAT32
    elif isinstance(value, str):
        if not value.strip():
            return math.nan
        try:
            number = float(value)
        except ValueError:
            return f"expected a number, got {describe(value)}"
    else:
        return f"expected a number, got {describe(value)}"
    if math.isinf(number):
        return EXPECTED_FINITE
    return number if abs(number) <= FLOAT32_MAX else BEYOND_FLOAT32


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 24 else f"{text[:20]}… ({len(text)} digits)"


def is_empty(v: Any) -> bool:
    """None, pandas' NA or a float NaN: a value that is not there."""
    if v is None or (isinstance(v, float) and v != v):
        return True
    return type(v).__name__ == "NAType"


def describe(v: Any) -> str:
    """A value as an error message names it: ``null``, ``true``, ``the string 'x'``, ``an object`` …"""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f"the string {v[:40]!r}"
    if isinstance(v, Mapping):
        return "an object"
    if isinstance(v, list):
        return "a list"
    return f"{type(v).__name__} {v!r}"[:60]


def unknown_field(name: str, names: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(names), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"not a model feature nor a column of the contract{hint}"
