"""What the model-quality tests share: one model trained the way ``engage train`` and the pipeline train
it, on seeded generated customers, saved and loaded back as it ships; and fresh customers from the same
generator that no step of training ever saw.

Every figure a test asserts comes from these seeds, so each run gives the same numbers; the thresholds
are stated (and explained) in the tests. Sizes are chosen for this stage to stay under a minute on a
2-core machine: 12,000 customers in 4 monthly extracts (train 7,800, validation 1,200, test 3,000: the
latest extract).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest

from tests.conftest import AS_OF

#: the main table: seed, size, and the training configuration (the defaults of ``engage train``, with
#: fewer boosting rounds at most: early stopping ends every head well before 300)
SEED = 31
ROWS = 12_000
SNAPSHOTS = 4
MAX_ROUNDS = 300

F64 = npt.NDArray[np.float64]


@contextmanager
def one_thread() -> Iterator[None]:
    """OpenMP (xgboost, scikit-learn's trees) and BLAS on one thread.

    On a busy 2-core machine, threads that spin waiting for a core cost far more than they bring: one
    training of the main run took 21 s with two OpenMP threads and 1.7 s with one (same models, same
    figures). The runtimes are loaded first, so that the limit reaches them."""
    import sklearn.ensemble  # noqa: F401  (loads the OpenMP runtime)
    import xgboost  # noqa: F401
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    with threadpool_limits(limits=1):
        yield


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Any:
    """Every fixture of these tests (the trainings) runs on one thread, whatever OMP_NUM_THREADS says."""
    with one_thread():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    with one_thread():
        return (yield)


def customers(*, rows: int, seed: int, bias: float = 0.0, snapshots: int = SNAPSHOTS) -> pd.DataFrame:
    """A generated customer table (clean: no defects), as ``engage generate`` writes it."""
    from engage.synthetic import SyntheticConfig, generate_customers

    config = SyntheticConfig(rows=rows, seed=seed, as_of=AS_OF, snapshots=snapshots, bias=bias)
    return generate_customers(config).frame


@cache
def fresh_customers(seed: int, bias: float = 0.0, rows: int = 20_000) -> pd.DataFrame:
    """Customers from the same generator under another seed: new people, never trained or selected on.
    Shared between tests (cached): never modify it, copy first."""
    return customers(rows=rows, seed=seed, bias=bias, snapshots=1)


def train_config(seed: int = SEED) -> Any:
    from engage.training import TrainConfig

    return TrainConfig(seed=seed, max_rounds=MAX_ROUNDS)


@dataclass(frozen=True)
class Run:
    """A training run on :data:`ROWS` customers and what it reported and shipped."""

    frame: pd.DataFrame
    contract: Any
    result: Any  # engage.training.TrainResult
    bundle: Any  # the xgboost ModelBundle, saved and loaded back (manifest verified)
    evaluation: dict[str, Any]  # what the evaluation step writes to evaluation.json

    @property
    def test(self) -> pd.DataFrame:
        """The test rows (the latest extract), in split order."""
        rows: pd.DataFrame = self.frame.iloc[self.result.split.test]
        return rows

    @property
    def train(self) -> pd.DataFrame:
        rows: pd.DataFrame = self.frame.iloc[self.result.split.train]
        return rows

    def labels(self, head: str, rows: pd.DataFrame) -> F64:
        from engage.training import head_labels

        return head_labels(rows, self.bundle.heads[head].head)


def train_run(frame: pd.DataFrame, contract: Any, folder: Path, *, seed: int = SEED, **kwargs: Any) -> Run:
    """Train every head on ``frame`` as ``engage train`` does, save the xgboost bundle, load it back."""
    from engage.training import evaluation_json, load_bundle, train

    result = train(frame, contract, config=train_config(seed), **kwargs)
    saved = result.bundle("xgboost").save(folder / "model")
    return Run(frame, contract, result, load_bundle(saved), evaluation_json(result))


@pytest.fixture(scope="session")
def run(contract: Any, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The main run: every head trained on :data:`ROWS` unbiased customers (seed :data:`SEED`)."""
    frame = customers(rows=ROWS, seed=SEED)
    return train_run(frame, contract, tmp_path_factory.mktemp("ml-run"))


def gender_policy(**fairness: Any) -> Any:
    """The default promotion policy, its fairness gate judging gender alone (what the bias knob acts on)
    on groups of at least 300 test rows: on a test split of a few thousand rows the age bands and the
    intersections hold a few hundred rows each, whose gaps are mostly noise."""
    from engage.policy import load_policy

    base = load_policy()
    update = {
        "attributes": ["gender"],
        "intersections": False,
        "min_group_size": 300,
        "bootstrap": 50,
        **fairness,
    }
    return base.model_copy(update={"fairness": base.fairness.model_copy(update=update)})
