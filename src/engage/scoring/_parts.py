"""The input table as parts: each a Parquet file's run of row groups (about ``partition_rows`` rows), or a
whole CSV file. A part is what one task reads, checks, scores and writes; on Dask it is one partition.

The table is any fsspec URI: one Parquet or CSV file, or a folder (a partitioned dataset) whose Parquet
files are read in path order. Files and folders whose names start with ``_`` or ``.`` are skipped, as
Spark, Hive and pyarrow skip them (``_SUCCESS``, ``_common_metadata``, ``.tmp``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engage.errors import DataError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = ["Part", "data_sha256", "plan_parts", "read_part"]

_PARQUET = (".parquet", ".pq", ".parq")
_CSV = (".csv", ".tsv")


@dataclass(frozen=True)
class Part:
    """One unit of work: ``path`` (a URL fsspec opens) and, for Parquet, the row groups it reads."""

    index: int
    path: str
    row_groups: tuple[int, ...] | None
    rows: int | None  # known from the Parquet footer; None for CSV
    #: rows of the same file before this part's first row (row numbers in quarantine count from the file)
    offset: int = 0


def _filesystem(uri: str) -> tuple[Any, str]:
    from fsspec.core import url_to_fs  # type: ignore[import-untyped]

    try:
        return url_to_fs(uri)  # type: ignore[no-any-return]
    except (ImportError, ValueError) as e:
        raise DataError(f"{uri}: cannot open this location: {e}") from None


def table_files(uri: str) -> tuple[Any, list[str]]:
    """The filesystem and the data files of ``uri`` (one file, or every Parquet file under a folder)."""
    fs, root = _filesystem(uri)
    try:
        if not fs.exists(root):
            raise DataError(f"{uri}: no such file or folder")
        if not fs.isdir(root):
            return fs, [root]
        found = sorted(
            p
            for p in fs.find(root)
            if p.lower().endswith(_PARQUET)
            and not any(seg.startswith(("_", ".")) for seg in p[len(root) :].strip("/").split("/"))
        )
    except OSError as e:
        raise DataError(f"{uri}: cannot be listed: {e}") from None
    if not found:
        raise DataError(f"{uri}: a folder holding no Parquet file (*.parquet)")
    return fs, found


def plan_parts(uri: str, partition_rows: int) -> list[Part]:
    """The parts of the table at ``uri``, in order; a file that cannot be read as Parquet is one part
    (its reading fails in the task, and quarantines it)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    fs, files = table_files(uri)
    parts: list[Part] = []
    for path in files:
        url = fs.unstrip_protocol(path)
        if path.lower().endswith(_CSV):
            parts.append(Part(len(parts), url, None, None))
            continue
        try:
            with fs.open(path, "rb") as f:
                meta = pq.ParquetFile(f).metadata
        except (OSError, pa.ArrowException):  # an unreadable footer: the task names the problem
            parts.append(Part(len(parts), url, (), None))
            continue
        run: list[int] = []
        rows = offset = 0
        for g in range(meta.num_row_groups):
            n = meta.row_group(g).num_rows
            if run and rows + n > partition_rows:
                parts.append(Part(len(parts), url, tuple(run), rows, offset))
                run, offset, rows = [], offset + rows, 0
            run.append(g)
            rows += n
        if run or meta.num_row_groups == 0:
            parts.append(Part(len(parts), url, tuple(run), rows, offset))
    return parts


def read_part(
    part: Part, columns: Sequence[str] | None = None, *, key: str | None = None
) -> tuple[pd.DataFrame, list[str], pa.Array | None]:
    """The rows of ``part`` (only ``columns``, those of them the file has, when given), every column
    name the file has, and the ``key`` column (the customer id) apart as text, never made Python
    objects (None without a ``key``; nulls when the file lacks it). :class:`DataError` saying why the
    part cannot be read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from engage.tables import read_table

    wanted_set = None if columns is None else set(columns) | ({key} if key else set())
    if part.row_groups is None:
        whole = read_table(part.path)
        names = [str(c) for c in whole.columns]
        frame = whole[[c for c in names if c in wanted_set]] if wanted_set is not None else whole
        table = None
    else:
        fs, path = _filesystem(part.path)
        try:
            with fs.open(path, "rb") as f:
                file = pq.ParquetFile(f)
                names = list(file.schema_arrow.names)
                wanted = None if wanted_set is None else [c for c in names if c in wanted_set]
                table = file.read_row_groups(list(part.row_groups), columns=wanted)
        except (OSError, pa.ArrowException) as e:  # a damaged file
            raise DataError(f"{part.path}: not readable as Parquet: {type(e).__name__}: {e}") from None
    ids = None
    if key is not None:
        if table is not None:
            ids = (
                _text(table.column(key))
                if key in table.column_names
                else pa.nulls(table.num_rows, pa.string())
            )
            table = table.drop_columns([key]) if key in table.column_names else table
        else:
            ids = _text(frame[key]) if key in frame.columns else pa.nulls(len(frame), pa.string())
            frame = frame.drop(columns=[key]) if key in frame.columns else frame
    if table is not None:
        frame = table.to_pandas(split_blocks=True, self_destruct=True)  # no 2-D block copies
    return frame, names, ids


def _text(column: Any) -> pa.Array:
    """A column as Arrow text: ids stay ids whatever their type (nulls where empty)."""
    import pyarrow as pa

    try:
        if isinstance(column, pa.ChunkedArray):
            return column.combine_chunks().cast(pa.string())
        return pa.array(column, from_pandas=True).cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):  # mixed objects
        values = column.to_pylist() if isinstance(column, pa.ChunkedArray) else column.tolist()
        return pa.array([None if v is None or v != v else str(v) for v in values], pa.string())


def data_sha256(uri: str) -> str:
    """The table's content hash: the file's SHA-256, or for a folder the SHA-256 of every data file's
    relative path and SHA-256 (in path order)."""
    fs, files = table_files(uri)
    _, root = _filesystem(uri)

    def file_hash(path: str) -> str:
        digest = hashlib.sha256()
        with fs.open(path, "rb") as f:
            while block := f.read(1 << 22):
                digest.update(block)
        return digest.hexdigest()

    if len(files) == 1 and files[0] == root:
        return f"sha256:{file_hash(root)}"
    listing = hashlib.sha256()
    for path in files:
        listing.update(f"{path[len(root) :].strip('/')}\0{file_hash(path)}\n".encode())
    return f"sha256:{listing.hexdigest()}"
