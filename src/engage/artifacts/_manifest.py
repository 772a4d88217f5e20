"""The manifest of a model directory: SHA-256 and size of every file, verified before loading."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path, PurePosixPath
from typing import Any

from engage._io import sha256_file, write_text_atomic
from engage.artifacts._common import _one_line
from engage.errors import ArtifactError

#: File name of the manifest at the top of a model directory.
MANIFEST = "manifest.json"
#: Version of the manifest layout written by :func:`write_manifest`.
MANIFEST_VERSION = 1
#: File name of a bundle's signature (:mod:`engage.signing`), beside the manifest: it signs the manifest,
#: so the manifest cannot list it
SIGNATURE = "signature.json"
#: File names that hold pickled Python objects (pickle, joblib, dill, torch): never part of a bundle
PICKLE_SUFFIXES = frozenset({".pkl", ".pickle", ".joblib", ".dill", ".cloudpickle", ".pt", ".pth"})
_NOT_LISTED = frozenset({MANIFEST, SIGNATURE})

_SHA256 = re.compile(r"[0-9a-f]{64}")


def write_manifest(directory: Path, *, metadata: dict[str, object] | None = None) -> Path:
    """Write ``directory/manifest.json``: SHA-256 and size of every file below it, and ``metadata``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ArtifactError(f"{directory}: missing: not a directory")
    listed = _list_files(directory)
    for file in listed.values():
        _refuse_pickled_content(file)
    files = [
        {"path": rel, "sha256": sha256_file(file), "size": file.stat().st_size}
        for rel, file in listed.items()
    ]
    manifest = {"manifest_version": MANIFEST_VERSION, "files": files, "metadata": metadata or {}}
    target = directory / MANIFEST
    try:
        text = json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ArtifactError(f"{target}: metadata is not plain JSON: {_one_line(e)}") from e
    return write_text_atomic(target, text + "\n")


def verify_manifest(directory: Path) -> dict[str, object]:
    """Check every file of ``directory`` against its manifest and return the manifest.

    Raises :class:`ArtifactError` naming the first file (in path order) that is missing, was added, or
    whose size or SHA-256 differs, or naming the manifest when it is missing or corrupt; and naming a file
    that holds pickled data or is named like a pickle, listed or not.
    """
    directory = Path(directory)
    target = directory / MANIFEST
    if not target.is_file():
        raise ArtifactError(f"{target}: missing: not an Engage model directory")
    try:
        manifest = json.loads(target.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ArtifactError(f"{target}: corrupt: not valid JSON ({_one_line(e)})") from e
    expected = _manifest_files(manifest, target)
    on_disk = _list_files(directory)

    problems: list[tuple[str, str]] = []
    for rel, (digest, size) in expected.items():
        file = on_disk.get(rel)
        if file is None:
            problems.append((rel, "missing: listed in the manifest but not on disk"))
            continue
        _refuse_pickled_content(file)  # what it is matters more than whether it changed
        actual_size = file.stat().st_size
        if actual_size != size:
            problems.append(
                (
                    rel,
                    f"size mismatch (manifest {size} bytes, file {actual_size} bytes): "
                    "the artifact was changed after it was written",
                )
            )
            continue
        actual = sha256_file(file)
        if actual != digest:
            problems.append(
                (
                    rel,
                    f"SHA-256 mismatch (manifest {digest[:12]}…, file {actual[:12]}…): "
                    "the artifact was changed after it was written",
                )
            )
    problems.extend(
        (rel, "not in the manifest: the file was added after the manifest was written")
        for rel in on_disk.keys() - expected.keys()
    )
    if problems:
        problems.sort()
        rel, what = problems[0]
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise ArtifactError(f"{directory / rel}: {what}{more}")
    result: dict[str, object] = manifest
    return result


def _list_files(directory: Path) -> dict[str, Path]:
    """Every file below ``directory`` except the top-level manifest, by relative POSIX path, sorted."""
    found: dict[str, Path] = {}
    for root, dirs, names in os.walk(directory):
        for name in [*dirs, *names]:
            entry = Path(root, name)
            if entry.is_symlink():
                raise ArtifactError(f"{entry}: a symbolic link: a model directory holds only plain files")
        for name in names:
            entry = Path(root, name)
            rel = entry.relative_to(directory).as_posix()
            if rel in _NOT_LISTED:
                continue
            if not entry.is_file():
                raise ArtifactError(f"{entry}: not a regular file: a model directory holds only plain files")
            _refuse_pickle_name(rel, str(entry))
            found[rel] = entry
    return dict(sorted(found.items()))


def _manifest_files(manifest: Any, target: Path) -> dict[str, tuple[str, int]]:
    """The ``{path: (sha256, size)}`` a manifest lists; :class:`ArtifactError` unless it is well formed."""

    def corrupt(what: str) -> ArtifactError:
        return ArtifactError(f"{target}: corrupt: {what}")

    if not isinstance(manifest, dict):
        raise corrupt("not a JSON object")
    if manifest.get("manifest_version") != MANIFEST_VERSION:
        raise corrupt(
            f"manifest_version is {manifest.get('manifest_version')!r}, expected {MANIFEST_VERSION}"
        )
    if not isinstance(manifest.get("metadata"), dict):
        raise corrupt("metadata is not an object")
    files = manifest.get("files")
    if not isinstance(files, list):
        raise corrupt("files is not a list")
    expected: dict[str, tuple[str, int]] = {}
    for i, entry in enumerate(files):
        if not isinstance(entry, dict):
            raise corrupt(f"files[{i}] is not an object")
        rel, digest, size = entry.get("path"), entry.get("sha256"), entry.get("size")
        if not isinstance(rel, str) or not _is_plain_relative(rel):
            raise corrupt(f"files[{i}].path {rel!r} is not a relative path inside the directory")
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise corrupt(f"files[{i}].sha256 is not a SHA-256 hex digest")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise corrupt(f"files[{i}].size is not a byte count")
        if rel in expected:
            raise corrupt(f"{rel} is listed twice")
        _refuse_pickle_name(rel, f"{target}: files[{i}] {rel}")
        expected[rel] = (digest, size)
    return expected


def _is_plain_relative(rel: str) -> bool:
    pure = PurePosixPath(rel)
    return (
        rel == pure.as_posix()
        and not pure.is_absolute()
        and "\\" not in rel
        and all(part not in ("", ".", "..") for part in pure.parts)
        and rel not in _NOT_LISTED
    )


def _refuse_pickle_name(rel: str, where: str) -> None:
    """:class:`ArtifactError` for a file whose name says it holds pickled objects."""
    suffix = PurePosixPath(rel).suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise ArtifactError(
            f"{where}: a pickle file ({suffix}) refused: Engage never loads pickled objects (reading one runs "
            "code); save xgboost models as UBJSON and scikit-learn ones with skops"
        )


#: what every pickle of protocol 2 to 5 starts with: PROTO <n>
_PICKLE_HEADS = frozenset(bytes([0x80, n]) for n in range(2, 6))


def _refuse_pickled_content(file: Path) -> None:
    """:class:`ArtifactError` for a file that starts like a pickle, whatever its name."""
    with open(file, "rb") as f:
        head = f.read(2)
    if head in _PICKLE_HEADS:
        raise ArtifactError(
            f"{file}: pickled data (protocol {head[1]}) refused: Engage never loads pickled objects "
            "(reading one runs code)"
        )
