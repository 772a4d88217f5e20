"""Helpers shared by the artifact modules: file-name suffix checks, reading a file, one-line errors."""

from __future__ import annotations

from pathlib import Path

from engage.errors import ArtifactError


def _require_suffix(path: Path, suffix: str) -> None:
    if path.suffix != suffix:
        raise ArtifactError(f"{path}: the file name must end in {suffix}")


def _read_artifact(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as e:
        raise ArtifactError(f"{path}: missing: no such file") from e
    except OSError as e:
        raise ArtifactError(f"{path}: unreadable: {e.strerror or e}") from e


def _one_line(error: BaseException) -> str:
    """The first line of an exception's message (xgboost's carry a stack trace), at most 200 characters."""
    lines = str(error).strip().splitlines()
    text = lines[0].strip() if lines else type(error).__name__
    return text if len(text) <= 200 else text[:199] + "…"
