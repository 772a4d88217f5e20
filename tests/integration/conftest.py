"""Fixtures of the integration layer: one real model folder shared by the serving tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry-version-shaped folder (``model/``, ``drift_reference/``) of a model trained on 4,000
    generated customers: what the predictor, explainer and drift detector serve in these tests."""
    from tests.serving_support import build_model_folder

    return build_model_folder(tmp_path_factory.mktemp("served"))
