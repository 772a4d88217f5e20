"""``engage deploy`` and ``engage rollback`` on a real registry: render the version's InferenceService, and
point production back at previous (with the audit trail) then render that."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from engage.cli._main import app
from engage.errors import RegistryError
from engage.registry import Registry
from tests.unit.test_registry import build_bundles


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    root = tmp_path_factory.mktemp("deploy")
    store = Registry(str(root / "registry"))
    first, second = (store.publish(b) for b in build_bundles(root / "bundles", count=2))
    store.promote(first.id, reason="first release")
    store.promote(second.id, reason="second release")
    return store


def _storage(path: Path) -> str:
    manifest = yaml.safe_load(path.read_text())
    env = {e["name"]: e["value"] for e in manifest["spec"]["predictor"]["containers"][0]["env"]}
    return str(env["STORAGE_URI"])


def test_deploy_renders_the_version_an_alias_names(registry: Registry, tmp_path: Path) -> None:
    out = tmp_path / "isvc.yaml"
    result = CliRunner().invoke(
        app, ["deploy", "production", "-r", registry.uri, "-o", str(out), "--canary", "25"]
    )
    assert result.exit_code == 0, result.output
    production = registry.alias("production")
    assert production is not None
    assert _storage(out).endswith(f"/versions/{production.hex}/model")
    assert yaml.safe_load(out.read_text())["spec"]["predictor"]["canaryTrafficPercent"] == 25
    assert "not applied (no --kubeconfig)" in result.output


def test_rollback_points_production_at_previous_and_renders_it(registry: Registry, tmp_path: Path) -> None:
    before, previous = registry.alias("production"), registry.alias("previous")
    assert before is not None
    assert previous is not None
    out = tmp_path / "isvc.yaml"
    result = CliRunner().invoke(
        app, ["rollback", "-r", registry.uri, "--reason", "p95 latency", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert registry.alias("production").id == previous.id  # type: ignore[union-attr]
    assert registry.alias("previous").id == before.id  # type: ignore[union-attr]
    assert _storage(out).endswith(f"/versions/{previous.hex}/model")
    assert "canaryTrafficPercent" not in yaml.safe_load(out.read_text())["spec"]["predictor"]  # all at once
    assert any(e.get("reason") == "p95 latency" for e in registry.audit())


def test_deploy_of_an_unknown_version_is_one_clear_error(registry: Registry, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["deploy", "sha256:0000", "-r", registry.uri, "-o", str(tmp_path / "x.yaml")]
    )
    assert isinstance(result.exception, RegistryError)  # engage's main() prints it as one line, exit 2
    assert "sha256:0000" in str(result.exception)
    assert not (tmp_path / "x.yaml").exists()


def test_deploy_writes_the_charts_values_for_the_same_version(registry: Registry, tmp_path: Path) -> None:
    out, values = tmp_path / "isvc.yaml", tmp_path / "values-model.yaml"
    result = CliRunner().invoke(
        app,
        [
            "deploy",
            "production",
            "-r",
            registry.uri,
            "-o",
            str(out),
            "--canary",
            "0",
            "--helm-values",
            str(values),
        ],
    )
    assert result.exit_code == 0, result.output
    chart = yaml.safe_load(values.read_text())["inferenceService"]
    manifest = yaml.safe_load(out.read_text())
    assert chart["enabled"] is True
    assert chart["model"]["version"] == registry.alias("production").id
    assert chart["model"]["storageUri"] == _storage(out)
    assert chart["canaryTrafficPercent"] == 0
    assert "canaryTrafficPercent" not in manifest["spec"]["predictor"]
