"""Fixtures of the integration layer: one real model folder shared by the serving tests, a Pushgateway
and one pipeline run shared by the pipeline and monitoring tests."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry-version-shaped folder (``model/``, ``drift_reference/``) of a model trained on 4,000
    generated customers: what the predictor, explainer and drift detector serve in these tests."""
    from tests.serving_support import build_model_folder

    return build_model_folder(tmp_path_factory.mktemp("served"))


@pytest.fixture(scope="session")
def session_pushgateway() -> Iterator[str]:
    """A real Pushgateway on loopback for the whole session (``host:port``): pipeline runs push there."""
    from tests.monitoring_support import pushgateway

    with pushgateway() as address:
        yield address


@pytest.fixture(scope="session")
def pipeline_workspace(tmp_path_factory: pytest.TempPathFactory, session_pushgateway: str) -> dict[str, Any]:
    """One pipeline run under kfp.local on 4,000 generated customers, pushing to the session's
    Pushgateway: shared by the pipeline tests and the monitoring stack test (which only read it)."""
    from engage_components import run_local

    root = tmp_path_factory.mktemp("pipeline")
    # the table is extracted an hour ago: the quality gate judges freshness (BR-010) against the clock
    as_of = (datetime.now(UTC) - timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    params = {
        "rows": 4_000, "seed": 3, "max_rounds": 60, "as_of": as_of.isoformat(),
        "policy": str(ROOT / "tests" / "fixtures" / "small_table_policy.yml"),
        "registry": str(root / "registry"), "pushgateway": session_pushgateway,
    }  # fmt: skip
    first = run_local(params, pipeline_root=root / "runs")
    return {"root": root, "params": params, "first": first}
