"""The drift reference the pipeline's drift-reference step samples: the latest extract by default (the
customers the model scores next), the training split when the policy says so.

Found by benchmarks/bench_feedback_loop.py: a reference sampled from the training extracts made the
detector flag calendar-bound features (tenure) on every window of traffic with no shift at all.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.unit

AS_OF = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, pd.DataFrame]:
    from engage.contract import default_contract_path
    from engage.synthetic import SyntheticConfig, generate_customers
    from engage.tables import write_table
    from engage_components.steps import features_step

    root = tmp_path_factory.mktemp("drift-reference")
    frame = generate_customers(SyntheticConfig(rows=3_000, seed=5, snapshots=3, as_of=AS_OF)).frame
    data = root / "customers.parquet"
    write_table(frame, data)
    features_step(data, str(default_contract_path()), root / "features", seed=5)
    return data, root / "features", frame


def _policy(tmp_path: Path, source: str | None) -> str:
    """The shipped policy, with ``drift.source`` set when ``source`` is given."""
    import yaml

    from engage.policy import default_policy_path

    if source is None:
        return str(default_policy_path())
    policy = yaml.safe_load(Path(default_policy_path()).read_text(encoding="utf-8"))
    policy.setdefault("drift", {})["source"] = source
    path = tmp_path / "policy.yml"
    path.write_text(yaml.safe_dump(policy), encoding="utf-8")
    return str(path)


def _reference(
    table: tuple[Path, Path, pd.DataFrame], tmp_path: Path, source: str | None = None
) -> tuple[pd.DataFrame, dict[str, object]]:
    import json

    from engage.contract import default_contract_path
    from engage_components.steps import drift_reference_step

    data, features, _ = table
    out = tmp_path / "reference"
    drift_reference_step(data, features, str(default_contract_path()), _policy(tmp_path, source), out, seed=5)
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    return pd.read_parquet(out / "reference.parquet"), summary


def test_the_reference_is_the_latest_extract_by_default(
    table: tuple[Path, Path, pd.DataFrame], tmp_path: Path
) -> None:
    _, _, frame = table
    reference, summary = _reference(table, tmp_path)
    times = pd.to_datetime(frame["snapshot_at"], utc=True)
    latest = frame[times == times.max()]
    assert str(summary["source"]).startswith("latest extract (snapshot_at 2026-03-01")
    assert summary["available_rows"] == len(latest) < len(frame)
    assert summary["rows"] == len(reference) == len(latest)  # fewer than reference_rows: every one
    # the same customers as the latest extract, tenure and all
    assert sorted(reference["tenure_days"]) == sorted(latest["tenure_days"])


def test_the_policy_can_ask_for_the_training_split(
    table: tuple[Path, Path, pd.DataFrame], tmp_path: Path
) -> None:
    from engage_components.steps import read_features

    _, features, frame = table
    reference, summary = _reference(table, tmp_path, "training")
    _, split = read_features(features)
    assert summary["source"] == "training split"
    assert summary["available_rows"] == len(split.train)
    times = pd.to_datetime(frame["snapshot_at"], utc=True)
    assert (times.iloc[split.train] < times.max()).all()  # older extracts only
    assert len(reference) == summary["rows"]


def test_an_unknown_source_is_refused(tmp_path: Path) -> None:
    from engage.errors import ConfigError
    from engage.policy import load_policy

    with pytest.raises(ConfigError, match="source"):
        load_policy(_policy(tmp_path, "yesterday"))
