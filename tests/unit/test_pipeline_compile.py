"""The compiled pipeline: committed beside the code, and shaped as designed."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPILED = ROOT / "pipelines" / "engage_pipeline.yaml"


def test_the_committed_pipeline_yaml_is_what_the_code_compiles_to(tmp_path: Path) -> None:
    from engage_components import compile_pipeline

    fresh = compile_pipeline(tmp_path / "p.yaml").read_text()
    assert fresh == COMPILED.read_text(), "pipelines/engage_pipeline.yaml is stale: run `make generate`"


def test_the_pipeline_has_its_gates_fan_out_retries_resources_and_exit_handler() -> None:
    spec = yaml.safe_load(COMPILED.read_text())
    root = spec["root"]
    assert set(root["inputDefinitions"]["parameters"]) >= {
        "data_uri",
        "rows",
        "seed",
        "contract",
        "policy",
        "canary_percent",
    }
    tasks = root["dag"]["tasks"]
    assert tasks["record-outcome"]["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    components = spec["components"]
    run = components["comp-engage-run"]["dag"]["tasks"]
    assert run["condition-1"]["triggerPolicy"]["condition"].endswith("!= 'fail'")
    body = components["comp-condition-1"]["dag"]["tasks"]
    assert "parameterIterator" in body["for-loop-2"]
    assert body["evaluate"]["retryPolicy"]["maxRetryCount"] == 2
    executors = spec["deploymentSpec"]["executors"]
    images = {e["container"]["image"] for e in executors.values()}
    assert images == {f"ghcr.io/engage-ml/engage-components:{__import__('engage').__version__}"}
    assert all("resources" in e["container"] for e in executors.values())


def test_command_line_parameters_are_json_when_they_parse_else_text() -> None:
    import pytest

    from engage.errors import ConfigError
    from engage_components.cli import _pair, _value

    assert _pair("rows=1000") == ("rows", "1000")
    assert [_value(v) for v in ("1000", '["churn"]', "true", "", "s3://bucket/x")] == [
        1000, ["churn"], True, "", "s3://bucket/x",
    ]  # fmt: skip
    with pytest.raises(ConfigError, match="--param: expected NAME=VALUE, got 'rows'"):
        _pair("rows")
