"""fsspec I/O of the registry: whole-object writes, tree uploads, moves, listings, on any storage URI.

Two filesystems matter and they differ in one way the registry relies on: a local directory can rename a
folder atomically, an object store cannot (a "move" is a copy of every object, then a delete). Everything
else is the same here. Listings and existence checks always go to the storage itself, never to fsspec's
listing cache: another process (a pipeline step, a second publisher) may have written since.

fsspec (and s3fs for ``s3://``) is imported when a store is opened, never when this module is imported.

A write that fails because the storage is full becomes a :class:`~engage.errors.StorageError` naming the
path (:func:`engage._io.disk_full_errors`); the registry then removes what the publish staged, so no
half-written version is left, let alone visible.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from engage._io import disk_full_errors
from engage.errors import RegistryError

__all__ = ["Store"]


class Store:
    """A storage location (``uri``) and the few operations the registry needs, on POSIX-style paths."""

    def __init__(self, uri: str, storage_options: Mapping[str, Any] | None = None) -> None:
        import fsspec  # type: ignore[import-untyped]
        from fsspec.implementations.local import LocalFileSystem  # type: ignore[import-untyped]

        try:
            fs, root = fsspec.core.url_to_fs(uri, **dict(storage_options or {}))
        except (ImportError, ValueError) as e:
            # an unknown protocol is a ValueError; a known one without its package is an ImportError
            raise RegistryError(f"cannot open registry storage {uri!r}: {e}", http_status=400) from e
        self.fs: Any = fs
        self.root: str = str(root).rstrip("/") or "/"
        #: a local directory: folders rename atomically and files are replaced with os.replace
        self.local: bool = isinstance(fs, LocalFileSystem)

    # --- names -----------------------------------------------------------------------------------------

    def path(self, *parts: str) -> str:
        """The storage path of ``parts`` below the root (parts are POSIX, relative)."""
        return "/".join([self.root.rstrip("/"), *(p.strip("/") for p in parts if p)])

    def url(self, path: str) -> str:
        """The full URI of a storage path, with its protocol (``file:///…``, ``s3://…``)."""
        return str(self.fs.unstrip_protocol(path))

    # --- reads -----------------------------------------------------------------------------------------

    def read(self, path: str) -> bytes | None:
        """The bytes of one object, or None when it does not exist."""
        try:
            data: bytes = self.fs.cat_file(path)
        except FileNotFoundError:
            return None
        return data

    def read_many(self, paths: Iterable[str]) -> dict[str, bytes]:
        """The bytes of every object of ``paths`` that exists (one concurrent batch on object stores)."""
        wanted = list(paths)
        if not wanted:
            return {}
        # cat_ranges reads each path as given (cat would expand '[', '*' and '?' as patterns), concurrently
        # on object stores, and returns each failure in place
        results = self.fs.cat_ranges(wanted, None, None, on_error="return")
        found: dict[str, bytes] = {}
        for path, result in zip(wanted, results, strict=True):
            if isinstance(result, FileNotFoundError):
                continue
            if isinstance(result, BaseException):
                raise result
            found[path] = bytes(result)
        return found

    def children(self, path: str) -> list[str]:
        """Names of the entries directly below ``path`` (folders and files), sorted; [] when absent."""
        self.fs.invalidate_cache(path)
        try:
            entries = self.fs.ls(path, detail=False)
        except FileNotFoundError:
            return []
        names = {str(e).rstrip("/").rsplit("/", 1)[-1] for e in entries}
        names.discard("")
        return sorted(names)

    def files(self, path: str) -> list[str]:
        """Every file below ``path``, as paths relative to it (POSIX), sorted; [] when absent."""
        self.fs.invalidate_cache(path)
        try:
            found = self.fs.find(path)
        except FileNotFoundError:
            return []
        prefix = path.rstrip("/") + "/"
        return sorted(str(f)[len(prefix) :] for f in found if str(f).startswith(prefix))

    # --- writes ----------------------------------------------------------------------------------------

    def write(self, path: str, data: bytes) -> None:
        """Write one object whole: readers see the old content or the new, never a part.

        Local: a temporary file beside it, renamed into place. Object stores: one PUT, which is atomic.
        """
        if not self.local:
            with disk_full_errors(self.url(path)):
                self.fs.pipe_file(path, data)
            return
        target = Path(path)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            with disk_full_errors(target):
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp.write_bytes(data)
                os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)

    def put_file(self, source: Path, path: str) -> None:
        """Upload one local file to ``path``."""
        with disk_full_errors(self.url(path)):
            if self.local:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.fs.put_file(str(source), path)

    def put_tree(self, source: Path, path: str) -> list[str]:
        """Upload a local file, or every file of a local folder (recursively), to ``path``.

        Returns the relative paths written. File by file, in sorted order, so a failure part-way is a
        failure of one named file.
        """
        if source.is_file():
            self.put_file(source, path)
            return [source.name]
        written = []
        for file in sorted(p for p in source.rglob("*") if p.is_file()):
            rel = file.relative_to(source).as_posix()
            self.put_file(file, f"{path}/{rel}")
            written.append(rel)
        return written

    def get_tree(self, path: str, dest: Path) -> list[str]:
        """Download every file below ``path`` into the local folder ``dest``; returns the relative paths."""
        rels = self.files(path)
        for rel in rels:
            target = dest / rel
            with disk_full_errors(target):
                target.parent.mkdir(parents=True, exist_ok=True)
                self.fs.get_file(f"{path}/{rel}", str(target))
        return rels

    def move_tree(self, source: str, path: str) -> None:
        """Move the folder ``source`` to ``path``, merging into what is there already.

        Local: one rename when ``path`` is absent (atomic), else file by file with ``os.replace``. Object
        stores: a server-side copy of every object, then a delete of ``source``; not atomic, which is why
        the registry commits a version with a marker written after the move.
        """
        if self.local:
            with disk_full_errors(path):
                self._move_local(Path(source), Path(path))
            return
        for rel in self.files(source):
            with disk_full_errors(self.url(f"{path}/{rel}")):
                self.fs.cp_file(f"{source}/{rel}", f"{path}/{rel}")
        self.remove_tree(source)

    def _move_local(self, source: Path, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            source.rename(target)  # replaces an empty folder; fails on a non-empty one
            return
        except OSError:
            if not target.is_dir():
                raise
        for file in sorted(p for p in source.rglob("*") if p.is_file()):
            dest = target / file.relative_to(source)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(file, dest)
        self.remove_tree(str(source))

    def remove(self, path: str) -> None:
        """Delete one object; nothing happens when it is absent."""
        if self.local:
            Path(path).unlink(missing_ok=True)
            return
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(path)
        self.fs.invalidate_cache(path)

    def remove_tree(self, path: str) -> None:
        """Delete ``path`` and everything below it; nothing happens when it is absent.

        File by file (``rm`` would expand '[', '*' and '?' in a path as patterns).
        """
        if self.local:
            if Path(path).exists():
                shutil.rmtree(path)
            return
        for rel in self.files(path):
            self.fs.rm_file(f"{path}/{rel}")
        self.fs.invalidate_cache(path)

    def exists(self, path: str) -> bool:
        self.fs.invalidate_cache(path)
        return bool(self.fs.exists(path))
