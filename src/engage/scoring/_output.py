"""Where a scoring run writes, and how its files appear: whole, or not at all.

Layout under the output URI (any fsspec location: a folder, ``s3://bucket/prefix``)::

    run_date=2026-12-07/scores.parquet                  the scores of every accepted row
    _quarantine/run_date=2026-12-07/quarantine.parquet  every rejected row, with the reason
    _reports/run_date=2026-12-07.json                   the run's report and verdict (written last)

``run_date=`` is Hive-style, so Spark, Athena, pyarrow and dask read the folder as a table partitioned by
run date; names starting with ``_`` are skipped by those readers. Each file is written to a temporary file
and then committed in one step: on a local filesystem a rename (a new partition's folder is renamed into
place whole, so its folder never appears empty), on an object store a single upload (an S3 object appears
when its upload completes). A reader sees the previous file or the new one, never part of one. A rerun for
the same run date replaces that date's files.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from engage._io import DISK_FULL, disk_full_errors
from engage.errors import StorageError

__all__ = ["Destination", "ParquetSink"]


@dataclass(frozen=True)
class Destination:
    """The files of one run date under ``uri``."""

    uri: str
    run_date: date
    fs: Any = field(init=False, repr=False, compare=False)
    root: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        from fsspec.core import url_to_fs  # type: ignore[import-untyped]

        fs, root = url_to_fs(self.uri)
        object.__setattr__(self, "fs", fs)
        object.__setattr__(self, "root", root.rstrip("/"))

    @property
    def local(self) -> bool:
        return "file" in _protocols(self.fs)

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def url(self, *parts: str) -> str:
        return str(self.fs.unstrip_protocol(self.path(*parts)))

    @property
    def partition(self) -> str:
        return f"run_date={self.run_date.isoformat()}"

    @property
    def scores(self) -> tuple[str, str]:
        return self.partition, "scores.parquet"

    @property
    def quarantine(self) -> tuple[str, str]:
        return f"_quarantine/{self.partition}", "quarantine.parquet"

    @property
    def report(self) -> tuple[str, str]:
        return "_reports", f"{self.partition}.json"

    def staging(self, run_id: str) -> str:
        return self.path("_staging", run_id)

    # ------------------------------------------------------------------------------------- commit
    def commit_file(self, local: Path, where: tuple[str, str]) -> str:
        """Move the finished local file ``local`` to ``<folder>/<name>`` in one step; its URL."""
        folder, name = where
        target = self.path(folder, name)
        with _storage_errors(self.url(folder, name)):
            if self.local:
                parent = Path(self.path(folder))
                if parent.exists():
                    os.replace(local, target)  # same filesystem: see local_temp
                else:  # a new folder: appears with its file in it
                    staged = local.parent / f".{uuid.uuid4().hex}"
                    staged.mkdir()
                    os.replace(local, staged / name)
                    parent.parent.mkdir(parents=True, exist_ok=True)
                    try:
                        os.rename(staged, parent)
                    except OSError:  # another run made the folder meanwhile: replace the file in it
                        os.replace(staged / name, target)
                        staged.rmdir()
            else:
                self.fs.put_file(str(local), target)
        return self.url(folder, name)

    def write_json(self, where: tuple[str, str], data: dict[str, Any]) -> str:
        text = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
        with self.local_temp() as tmp:
            path = tmp / "report.json"
            path.write_text(text, encoding="utf-8")
            return self.commit_file(path, where)

    def local_temp(self) -> _TempDir:
        """A private local folder for files before they are committed: inside the output folder's
        ``_staging`` when it is local (the same filesystem, so the commit is a rename)."""
        if self.local:
            base = Path(self.path("_staging"))
            with _storage_errors(self.url("_staging")):
                base.mkdir(parents=True, exist_ok=True)
            return _TempDir(Path(tempfile.mkdtemp(prefix="commit-", dir=base)))
        return _TempDir(Path(tempfile.mkdtemp(prefix="engage-score-")))

    def remove_staging(self, run_id: str) -> None:
        try:
            if self.fs.exists(self.staging(run_id)):
                self.fs.rm(self.staging(run_id), recursive=True)
            if self.local:
                base = Path(self.path("_staging"))
                if base.is_dir() and not any(base.iterdir()):
                    base.rmdir()
        except OSError:
            pass  # staging left behind is hidden (_staging) and removed by the next run's clean-up


class _TempDir:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        parent = self.path.parent
        if parent.name == "_staging" and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()


def _protocols(fs: Any) -> tuple[str, ...]:
    proto = fs.protocol
    return (proto,) if isinstance(proto, str) else tuple(proto)


@contextlib.contextmanager
def _storage_errors(where: str) -> Iterator[None]:
    """An ``OSError`` while committing: a :class:`StorageError` naming the destination."""
    with disk_full_errors(where):
        try:
            yield
        except OSError as e:
            if e.errno in DISK_FULL:
                raise  # disk_full_errors names it
            raise StorageError(f"cannot write {where}: {e}") from e


class ParquetSink:
    """One Parquet file written batch by batch (bounded memory), with Engage's metadata in its footer."""

    def __init__(self, path: Path, schema: Any, metadata: dict[str, Any]) -> None:
        import pyarrow.parquet as pq

        self.path = path
        self.schema = schema.with_metadata({b"engage": json.dumps(metadata, sort_keys=True, default=str)})
        self.rows = 0
        self._writer = pq.ParquetWriter(str(path), self.schema, compression="snappy", use_dictionary=False)

    def write(self, table: Any) -> None:
        if table is None or table.num_rows == 0:
            return
        self._writer.write_table(table.cast(self.schema))
        self.rows += table.num_rows

    def close(self) -> None:
        self._writer.close()
