"""The Dask engine for real: one scheduler and two worker processes on loopback (``tests/dask_support.py``),
a generated table written as 8 Parquet partitions, the quality checks and training run through the cluster
and compared with the in-process path on the same rows, and ``engage train --engine dask`` through the CLI.

Tolerance of the metrics: 0.03 on churn AUC, engagement R² and LTV Spearman. The two engines train the same
model (same parameters, same features, the same test rows: the time cut is exact) but not on the same
validation rows (a hash sample vs a seeded permutation: early stopping ends a few rounds apart) nor with
the same histogram bins (xgboost.dask sketches quantiles per worker, then merges). On 1,000 test rows the
sampling error of an AUC near 0.8 is about 0.015, so 0.03 is two standard errors; a broken pipeline
(shuffled labels, misaligned partitions, a wrong feature encoding) misses it by far (AUC 0.5).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.conftest import AS_OF, CHECKED_AT
from tests.dask_support import RealDaskCluster, dask_cluster

__all__ = ["dask_cluster"]  # the module-scoped fixture, used by name

TOLERANCE = {"churn": ("auc_roc", 0.03), "engagement_score": ("r2", 0.03), "ltv": ("spearman", 0.03)}
PARTITIONS = 8


@pytest.fixture(scope="module")
def client(dask_cluster: RealDaskCluster) -> Iterator[Any]:
    from distributed import Client

    with Client(dask_cluster.address, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, Path]:
    """4,000 customers in 4 monthly extracts (seeded), written as 8 Parquet files of 500 rows."""
    from engage.synthetic import SyntheticConfig, generate_customers
    from engage.tables import write_table

    frame = generate_customers(SyntheticConfig(rows=4_000, seed=21, as_of=AS_OF, snapshots=4)).frame
    folder = tmp_path_factory.mktemp("partitioned") / "customers"
    folder.mkdir()
    size = len(frame) // PARTITIONS
    for i in range(PARTITIONS):
        write_table(frame.iloc[i * size : (i + 1) * size], folder / f"part-{i:02d}.parquet")
    return frame, folder


@pytest.fixture(scope="module")
def trained(client: Any, table: tuple[pd.DataFrame, Path], contract: Any) -> Any:
    from engage.distributed import read_frame, train_distributed

    ddf = read_frame(table[1])
    assert ddf.npartitions == PARTITIONS
    return train_distributed(ddf, contract, client)


def test_quality_figures_equal_the_in_process_gate(client: Any, contract: Any, spoiled: Any) -> None:
    from engage.distributed import check_distributed, read_frame
    from engage.quality import validate

    result = check_distributed(
        read_frame(spoiled.frame, npartitions=PARTITIONS), contract, client, now=CHECKED_AT
    )
    report = validate(spoiled.frame, contract, now=CHECKED_AT).report
    assert result.rows == report.rows
    assert result.partitions == PARTITIONS
    by_id = {r.id: r for r in report.results}
    for check in result.checks.values():
        local = by_id[check.id]
        assert (check.passed, check.failing_rows) == (local.passed, local.failing_rows), check.id
        assert check.observed == pytest.approx(local.observed), check.id
    assert set(by_id) == set(result.checks) | set(result.not_run)
    assert result.verdict == "fail"
    assert not report.passed
    assert {c.id for c in result.critical_failures} == {r.id for r in report.critical_failures} - set(
        result.not_run
    )


def test_training_through_the_cluster_matches_in_process(trained: Any, table: Any, contract: Any) -> None:
    from engage.tables import conform
    from engage.training import train

    local = train(conform(table[0], contract).frame, contract)
    assert set(trained.metrics) == set(local.heads)
    for head, (metric, tolerance) in TOLERANCE.items():
        ours, theirs = trained.metrics[head][metric], local.heads[head].test_metrics()[metric]
        assert abs(ours - theirs) <= tolerance, f"{head} {metric}: dask {ours:.4f} vs in-process {theirs:.4f}"
        assert trained.rows[head]["test"] == local.heads[head].rows["test"]  # the same time cut
    assert trained.split.startswith("time-aware on snapshot_at")
    assert trained.bundle.features == local.features
    assert all(0 < m.best_iteration < 1000 for m in trained.bundle.heads.values())  # early stopping ran


def test_saved_bundle_predicts_like_the_one_in_memory(trained: Any, table: Any, tmp_path: Path) -> None:
    from engage.training import load_bundle

    saved = trained.bundle.save(tmp_path / "model")
    loaded = load_bundle(saved)
    before = trained.bundle.predict(table[0])
    pd.testing.assert_frame_equal(loaded.predict(table[0])[before.columns], before, check_exact=True)
    assert loaded.metadata["engine"] == "dask"


def test_cli_trains_on_the_scheduler_it_is_given(
    dask_cluster: RealDaskCluster, table: Any, tmp_path: Path
) -> None:
    from engage.training import load_bundle

    out = tmp_path / "run"
    env = {**os.environ, "ENGAGE_DASK_SCHEDULER": dask_cluster.address, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "engage",
            "train",
            str(table[1]),
            "--engine",
            "dask",
            "--head",
            "churn",
            "--out-dir",
            str(out),
            "--now",
            CHECKED_AT.isoformat(),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert dask_cluster.address in proc.stderr  # it joined the cluster, started none
    report = json.loads((out / "training.json").read_text())
    assert report["engine"] == "dask"
    assert report["partitions"] == PARTITIONS
    assert report["quality"]["verdict"] == "pass"
    assert 0.7 < report["metrics"]["churn"]["auc_roc"] <= 1.0
    assert sorted(p.name for p in out.iterdir()) == ["model", "training.json"]
    assert list(load_bundle(out / "model").heads) == ["churn"]
