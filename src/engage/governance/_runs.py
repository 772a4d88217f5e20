"""Customer data in pipeline run outputs: where the runs name a customer, and erasing them there.

A pipeline root (``engage run``'s ``artifacts/run``, or a cluster's ``s3://bucket/pipeline-root``) holds
one folder per run, ``<run>/<task>/<output>``; these outputs hold customer data keyed by the contract's
id column (``role: id``):

=========================================  ======================  =============================================
output                                     kind                    erasure
=========================================  ======================  =============================================
``load-data/data`` (the input's copy),     Parquet or CSV table    the customer's rows dropped; the file keeps its
``validate/remediated``,                   with the id column      schema (Parquet: the same Arrow schema and
``validate/report/{remediated,                                     codec; CSV: the header and every other record
quarantine}.parquet``,                                             byte for byte), replaced whole
``evaluate/training/test_predictions
.parquet``
``validate/report/report.json``            JSON naming the id      each id (a value, a key, or a word of a text)
(``sample_keys``), ``explain/step`` and                            replaced by its mask (:func:`engage.privacy.mask`)
``record-outcome/outcome`` (the customer
explained), kfp's ``executor_output.json``
HTML / Markdown / other text reports       text naming the id      the id's text (also HTML- and JSON-escaped)
                                                                   replaced by its mask
``explain/explanations/customers/<id>/``   a per-customer folder   deleted (also a file named ``<id>.…``)
=========================================  ======================  =============================================

Left as they are: tables without the id column (``drift-reference``'s sample of model inputs), models
(``.ubj``, ``.skops``), ``features/split.npz`` (row positions into the validated table, no ids: after an
erasure they no longer line up with that table, so a run's outputs are no longer reproducible from its
inputs) and other binary files. kfp.local's step cache (``<root>/.cache``) entries that point into a run
whose outputs an erasure changed are dropped, so a later run recomputes those steps instead of mixing
erased outputs with the stale split.

fsspec (and pyarrow) are imported when used, never when this module is imported.
"""

from __future__ import annotations

import csv
import html
import json
import logging
import math
import os
import re
import shutil
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engage.errors import GovernanceError
from engage.privacy import mask

if TYPE_CHECKING:
    from engage.contract import Contract

__all__ = ["RunOutputs"]

_NOT_JSON = object()

_LOG = logging.getLogger(__name__)

_PARQUET_MAGIC = b"PAR1"
_ZIP_MAGIC = b"PK\x03\x04"
#: files that cannot hold a customer id as text: models, arrays of row positions, images, fonts
_BINARY_SUFFIXES = frozenset(
    {".ubj", ".skops", ".npz", ".npy", ".png", ".gif", ".jpg", ".jpeg", ".ico", ".otf", ".ttf", ".woff",
     ".woff2", ".eot", ".pdf", ".zip", ".gz"}
)  # fmt: skip
#: kfp.local's step cache, below the pipeline root
_CACHE = ".cache"
#: the folder whose entries are per-customer documents (``explain/explanations/customers/<id>/``)
_PER_CUSTOMER = "customers"


@dataclass
class _Found:
    """One place naming the customer: what access lists, and (when erasing) its new content."""

    rel: str
    kind: str
    rows: int
    extra: dict[str, Any]
    #: the file's new bytes (None: delete the file or folder)
    new: bytes | None = None

    def mention(self) -> dict[str, Any]:
        return {**_where(self.rel), "path": self.rel, "kind": self.kind, "rows": self.rows, **self.extra}


class RunOutputs:
    """The outputs of the pipeline runs under ``root`` (a folder or any fsspec URI), as a source of
    customer data for the data-subject rights (:class:`~engage.governance.SubjectRights`' ``runs=``).

    ``contract`` names the id column (its primary key's ``role: id`` column, else any ``role: id``
    column, else the first primary-key column); a table without that column is not keyed by customer.
    """

    def __init__(
        self, root: str | Path, contract: Contract, *, storage_options: Mapping[str, Any] | None = None
    ) -> None:
        import fsspec  # type: ignore[import-untyped]
        from fsspec.implementations.local import LocalFileSystem  # type: ignore[import-untyped]

        try:
            fs, path = fsspec.core.url_to_fs(str(root), **dict(storage_options or {}))
        except (ImportError, ValueError) as e:
            raise GovernanceError(f"cannot open the runs root {str(root)!r}: {e}", http_status=400) from e
        self._fs: Any = fs
        self._root: str = str(path).rstrip("/") or "/"
        self._local: bool = isinstance(fs, LocalFileSystem)
        self.location: str = str(fs.unstrip_protocol(self._root))
        if not fs.isdir(self._root):
            raise GovernanceError(f"runs root {self.location}: no such folder", http_status=400)
        self.id_column: str = _id_column(contract)
        #: one erasure at a time through this object (a server's requests share it): two erasures
        #: rewriting the same table concurrently would each write back the other's customer
        self._erasing = threading.Lock()

    # --- the CustomerRecords protocol ------------------------------------------------------------------

    def customer_mentions(self, customer_id: str) -> list[dict[str, Any]]:
        """Each file or folder of the runs that holds the customer: ``{"run", "task", "output", "path",
        "kind", "rows"}`` (``rows``: the customer's rows of a table, the places a report names the id, the
        files of a per-customer folder), with the customer's ``records`` of a table and the ``files`` of a
        folder. Paths are relative to the root."""
        return [found.mention() for found in self._scan(_checked(customer_id), erase=False)]

    def mask_customer(self, customer_id: str) -> int:
        """Erase the customer from every output naming them; returns the places erased (files rewritten,
        files and folders deleted). Each file is replaced whole (local: a temporary file renamed into
        place; object stores: one PUT), so a failure part-way leaves each file old or new and a retry
        erases the rest."""
        customer_id = _checked(customer_id)
        with self._erasing:
            return self._erase(customer_id)

    def _erase(self, customer_id: str) -> int:
        erased = 0
        runs: set[str] = set()
        for found in self._scan(customer_id, erase=True):
            path = self._path(found.rel)
            try:
                if found.new is None:
                    self._remove(path)
                else:
                    self._write(path, found.new)
            except OSError as e:
                where = self._fs.unstrip_protocol(path).replace(customer_id, mask(customer_id))
                raise GovernanceError(f"{where}: cannot erase the customer there: {e}") from e
            erased += 1
            run = _where(found.rel)["run"]
            if run is not None:
                runs.add(run)
        dropped = self._drop_cache_entries(runs)
        _LOG.info(
            "run outputs %s: %d place(s) erased in %d run(s), %d cached step(s) dropped",
            self.location,
            erased,
            len(runs),
            dropped,
        )
        return erased

    # --- scanning --------------------------------------------------------------------------------------

    def _scan(self, customer_id: str, *, erase: bool) -> list[_Found]:
        found: list[_Found] = []
        folders: dict[str, list[str]] = {}
        files = []
        for rel in self._files():
            parts = rel.split("/")
            owned = next(
                (
                    i
                    for i in range(1, len(parts) - 1)
                    if parts[i] == customer_id and parts[i - 1] == _PER_CUSTOMER
                ),
                None,
            )
            if owned is not None:  # a per-customer folder: every file below it goes with it
                folder = "/".join(parts[: owned + 1])
                folders.setdefault(folder, []).append("/".join(parts[owned + 1 :]))
            elif len(parts) > 1 and parts[-2] == _PER_CUSTOMER and parts[-1].startswith(customer_id + "."):
                found.append(_Found(rel, "file", 1, {}))
            else:
                files.append(rel)
        for folder, inside in sorted(folders.items()):
            found.append(_Found(folder, "folder", len(inside), {"files": sorted(inside)}))
        for rel in files:
            hit = self._inspect(rel, customer_id, erase=erase)
            if hit is not None:
                found.append(hit)
        return sorted(found, key=lambda f: f.rel)

    def _files(self) -> list[str]:
        """Every file below the root, relative to it, sorted (the storage itself, never a listing cache)."""
        self._fs.invalidate_cache(self._root)
        try:
            paths = self._fs.find(self._root)
        except FileNotFoundError:
            return []
        prefix = self._root.rstrip("/") + "/"
        rels = (str(p)[len(prefix) :] for p in paths if str(p).startswith(prefix))
        return sorted(r for r in rels if not _is_temporary(r.rsplit("/", 1)[-1]))

    def _inspect(self, rel: str, customer_id: str, *, erase: bool) -> _Found | None:
        """The customer's place in one file, or None; with ``erase``, the file's erased content too."""
        if Path(rel).suffix.lower() in _BINARY_SUFFIXES:
            return None
        path = self._path(rel)
        try:
            with self._fs.open(path, "rb") as f:
                head = f.read(4)
                if head == _PARQUET_MAGIC:
                    return self._parquet(rel, f, customer_id, erase=erase)
                if head == _ZIP_MAGIC:
                    return None  # npz, skops, zip: no text
                data: bytes = head + f.read()
        except FileNotFoundError:
            return None  # removed since the listing
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return None  # binary
        if "\x00" in text or not any(form in text for form, _ in _forms(customer_id, "")):
            return None
        return (
            _json(rel, text, customer_id, erase=erase)
            or _csv(rel, text, customer_id, self.id_column, erase=erase)
            or _text(rel, text, customer_id, erase=erase)
        )

    def _parquet(self, rel: str, f: Any, customer_id: str, *, erase: bool) -> _Found | None:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        try:
            parquet = pq.ParquetFile(f)
            if self.id_column not in parquet.schema_arrow.names:
                return None  # not keyed by customer
            ids = parquet.read(columns=[self.id_column]).column(0)  # the id column alone first
            matches = pc.fill_null(pc.equal(pc.cast(ids, pa.string()), pa.scalar(customer_id)), False)
            rows = int(pc.sum(matches).as_py() or 0)
            if not rows:
                return None
            table = parquet.read()
        except (pa.ArrowException, OSError, ValueError) as e:
            _LOG.warning(
                "%s: not a readable Parquet table, left as it is: %s",
                self._url(_masked(rel)),
                type(e).__name__,
            )
            return None
        if not erase:
            return _Found(rel, "parquet", rows, {"records": _records(table.filter(matches).to_pylist())})
        kept = table.filter(pc.invert(matches))
        sink = pa.BufferOutputStream()
        pq.write_table(kept, sink, compression=_codec(parquet))
        return _Found(rel, "parquet", rows, {}, sink.getvalue().to_pybytes())

    # --- writing ---------------------------------------------------------------------------------------

    def _path(self, rel: str) -> str:
        return f"{self._root.rstrip('/')}/{rel}"

    def _url(self, rel: str) -> str:
        return str(self._fs.unstrip_protocol(self._path(rel)))

    def _write(self, path: str, data: bytes) -> None:
        """Replace one file whole: readers see the old content or the new, never a part."""
        if not self._local:
            self._fs.pipe_file(path, data)
            return
        target = Path(path)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)

    def _remove(self, path: str) -> None:
        """Delete a file or a folder (local: the folder is renamed away first, so it goes at once)."""
        if not self._local:
            self._fs.rm(path, recursive=True)
            return
        target = Path(path)
        if target.is_dir():
            gone = target.with_name(f".{uuid.uuid4().hex}.erasing")
            os.replace(target, gone)
            shutil.rmtree(gone)
        else:
            target.unlink(missing_ok=True)

    def _drop_cache_entries(self, runs: set[str]) -> int:
        """Drop kfp.local's cached steps whose outputs live in one of ``runs``: a later run recomputes
        them rather than reusing erased outputs with the split computed before the erasure."""
        if not runs:
            return 0
        cache = self._path(_CACHE)
        try:
            entries = [str(p) for p in self._fs.ls(cache, detail=False)]
        except (FileNotFoundError, NotADirectoryError):
            return 0
        markers = [f"/{run}/" for run in runs]  # the run folder's name, wherever the root was mounted
        dropped = 0
        for entry in entries:
            if not entry.endswith(".json"):
                continue
            try:
                text = self._fs.cat_file(entry).decode("utf-8", errors="replace")
            except FileNotFoundError:
                continue
            if any(marker in text for marker in markers):
                self._remove(entry)
                dropped += 1
        return dropped


# --- the kinds of file -------------------------------------------------------------------------------------


def _json(rel: str, text: str, customer_id: str, *, erase: bool) -> _Found | None:
    """A JSON document, or JSON lines: every string (and number) naming the id, keys too."""
    stripped = text.lstrip()
    if not stripped or stripped[0] not in "[{":
        return None
    replace = _replacer(customer_id, mask(customer_id))
    try:
        document = json.loads(text)
    except ValueError:
        document = _NOT_JSON
    if document is not _NOT_JSON:
        count, new = _walk(document, replace)
        if not count:
            return None
        return _Found(rel, "json", count, {}, _dump_like(new, text).encode() if erase else None)
    if stripped[0] != "{":
        return None
    lines = text.splitlines(keepends=True)
    total, out_lines = 0, []
    for line in lines:
        if not line.strip():
            out_lines.append(line)
            continue
        try:
            record = json.loads(line)
        except ValueError:
            return None  # neither JSON nor JSON lines
        count, new = _walk(record, replace)
        total += count
        ending = line[len(line.rstrip("\r\n")) :]
        out_lines.append(json.dumps(new, ensure_ascii=line.isascii()) + ending if count else line)
    if not total:
        return None
    return _Found(rel, "jsonl", total, {}, "".join(out_lines).encode() if erase else None)


def _csv(rel: str, text: str, customer_id: str, id_column: str, *, erase: bool) -> _Found | None:
    """A CSV (or tab-separated) table whose header names the id column: the customer's records."""
    first = text.split("\n", 1)[0]
    delimiter = "\t" if "\t" in first else "," if "," in first else None
    if delimiter is None:
        return None
    records = _csv_records(text, delimiter)
    header = [h.lstrip("\ufeff").strip() for h in records[0][1]] if records else []
    if id_column not in header:
        return None
    at = header.index(id_column)
    mine = [(raw, fields) for raw, fields in records[1:] if len(fields) > at and fields[at] == customer_id]
    if not mine:
        return None
    if not erase:
        return _Found(
            rel, "csv", len(mine), {"records": [dict(zip(header, f, strict=False)) for _, f in mine]}
        )
    kept = [records[0][0]] + [
        raw for raw, fields in records[1:] if not (len(fields) > at and fields[at] == customer_id)
    ]
    return _Found(rel, "csv", len(mine), {}, "".join(kept).encode())


def _csv_records(text: str, delimiter: str) -> list[tuple[str, list[str]]]:
    """Each record of a CSV text with its raw text (a quoted field may span lines), so the records kept
    are written back exactly as they were."""
    lines = [line for line in re.split(r"(?<=\n)", text) if line]
    consumed: list[str] = []

    def feed() -> Any:
        for line in lines:
            consumed.append(line)
            yield line

    records = []
    try:
        for fields in csv.reader(feed(), delimiter=delimiter):
            records.append(("".join(consumed), fields))
            consumed.clear()
    except csv.Error:
        return []
    return records


def _text(rel: str, text: str, customer_id: str, *, erase: bool) -> _Found | None:
    """Any other text (HTML, Markdown, logs): the id's text as a word, as written or HTML- or
    JSON-escaped; only a distinctive id (:func:`_distinctive`) is looked for in free text."""
    if not _distinctive(customer_id):
        return None
    count, new = 0, text
    for form, masked_form in _forms(customer_id, mask(customer_id)):
        pattern = _pattern(form)
        new, n = pattern.subn(_literal(masked_form), new)
        count += n
    if not count:
        return None
    suffix = Path(rel).suffix.lower()
    head = text.lstrip()[:15].lower()
    kind = (
        "html"
        if suffix in {".html", ".htm"} or head.startswith(("<!doctype html", "<html"))
        else "markdown"
        if suffix == ".md" or head.startswith("#")
        else "text"
    )
    return _Found(rel, kind, count, {}, new.encode() if erase else None)


# --- helpers -----------------------------------------------------------------------------------------------


def _checked(customer_id: str) -> str:
    if not customer_id or not customer_id.strip():
        raise GovernanceError("a customer id is required", http_status=400)
    return customer_id


def _id_column(contract: Contract) -> str:
    from engage.contract import Role

    keys = [c for c in contract.primary_key if c in contract.columns and contract.columns[c].role is Role.id]
    return (keys or contract.by_role(Role.id) or contract.primary_key)[0]


def _masked(rel: str) -> str:
    """A path fit for a log line: a per-customer folder's name (a customer id) masked."""
    parts = rel.split("/")
    return "/".join(
        mask(p) if i and parts[i - 1] == _PER_CUSTOMER and i < len(parts) - 1 else p
        for i, p in enumerate(parts)
    )


def _where(rel: str) -> dict[str, str | None]:
    """The run, task and output of a path below the root (a ParallelFor's tasks sit in ``for-loop-…``
    folders); None for kfp.local's own files (its log, its cache)."""
    parts = rel.split("/")
    if len(parts) < 3 or parts[0].startswith("."):
        return {"run": None, "task": None, "output": None}
    j = 1
    while j < len(parts) - 2 and parts[j].startswith("for-loop-"):
        j += 1
    return {"run": parts[0], "task": "/".join(parts[1 : j + 1]), "output": parts[j + 1]}


def _is_temporary(name: str) -> bool:
    """A file being written (``.<name>.<hex>.tmp``) or a folder being deleted."""
    return name.startswith(".") and name.endswith((".tmp", ".erasing"))


def _forms(value: str, masked: str) -> list[tuple[str, str]]:
    """How a value's text may appear in a file, each with its mask in the same form: as is,
    HTML-escaped, JSON-escaped (the distinct forms)."""
    pairs = [(value, masked), (html.escape(value), html.escape(masked))]
    pairs.append((json.dumps(value)[1:-1], json.dumps(masked)[1:-1]))
    return list(dict(pairs).items())


def _pattern(form: str) -> re.Pattern[str]:
    """``form`` as a whole word: not inside a longer id (``C-1`` does not name ``C-10``)."""
    return re.compile(r"(?<![\w-])" + re.escape(form) + r"(?![\w-])")


def _literal(text: str) -> Callable[[re.Match[str]], str]:
    """A replacement taken as is (a string given to ``re.sub`` would have its backslashes read)."""
    return lambda _match: text


def _distinctive(customer_id: str) -> bool:
    """Whether an id can be told apart inside free text: six characters or more, one a letter. A short
    or all-digit id (``42``) would match counts and figures, so only whole values name it."""
    return len(customer_id) >= 6 and any(c.isalpha() for c in customer_id)


def _replacer(customer_id: str, masked: str) -> Callable[[str], tuple[int, str]]:
    """What masks the id in one JSON string: the whole string, a part of a key of several columns
    (joined with ``|``), or (a distinctive id) a word of a text."""
    pattern = _pattern(customer_id) if _distinctive(customer_id) else None

    def replace(text: str) -> tuple[int, str]:
        if text == customer_id:
            return 1, masked
        if pattern is not None:
            new, count = pattern.subn(_literal(masked), text)
            return count, new
        parts = text.split("|")
        if customer_id in parts:
            return parts.count(customer_id), "|".join(masked if p == customer_id else p for p in parts)
        return 0, text

    return replace


def _walk(value: Any, replace: Callable[[str], tuple[int, str]]) -> tuple[int, Any]:
    """``value`` with every mention of the id masked (strings and keys; a number is a figure, never taken
    for an id), and the number of mentions."""
    if isinstance(value, str):
        return replace(value)
    if isinstance(value, list):
        total, items = 0, []
        for item in value:
            count, new = _walk(item, replace)
            total += count
            items.append(new)
        return total, items
    if isinstance(value, dict):
        total, out = 0, {}
        for key, item in value.items():
            key_count, new_key = replace(key)
            count, new = _walk(item, replace)
            total += key_count + count
            out[new_key] = new
        return total, out
    return 0, value


def _dump_like(document: Any, original: str) -> str:
    """``document`` as JSON in the original's layout: its indent (or none), ASCII escapes or not, its
    final newline."""
    lines = original.lstrip().split("\n", 2)
    indent = None
    if len(lines) > 1 and lines[1].strip():
        indent = len(lines[1]) - len(lines[1].lstrip(" ")) or None
    text = json.dumps(document, indent=indent, ensure_ascii=original.isascii())
    return text + "\n" if original.endswith("\n") else text


def _codec(parquet: Any) -> str:
    """The compression of a Parquet file's first column chunk, as pyarrow writes it (zstd: none read)."""
    meta = parquet.metadata
    if not (meta.num_row_groups and meta.num_columns):
        return "zstd"
    codec = str(meta.row_group(0).column(0).compression).lower()
    return {"uncompressed": "none", "lz4_raw": "lz4"}.get(codec, codec)


def _records(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{str(k): _plain(v) for k, v in row.items()} for row in rows]


def _plain(value: Any) -> Any:
    """One Arrow value, JSON-ready."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value
