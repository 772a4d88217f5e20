"""Read, conform and write customer tables.

* :func:`read_table` reads Parquet or CSV (told apart by content, not only by name) and turns every
  failure into one :class:`~engage.errors.DataError` line.
* :func:`conform` gives each contract column its canonical dtype, and records the rows whose value could
  not be read as that type instead of failing on the first one: type problems are data-quality findings.
* :func:`write_table` writes Parquet atomically and reproducibly (same frame, same bytes).

Canonical dtypes by contract type: integer ``Int64``, float ``float64``, boolean ``boolean``, string
``string``, category ``category``, date ``datetime64[ns]`` (midnight, naive), datetime
``datetime64[ns, UTC]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from engage._io import atomic_path
from engage.contract import Column, ColumnType, Contract
from engage.errors import DataError, SchemaError

__all__ = ["BoolArray", "Conformed", "conform", "read_table", "write_table"]

#: one flag per row
BoolArray = npt.NDArray[np.bool_]

_PARQUET_MAGIC = b"PAR1"
_CSV_SUFFIXES = {".csv", ".tsv", ".txt"}


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a Parquet or CSV table: a local path, or any fsspec URI (``s3://…``, ``gs://…``, ``https://…``).
    The format is read from the content (Parquet's magic bytes; else UTF-8 text with a delimiter in its
    header line is CSV), so a file saved without its extension still reads. CSV columns arrive as text;
    :func:`conform` types them."""
    text = str(path)
    if "://" in text and not text.startswith("file://"):
        return _read_remote(text)
    p = Path(text.removeprefix("file://"))
    if not p.exists():
        raise DataError(f"{p}: no such file")
    if p.is_dir():
        raise DataError(f"{p}: is a directory, expected a Parquet or CSV file")
    try:
        with open(p, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise DataError(f"{p}: cannot be read: {e.strerror or e}") from e
    suffixes = [s.lower() for s in p.suffixes]
    if head == _PARQUET_MAGIC:
        return _read_parquet(p)
    if suffixes and suffixes[-1] in {".parquet", ".pq"}:
        raise DataError(f"{p}: not a Parquet file (it does not start with the Parquet magic bytes)")
    if any(s in _CSV_SUFFIXES for s in suffixes):
        return _read_csv(p, sep="\t" if ".tsv" in suffixes else ",")
    sep = _sniff_csv(p)
    if sep is not None:
        return _read_csv(p, sep=sep)
    raise DataError(f"{p}: not a Parquet or CSV file (expected a .parquet or .csv table)")


def _sniff_csv(p: Path) -> str | None:
    """The delimiter of a text table without a CSV name: UTF-8 text whose header line holds a tab or a comma."""
    try:
        with open(p, "rb") as f:
            head = f.read(65_536)
        first = head.split(b"\n", 1)[0].decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if "\x00" in first:
        return None
    return "\t" if "\t" in first else "," if "," in first else None


def _read_remote(uri: str) -> pd.DataFrame:
    """A table at an fsspec URI, copied to a temporary file of the same name first (then read as a local one)."""
    import shutil
    import tempfile

    import fsspec  # type: ignore[import-untyped]

    name = uri.rstrip("/").rsplit("/", 1)[-1] or "table"
    with tempfile.TemporaryDirectory(prefix="engage-table-") as tmp:
        local = Path(tmp) / name
        try:
            with fsspec.open(uri, "rb") as src, open(local, "wb") as dst:
                shutil.copyfileobj(src, dst)
        except FileNotFoundError:
            raise DataError(f"{uri}: no such file") from None
        except (OSError, ValueError, ImportError) as e:
            raise DataError(f"{uri}: cannot be read: {e}") from None
        return read_table(local)


def _read_parquet(p: Path) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        frame: pd.DataFrame = pq.read_table(p).to_pandas()
        return frame
    except (pa.ArrowException, OSError, ValueError) as e:
        raise DataError(f"{p}: not a readable Parquet file: {e}") from e


def _read_csv(p: Path, sep: str) -> pd.DataFrame:
    try:
        return pd.read_csv(p, sep=sep, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{p}: not a CSV text file (it is not UTF-8 text)") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{p}: empty CSV file (no header row)") from None
    except pd.errors.ParserError as e:
        first = str(e).strip().splitlines()[0]
        raise DataError(f"{p}: malformed CSV: {first}") from None


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write ``frame`` as zstd-compressed Parquet, atomically; the same frame gives the same bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    dest = Path(path)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    with atomic_path(dest) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return dest


# ---- conforming to the contract -----------------------------------------------------------------


@dataclass
class Conformed:
    """A table with contract dtypes, and the rows whose values were not of the declared type."""

    frame: pd.DataFrame
    #: column -> boolean mask of rows whose (non-empty) value could not be read as the column's type
    type_errors: dict[str, BoolArray] = field(default_factory=dict)
    #: columns present in the table that the contract does not declare (kept, never used)
    extra_columns: list[str] = field(default_factory=list)


def conform(frame: pd.DataFrame, contract: Contract) -> Conformed:
    """Give every contract column its canonical dtype.

    Raises :class:`~engage.errors.SchemaError` when the table has no rows, lacks contract columns or
    repeats a column name (nothing else can be judged then). Values that cannot be read as their type
    become empty and are listed in :attr:`Conformed.type_errors`; the input frame is not modified.
    """
    repeated = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
    if repeated:
        raise SchemaError(f"table repeats column(s) {', '.join(repeated)}: each column must appear once")
    missing = [name for name in contract.columns if name not in frame.columns]
    if missing:
        raise SchemaError(
            f"table lacks {len(missing)} column(s) that contract {contract.contract!r} requires: "
            + ", ".join(missing)
        )
    if len(frame) == 0:
        raise SchemaError("table has no rows")
    out: dict[str, pd.Series] = {}
    errors: dict[str, BoolArray] = {}
    for name, spec in contract.columns.items():
        series, bad = _coerce(_plain(frame[name].reset_index(drop=True)), spec)
        out[name] = series
        if bad is not None and bad.any():
            errors[name] = bad
    extra = [c for c in frame.columns if c not in contract.columns]
    for name in extra:
        out[str(name)] = frame[name].reset_index(drop=True)
    return Conformed(pd.DataFrame(out), errors, [str(c) for c in extra])


#: what pandas infers of an object column that may hold bytes, lists or mappings
_MAYBE_ODD = frozenset({"bytes", "mixed", "mixed-integer"})


def _plain(s: pd.Series) -> pd.Series:
    """Cells pandas can neither hash nor read as text (bytes that are not UTF-8, lists, mappings: what
    Parquet binary and list columns hold) as their text, so that they are judged like any other value."""
    if s.dtype != object or pd.api.types.infer_dtype(s, skipna=True) not in _MAYBE_ODD:
        return s
    odd = s.map(lambda v: isinstance(v, bytes | list | dict | set | tuple | np.ndarray)).to_numpy(dtype=bool)
    if not odd.any():
        return s
    text = [v.decode("utf-8", errors="replace") if isinstance(v, bytes) else str(v) for v in s[odd]]
    out = s.copy()
    out[odd] = text
    return out


def _blank_to_na(s: pd.Series) -> pd.Series:
    """Text columns: strip, and treat empty strings as missing."""
    stripped = s.astype("string").str.strip()
    return stripped.mask(stripped == "")


def _coerce(s: pd.Series, spec: Column) -> tuple[pd.Series, BoolArray | None]:
    t = spec.type
    if t is ColumnType.integer:
        return _to_integer(s)
    if t is ColumnType.float:
        return _to_float(s)
    if t is ColumnType.boolean:
        return _to_boolean(s, spec)
    if t in (ColumnType.date, ColumnType.datetime):
        return _to_temporal(s, t)
    if t is ColumnType.category:
        text = s if isinstance(s.dtype, pd.CategoricalDtype) else _text(s)
        return text.astype("category"), None
    return _text(s).astype("string"), None


def _text(s: pd.Series) -> pd.Series:
    """Text columns keep their spaces (they are data); only the empty string means empty."""
    text = s.astype("string")
    return text.mask(text == "")


def _numeric(s: pd.Series) -> tuple[pd.Series, BoolArray]:
    if pd.api.types.is_bool_dtype(s.dtype):
        return pd.Series(np.nan, index=s.index, dtype="float64"), s.notna().to_numpy()
    if pd.api.types.is_numeric_dtype(s.dtype):
        return s.astype("float64"), np.zeros(len(s), dtype=bool)
    text = _blank_to_na(s)
    values = pd.to_numeric(text, errors="coerce").astype("float64")
    return values, (text.notna() & values.isna()).to_numpy()


def _to_float(s: pd.Series) -> tuple[pd.Series, BoolArray]:
    values, bad = _numeric(s)
    infinite = np.isinf(values.to_numpy())
    values = values.mask(infinite)
    return values, bad | infinite


def _to_integer(s: pd.Series) -> tuple[pd.Series, BoolArray]:
    if pd.api.types.is_integer_dtype(s.dtype):
        return s.astype("Int64"), np.zeros(len(s), dtype=bool)
    values, bad = _numeric(s)
    arr = values.to_numpy()
    with np.errstate(invalid="ignore"):
        fractional = np.isfinite(arr) & (np.floor(arr) != arr)
        beyond = np.abs(arr) >= 2.0**63  # a whole number no integer column holds (1e300)
    bad = bad | fractional | np.isinf(arr) | beyond
    clean = values.mask(bad)
    return clean.round().astype("Int64"), bad


def _to_boolean(s: pd.Series, spec: Column) -> tuple[pd.Series, BoolArray]:
    if pd.api.types.is_bool_dtype(s.dtype):
        return s.astype("boolean"), np.zeros(len(s), dtype=bool)
    truthy = {v.lower() for v in spec.true_values}
    falsy = {v.lower() for v in spec.false_values}
    text = _blank_to_na(s if not pd.api.types.is_numeric_dtype(s.dtype) else s.astype("Int64"))
    lowered = text.str.lower()
    result = pd.Series(pd.NA, index=s.index, dtype="boolean")
    result[lowered.isin(truthy).fillna(False).to_numpy(dtype=bool)] = True
    result[lowered.isin(falsy).fillna(False).to_numpy(dtype=bool)] = False
    bad = (text.notna() & result.isna()).to_numpy(dtype=bool)
    return result, bad


def _to_temporal(s: pd.Series, t: ColumnType) -> tuple[pd.Series, BoolArray]:
    if isinstance(s.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(s.dtype):
        values = pd.to_datetime(s, utc=True)
        bad = np.zeros(len(s), dtype=bool)
    else:
        # text (CSV) is stripped and blank means empty; date objects (Parquet date32) pass as they are
        text = _blank_to_na(s) if pd.api.types.is_string_dtype(s.dtype) else s
        values = pd.to_datetime(text, utc=True, errors="coerce", format="mixed")
        bad = (text.notna() & values.isna()).to_numpy(dtype=bool)
    if t is ColumnType.date:
        return values.dt.tz_localize(None).dt.normalize().astype("datetime64[ns]"), bad
    return values.astype("datetime64[ns, UTC]"), bad
