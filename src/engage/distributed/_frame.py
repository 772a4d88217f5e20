"""A customer table as a Dask dataframe: partitioned Parquet where it lives, or a table split in partitions.

:func:`read_frame` takes a folder of Parquet files, a glob, an fsspec URI (``s3://bucket/table/``), one
Parquet or CSV file, or a pandas frame already in memory. Parquet is read lazily by
``dask.dataframe.read_parquet`` (one partition per file or row group, on the workers); a CSV file or an
in-memory frame is split into partitions of ``DaskSettings.partition_rows`` rows. Every failure to find
or read the table is one :class:`~engage.errors.DataError` line.

:func:`conformed` gives each partition the contract's dtypes (:func:`engage.tables.conform`, per
partition), which every later step expects.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from engage.contract import Contract
from engage.errors import DataError

from ._settings import DaskSettings

if TYPE_CHECKING:
    import dask.dataframe as dd

__all__ = ["conformed", "read_frame"]

_GLOB = ("*", "?", "[")


def read_frame(
    source: str | Path | pd.DataFrame,
    *,
    settings: DaskSettings | None = None,
    npartitions: int | None = None,
) -> dd.DataFrame:
    """The table ``source`` as a Dask dataframe (lazy: nothing is read but Parquet metadata).

    A pandas frame or a CSV file is split into ``npartitions`` partitions when given, else into
    partitions of ``settings.partition_rows`` rows. :class:`DataError` for a missing path or a file that
    is not a table."""
    import dask.dataframe as dd

    settings = settings or DaskSettings()
    if isinstance(source, pd.DataFrame):
        return _split(source, settings, npartitions)
    text = str(source)
    remote = "://" in text and not text.startswith("file://")
    local = Path(text.removeprefix("file://"))
    if not remote and not any(ch in text for ch in _GLOB):
        if not local.exists():
            raise DataError(f"{local}: no such file or folder")
        if local.is_file() and not _is_parquet(local):
            from engage.tables import read_table

            return _split(read_table(local), settings, npartitions)  # CSV: read, then split
        if local.is_dir() and not any(p.is_file() for p in local.rglob("*.parquet")):
            raise DataError(f"{local}: a folder without Parquet files (*.parquet)")
    try:
        frame = dd.read_parquet(text if remote else str(local))
    except FileNotFoundError:
        raise DataError(f"{text}: no such file or folder") from None
    except (OSError, ValueError, TypeError, ImportError) as e:
        raise DataError(f"{text}: not readable as Parquet: {_one_line(e)}") from None
    except Exception as e:  # pyarrow's ArrowInvalid and friends: one line, never a traceback
        if type(e).__module__.startswith("pyarrow"):
            raise DataError(f"{text}: not readable as Parquet: {_one_line(e)}") from None
        raise
    if npartitions is not None and npartitions != frame.npartitions:
        frame = frame.repartition(npartitions=npartitions)
    return frame


def _split(frame: pd.DataFrame, settings: DaskSettings, npartitions: int | None) -> dd.DataFrame:
    import dask.dataframe as dd

    if len(frame) == 0:
        raise DataError("the table has no rows")
    n = npartitions or max(1, math.ceil(len(frame) / settings.partition_rows))
    return dd.from_pandas(frame.reset_index(drop=True), npartitions=n, sort=False)


def _is_parquet(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"PAR1"
    except OSError as e:
        raise DataError(f"{path}: cannot be read: {e.strerror or e}") from None


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def conformed(ddf: dd.DataFrame, contract: Contract) -> dd.DataFrame:
    """Each partition with the contract's dtypes (values of the wrong type become empty, as in
    :func:`engage.tables.conform`; the quality checks count them)."""
    return ddf.map_partitions(_conform_partition, contract, meta=conformed_meta(ddf._meta, contract))


def _conform_partition(part: pd.DataFrame, contract: Contract) -> pd.DataFrame:
    from engage.tables import conform

    if len(part) == 0:
        return conformed_meta(part, contract)
    out = conform(part, contract).frame
    out.index = part.index
    return out


def conformed_meta(meta: pd.DataFrame, contract: Contract) -> pd.DataFrame:
    """The empty frame of conformed dtypes (``conform`` of one empty row: it refuses a table of none)."""
    from engage.tables import conform

    one = meta.reindex(pd.RangeIndex(1))
    return conform(one, contract).frame.iloc[:0]
