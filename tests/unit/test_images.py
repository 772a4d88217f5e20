"""The server images as their Dockerfiles declare them (no Docker engine here to build them): a pinned
base, a non-root user, a ``python -m`` entrypoint that exists, and only /tmp to write to."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVERS = ("predictor", "explainer", "drift_detector")


@pytest.mark.parametrize("server", SERVERS)
def test_each_server_has_a_pinned_non_root_image_with_its_entrypoint(server: str) -> None:
    text = (ROOT / "serving" / f"{server}.Dockerfile").read_text(encoding="utf-8")
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.MULTILINE)
    assert base is not None
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+|python@sha256:[0-9a-f]{64}", base.group(1))
    assert re.search(r"COPY --from=ghcr.io/astral-sh/uv:\d+\.\d+\.\d+ ", text)
    assert "uv sync --frozen --no-dev --no-editable --package engage-serving" in text
    users = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    assert users == ["10001:10001"]
    entrypoint = re.search(r'^ENTRYPOINT \["python", "-m", "([\w.]+)"\]$', text, re.MULTILINE)
    assert entrypoint is not None
    assert entrypoint.group(1) == f"engage_serving.{server}"
    assert importlib.util.find_spec(f"engage_serving.{server}.__main__") is not None
    # a read-only root filesystem: everything written goes under /tmp
    for variable in ("HOME", "MPLCONFIGDIR", "NUMBA_CACHE_DIR"):
        assert re.search(rf"\b{variable}=/tmp\b", text), variable


def test_make_images_builds_every_server() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for server in SERVERS:
        assert f"-f serving/{server}.Dockerfile" in makefile
