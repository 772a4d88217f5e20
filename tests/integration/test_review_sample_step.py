"""The pipeline's review-sample step (its function, not the whole pipeline) on a real trained model, into
a real governance database: SQLite and a PostgreSQL server on loopback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from engage.errors import GovernanceError
from engage.governance._review import ReviewQueue
from engage.model import bundle_version
from engage_components.steps import review_sample_line, review_sample_step


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """2,000 generated customers, the pipeline's features step and a model trained on them (the
    ``training`` folder holds ``model/``, as the evaluate step's output does)."""
    from engage.contract import default_contract_path
    from tests.serving_support import build_model_folder

    root = build_model_folder(tmp_path_factory.mktemp("review"), rows=2_000, max_rounds=30)
    return {
        "data": root / "work" / "customers.parquet",
        "features": root / "work" / "features",
        "contract": str(default_contract_path()),
        "training": root,
    }


def run_step(trained: dict[str, Any], out: Path, **options: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {"size": 150, "seed": 5, "run_id": "engage-customers-test-run"}
    settings.update(options)
    return review_sample_step(
        trained["data"], trained["features"], settings.pop("contract", trained["contract"]),
        trained["training"], None, out, **settings,
    )  # fmt: skip


def test_the_step_puts_its_sample_in_the_queue_and_says_how_many_per_stratum(
    trained: dict[str, Any], governance_url: str, governance_db: Any, tmp_path: Path
) -> None:
    summary = run_step(trained, tmp_path / "sample", database_url=governance_url)
    assert summary["items"] == 150
    assert summary["run_id"] == "engage-customers-test-run"
    assert summary["model_version"] == bundle_version(trained["training"] / "model")
    assert summary["strata_by"] == ["gender", "age"]
    assert summary["score"] == "churn_probability"
    assert sum(summary["strata"].values()) == 150
    assert json.loads((tmp_path / "sample").read_text()) == summary

    queue = ReviewQueue(governance_db)
    items = queue.list(run_id="engage-customers-test-run", source="sample", limit=500)
    assert len(items) == 150
    assert all(i.status == "pending" and i.reason == "stratified_sample" for i in items)
    assert {i.model_version for i in items} == {summary["model_version"]}
    assert len({i.customer_id for i in items}) == 150
    assert all(str(i.customer_id).startswith("CUST-") for i in items)
    counted: dict[str, int] = {}
    for item in items:
        counted[str(item.stratum)] = counted.get(str(item.stratum), 0) + 1
    assert counted == summary["strata"]
    item = items[0]
    assert set(item.prediction) == {"engagement_score", "churn_probability", "ltv"}
    assert "tenure_days" in item.features
    assert "email" not in item.features
    assert "gender" not in item.features  # a protected attribute is no feature: it is in the stratum
    json.dumps(item.features, allow_nan=False)

    line = review_sample_line(summary)
    assert "150 of" in line
    assert "engage-customers-test-run" in line
    assert not any(str(i.customer_id) in line for i in items)


def test_size_zero_puts_nothing_in_the_queue(trained: dict[str, Any], tmp_path: Path) -> None:
    summary = run_step(trained, tmp_path / "sample", size=0, database_url="sqlite:///nowhere/at/all.db")
    assert summary["items"] == 0
    assert "disabled" in summary["note"]
    assert "disabled" in review_sample_line(summary)
    assert not Path("nowhere").exists()


def test_a_table_without_an_id_column_is_sampled_without_customer_ids(
    trained: dict[str, Any], tmp_path: Path
) -> None:
    spec = yaml.safe_load(Path(trained["contract"]).read_text())
    spec["columns"]["customer_id"]["role"] = "metadata"  # still the key, no longer an id
    contract = tmp_path / "contract.yml"
    contract.write_text(yaml.safe_dump(spec))
    url = f"sqlite:///{tmp_path}/governance.db"
    summary = run_step(trained, tmp_path / "sample", contract=str(contract), database_url=url, size=40)
    assert summary["items"] == 40
    assert summary["customer_ids"] is False
    assert "no id column" in summary["note"]
    assert "no customer id" in review_sample_line(summary)
    from engage.governance import open_database

    items = ReviewQueue(open_database(url)).list(run_id="engage-customers-test-run", limit=100)
    assert len(items) == 40
    assert {i.customer_id for i in items} == {None}


def test_a_database_that_is_down_fails_the_step_with_one_clear_line(
    trained: dict[str, Any], tmp_path: Path
) -> None:
    from tests.serving_support import free_port

    url = f"postgresql+psycopg://engage:s3cret-pw@127.0.0.1:{free_port()}/engage"
    with pytest.raises(GovernanceError) as raised:
        run_step(trained, tmp_path / "sample", database_url=url)
    message = str(raised.value)
    assert message.startswith("governance database postgresql+psycopg://engage:***@127.0.0.1:")
    assert "failed" in message
    assert "s3cret-pw" not in message
    assert "\n" not in message
    assert not (tmp_path / "sample").exists()
