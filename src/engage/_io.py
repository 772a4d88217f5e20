"""Atomic file writes: an output is either complete at its final path or absent.

Everything Engage writes (tables, reports, models) goes through :func:`atomic_path`: the writer fills a
temporary file beside the destination, and only a successful write is renamed into place (``os.replace``
is atomic on one filesystem). A failure removes the temporary file and leaves any previous version alone.
Folders are built in a :func:`staging_dir` beside their destination and moved into place whole.

A write that fails because the storage is full (``ENOSPC``, ``EDQUOT``, ``EFBIG``) becomes a
:class:`~engage.errors.StorageError` naming the destination, after the partial file is removed: a
user's problem with one line to read, not a bug with a traceback (tests/integration/test_faults.py fills
a real tmpfs).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from engage.errors import StorageError

__all__ = [
    "DISK_FULL",
    "atomic_path",
    "disk_full_errors",
    "replace_dir",
    "sha256_file",
    "shipped_file",
    "staging_dir",
    "write_text_atomic",
]

#: what a write raises when the storage cannot take it: the user's to fix, never a bug
DISK_FULL = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large (the filesystem's or the process's file-size limit)",
}


@contextlib.contextmanager
def disk_full_errors(destination: str | Path) -> Iterator[None]:
    """Turn an ``OSError`` of a full storage raised in the block into a :class:`StorageError` naming
    ``destination``; any other error passes unchanged."""
    try:
        yield
    except OSError as e:
        if e.errno not in DISK_FULL:
            raise
        raise StorageError(
            f"cannot write {destination}: {DISK_FULL[e.errno]}; nothing was written there "
            "(free some space, or write elsewhere)"
        ) from e


@contextlib.contextmanager
def atomic_path(destination: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; move it to ``destination`` when the block succeeds."""
    dest = Path(destination)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        with disk_full_errors(dest):
            yield tmp
            os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(destination: str | Path, text: str) -> Path:
    with atomic_path(destination) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(destination)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def shipped_file(*parts: str) -> Path:
    """A file Engage ships (``contracts/…``, ``policies/…``), from the installed wheel or the source tree.

    A wheel carries copies under ``engage/_data/``; a source checkout (editable install) reads the files
    at the repository root, so there is only ever one file to edit.
    """
    from importlib import resources

    packaged = resources.files("engage").joinpath("_data", *parts)
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2].joinpath(*parts)


@contextlib.contextmanager
def staging_dir(target: str | Path) -> Iterator[Path]:
    """A fresh folder beside ``target`` to build outputs in; removed afterwards unless moved into place."""
    import shutil
    import tempfile

    dest = Path(target)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    mask = os.umask(0)
    os.umask(mask)
    staging.chmod(0o777 & ~mask)  # mkdtemp makes it private; the finished folder gets the usual mode
    try:
        with disk_full_errors(dest):
            yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def replace_dir(staging: Path, target: Path) -> None:
    """Move a complete staging folder to ``target``, replacing an older folder there."""
    import shutil

    if target.exists():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
        staging.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(target)
