"""``engage score`` for real: a signed registry version with fairness offsets, the real CLI, a real predictor
process on loopback answering the same rows, and the Dask engine on a real scheduler with two workers.

What must hold: every scored row's three heads equal the predictor's answer for the same row; every
rejected row is one the predictor refuses alone, for the same reason; a missing version fails before any
work; a partition with a broken schema is quarantined whole and named; the Dask engine writes the same
files as the in-process one; a worker killed mid-run changes nothing in the output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from tests.conftest import AS_OF
from tests.dask_support import RealDaskCluster, dask_cluster

__all__ = ["dask_cluster"]  # the module-scoped fixture, used by name

ENGAGE = str(Path(sys.executable).parent / "engage")
RUN_DATE = "2026-12-07"
#: the churn offsets the test bundle carries (logit shifts per gender): large, so a lost offset shows
OFFSETS = {"female": 0.8, "male": -0.3}


def engage(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ENGAGE, *args], capture_output=True, text=True, timeout=timeout, check=False,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def read(path: Path) -> pd.DataFrame:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).read().to_pandas()  # the file alone, not its run_date= folder


@pytest.fixture(scope="module")
def registry(model_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A registry whose production version is the served test model plus churn offsets by gender."""
    from engage.model import GroupOffsets, load_bundle
    from engage.registry import Registry, RegistrySettings
    from engage.signing import sign_bundle

    root = tmp_path_factory.mktemp("scoring")
    bundle = load_bundle(model_folder / "model")
    bundle.adjustments["churn"] = GroupOffsets([{"name": "gender", "bins": None}], OFFSETS).to_json()
    bundle.save(root / "model")
    sign_bundle(root / "model", model=RegistrySettings().model)
    reg = Registry(str(root / "registry"))
    version = reg.publish(root / "model")
    reg.promote(version.id, reason="batch scoring test")
    return {"uri": reg.uri, "version": version.id, "model": root / "model", "root": root}


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """6,000 generated customers, 1 % of rows spoiled in each of three ways, as one file and as a folder
    of 8 Parquet files of 500-row row groups."""
    from engage.synthetic import SyntheticConfig, generate_customers

    root = tmp_path_factory.mktemp("table")
    frame = generate_customers(
        SyntheticConfig(
            rows=6_000, seed=21, as_of=AS_OF, snapshots=1,
            defects={"bad_country": 0.01, "missing_value": 0.01, "impossible_age": 0.01},
        )
    ).frame  # fmt: skip
    frame.to_parquet(root / "customers.parquet", index=False)
    folder = root / "customers"
    folder.mkdir()
    for i, chunk in enumerate(np.array_split(np.arange(len(frame)), 8)):
        frame.iloc[chunk].to_parquet(folder / f"part-{i}.parquet", index=False, row_group_size=500)
    return {"frame": frame, "file": root / "customers.parquet", "folder": folder}


#: the Dask runs' options: what ``in_process`` scores with, on the engine
ON_DASK = ("--reasons", "2", "--partition-rows", "1000", "--engine", "dask")


def score_args(source: Path, out: Path, registry: dict[str, Any], *extra: str) -> list[str]:
    """``engage score``'s arguments (without the program) for ``source`` into ``out``."""
    return [
        "score",
        str(source),
        "--out",
        str(out),
        "--registry",
        registry["uri"],
        "--run-date",
        RUN_DATE,
        *extra,
    ]


def score(
    source: Path, out: Path, registry: dict[str, Any], *extra: str, env: dict[str, str] | None = None
) -> Any:
    return engage(*score_args(source, out, registry, *extra), env=env)


def outputs(out: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    quarantine = out / "_quarantine" / f"run_date={RUN_DATE}" / "quarantine.parquet"
    return (
        read(out / f"run_date={RUN_DATE}" / "scores.parquet"),
        read(quarantine) if quarantine.exists() else pd.DataFrame(),
        json.loads((out / "_reports" / f"run_date={RUN_DATE}.json").read_text()),
    )


def test_scores_equal_the_predictors_answers_for_the_same_rows(
    registry: dict[str, Any], table: dict[str, Any], tmp_path: Path
) -> None:
    from tests.serving_support import run_server

    done = score(table["file"], tmp_path / "out", registry, "--reasons", "3")
    assert done.returncode == 0, done.stderr
    scores, quarantine, report = outputs(tmp_path / "out")
    assert report["verdict"] == "warn"
    assert report["rows"] == len(table["frame"]) == report["scored"] + report["quarantined"]
    assert report["model_version"] == registry["version"]
    assert report["notes"] == []  # the offsets were applied: the table has the gender column
    assert len(quarantine) == report["quarantined"] > 0
    metadata = json.loads(_footer(tmp_path / "out" / f"run_date={RUN_DATE}" / "scores.parquet")["engage"])
    assert metadata["model_version"] == registry["version"]
    assert metadata["data_sha256"].startswith("sha256:")
    assert all(len(r) == 3 for r in scores["reasons"])

    frame = table["frame"].set_index("customer_id", drop=False)
    sent = json.loads(frame.loc[scores["customer_id"]].to_json(orient="records", date_format="iso"))
    heads = ["churn_probability", "engagement_score", "ltv"]
    args = ["--model_dir", str(registry["model"])]
    with run_server("engage_serving.predictor", args, tmp_path / "predictor.log") as server:
        answers = []
        for i in range(0, len(sent), 500):
            reply = httpx.post(
                server.url + "/v1/models/engage:predict", json={"instances": sent[i : i + 500]}, timeout=60
            )
            assert reply.status_code == 200, reply.text
            answers += reply.json()["predictions"]
        for head in heads:
            assert scores[head].tolist() == [a[head] for a in answers], head
        # the rejected rows: each refused by the predictor alone, with the same reason
        rejected = json.loads(
            table["frame"].iloc[quarantine["row"]].to_json(orient="records", date_format="iso")
        )
        for row, (_, q) in zip(rejected, quarantine.iterrows(), strict=True):
            reply = httpx.post(
                server.url + "/v1/models/engage:predict", json={"instances": [row]}, timeout=30
            )
            assert reply.status_code == 422, reply.text
            assert reply.json()["reason"] == q["reason"]
    # and the offsets changed the answers: the bundle without them gives other churn figures to women
    from engage.model import load_bundle

    women = frame.loc[scores["customer_id"]].reset_index(drop=True)["gender"].eq("female").to_numpy()
    plain = load_bundle(registry["model"])
    plain.adjustments.clear()
    base = plain.predict(frame.loc[scores["customer_id"]].reset_index(drop=True))[
        "churn_probability"
    ].to_numpy()
    assert (scores["churn_probability"].to_numpy()[women] > base[women]).all()


def _footer(path: Path) -> dict[str, str]:
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).schema_arrow.metadata or {}
    return {k.decode(): v.decode() for k, v in meta.items()}


def test_a_missing_version_fails_before_any_work(
    registry: dict[str, Any], table: dict[str, Any], tmp_path: Path
) -> None:
    done = score(table["file"], tmp_path / "out", registry, "--version", "sha256:" + "f" * 64)
    assert done.returncode == 2
    assert "engage: error:" in done.stderr
    assert "f" * 12 in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_a_partition_with_a_broken_schema_is_quarantined_whole(
    registry: dict[str, Any], table: dict[str, Any], tmp_path: Path
) -> None:
    import shutil

    folder = tmp_path / "customers"
    shutil.copytree(table["folder"], folder)
    broken = pd.read_parquet(folder / "part-3.parquet")
    broken["tenure_days"] = broken["tenure_days"].astype(str)  # text where the contract says integer
    broken.to_parquet(folder / "part-3.parquet", index=False)
    (folder / "part-5.parquet").write_bytes(b"PAR1 not really")  # unreadable

    done = score(folder, tmp_path / "lenient", registry, "--max-rejected", "0.5")
    assert done.returncode == 0, done.stderr
    _scores, quarantine, report = outputs(tmp_path / "lenient")
    assert report["verdict"] == "warn"
    whole = {Path(p["source"]).name: p["reason"] for p in report["quarantined_parts"]}
    assert set(whole) == {"part-3.parquet", "part-5.parquet"}
    assert "tenure_days" in whole["part-3.parquet"]
    assert "holds text" in whole["part-3.parquet"]
    assert whole["part-5.parquet"].startswith("unreadable")
    assert (
        quarantine[quarantine["source"].str.endswith("part-3.parquet")]["reason"] == "schema"
    ).sum() == len(broken)
    assert "part-3" in done.stderr

    strict = score(folder, tmp_path / "strict", registry)  # default --max-rejected 0.05: the run fails
    assert strict.returncode == 1
    assert not (tmp_path / "strict" / f"run_date={RUN_DATE}").exists()  # no scores committed
    report = json.loads((tmp_path / "strict" / "_reports" / f"run_date={RUN_DATE}.json").read_text())
    assert report["verdict"] == "fail"
    assert report["notes"][0].startswith("nothing committed")
    assert (tmp_path / "strict" / "_quarantine" / f"run_date={RUN_DATE}" / "quarantine.parquet").exists()
    assert sorted(p.name for p in (tmp_path / "strict").iterdir()) == [
        "_quarantine",
        "_reports",
    ]  # no staging


@pytest.fixture(scope="module")
def in_process(
    registry: dict[str, Any], table: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The folder scored in-process (2 reasons, 1,000-row parts): what the Dask runs must equal."""
    out = tmp_path_factory.mktemp("in-process")
    local = score(table["folder"], out, registry, *ON_DASK[:-2])
    assert local.returncode == 0, local.stderr
    return out


def test_the_dask_engine_on_a_real_cluster_writes_what_in_process_writes(
    registry: dict[str, Any],
    table: dict[str, Any],
    dask_cluster: RealDaskCluster,
    in_process: Path,
    tmp_path: Path,
) -> None:
    env = {"ENGAGE_DASK_SCHEDULER": dask_cluster.address}
    done = score(table["folder"], tmp_path / "dask", registry, *ON_DASK, env=env)
    assert done.returncode == 0, done.stderr
    a_scores, a_quarantine, a_report = outputs(in_process)
    b_scores, b_quarantine, b_report = outputs(tmp_path / "dask")
    assert b_report["engine"] == "dask"
    assert b_report["parts"] == a_report["parts"] == 8  # 8 files of 750 rows: one part (two row groups) each
    pd.testing.assert_frame_equal(a_scores, b_scores)  # identical scores for the identical model
    pd.testing.assert_frame_equal(a_quarantine, b_quarantine)
    assert sorted(p.name for p in (tmp_path / "dask").iterdir()) == [
        "_quarantine",
        "_reports",
        f"run_date={RUN_DATE}",
    ]


def test_a_worker_killed_mid_run_changes_nothing_in_the_output(
    registry: dict[str, Any],
    table: dict[str, Any],
    dask_cluster: RealDaskCluster,
    in_process: Path,
    tmp_path: Path,
) -> None:
    """SIGKILL of a worker process while parts are being scored: the scheduler runs its parts again (the
    nanny restarts the worker), and the files equal the in-process run's."""
    out = tmp_path / "dask"
    env = {**os.environ, "ENGAGE_DASK_SCHEDULER": dask_cluster.address}
    command = [ENGAGE, *score_args(table["folder"], out, registry, *ON_DASK)]
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        deadline = time.monotonic() + 120
        while not list((out / "_staging").glob("*/scores/part-*.parquet")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no part was staged"
            time.sleep(0.05)
        assert proc.poll() is None  # still scoring: the kill lands mid-run
        dask_cluster.kill_worker(0)
        _stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    a_scores, a_quarantine, _ = outputs(in_process)
    b_scores, b_quarantine, _report = outputs(out)
    pd.testing.assert_frame_equal(a_scores, b_scores)
    pd.testing.assert_frame_equal(a_quarantine, b_quarantine)
    assert not (out / "_staging").exists()
