"""The distributed engine's parts that need no cluster: reading, the split, per-partition counts."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from engage.errors import DataError, TrainingError
from tests.conftest import CHECKED_AT


def test_read_frame_splits_a_frame_and_refuses_what_is_not_a_table(tmp_path: Path, clean: Any) -> None:
    from engage.distributed import read_frame

    ddf = read_frame(clean.frame, npartitions=8)
    assert ddf.npartitions == 8
    assert list(ddf.columns) == list(clean.frame.columns)
    with pytest.raises(DataError, match="no such file or folder"):
        read_frame(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="without Parquet files"):
        read_frame(tmp_path / "empty")
    fake = tmp_path / "fake.parquet"
    fake.write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match=r"not a Parquet (or CSV )?file"):
        read_frame(fake)


def test_partition_counts_add_up_to_the_in_process_figures(contract: Any, spoiled: Any) -> None:
    """Two halves counted apart and summed give validate()'s failing rows, check by check."""
    from engage.distributed._quality import _partition_counts
    from engage.quality import validate

    frame = spoiled.frame
    half = len(frame) // 2
    parts = [_partition_counts(p, contract, CHECKED_AT) for p in (frame.iloc[:half], frame.iloc[half:])]
    summed = pd.concat(parts).sum()
    report = validate(frame, contract, now=CHECKED_AT).report
    compared = 0
    for r in report.results:
        if r.failing_rows is not None and r.id in summed.index and r.kind != "unique":
            assert int(summed[r.id]) == r.failing_rows, r.id
            compared += 1
    assert compared >= 20
    assert summed[[c for c in summed.index if c.startswith("schema.")]].sum() > 0  # spoiled rows counted


def test_time_cut_from_counts_is_the_in_process_cut(contract: Any, panel: Any) -> None:
    from engage.distributed import assign_parts, plan_split
    from engage.features import time_split
    from engage.tables import conform

    frame = conform(panel.frame, contract).frame
    counts = frame["snapshot_at"].value_counts()
    plan = plan_split(len(frame), contract, counts, seed=3)
    parts = assign_parts(frame, plan)
    local = time_split(frame, contract, seed=3)
    assert np.array_equal(np.flatnonzero(parts == 3), local.test)  # the same test rows, exactly
    earlier = len(frame) - len(local.test)
    assert abs(int(np.isin(parts, (1, 2)).sum()) - len(local.valid)) < 0.25 * len(local.valid)
    assert int((parts == 0).sum()) > 0.6 * earlier
    assert "time-aware on snapshot_at" in plan.how


def test_hash_split_does_not_depend_on_the_partitioning(contract: Any, clean: Any) -> None:
    from engage.distributed import assign_parts, plan_split
    from engage.tables import conform

    frame = conform(clean.frame, contract).frame
    plan = plan_split(len(frame), contract, None, seed=5)
    whole = assign_parts(frame, plan)
    bounds = [0, 5, 400, 401, 1700, len(frame)]  # uneven partitions, one of a single row
    pieces = np.concatenate([assign_parts(frame.iloc[a:b], plan) for a, b in itertools.pairwise(bounds)])
    assert np.array_equal(whole, pieces)
    share = np.bincount(whole, minlength=4) / len(frame)
    assert share[3] == pytest.approx(0.2, abs=0.03)
    assert share[1] + share[2] == pytest.approx(0.1, abs=0.03)
    other = assign_parts(frame, plan_split(len(frame), contract, None, seed=6))
    assert not np.array_equal(whole, other)  # the seed matters


def test_counts_refuse_a_split_part_with_one_class() -> None:
    from engage.contract import Task
    from engage.distributed._train import _check_counts
    from engage.model import Head

    head = Head("churn", "churned", Task.binary_classification, positive=True)
    good = {0: (1000, 200), 1: (50, 10), 2: (50, 10), 3: (300, 60)}
    _check_counts(head, good)
    with pytest.raises(TrainingError, match="the test part holds a single class"):
        _check_counts(head, {**good, 3: (300, 0)})
    with pytest.raises(TrainingError, match="too few labelled rows"):
        _check_counts(head, {**good, 1: (5, 1), 2: (5, 1)})
