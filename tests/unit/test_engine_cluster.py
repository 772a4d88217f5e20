"""engine_cluster (engage_components._dask): the DaskSettings of a step as they are without
ENGAGE_DASK_CLUSTER_SPEC; with it, a precise ConfigError before any cluster exists when the manifest, the
namespace or the Kubernetes API is wrong. (Starting a real DaskCluster needs a cluster with the operator:
none exists here; the chart's manifest is checked against the operator's CRD in
tests/integration/test_chart_dask.py.)"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from engage.distributed import DaskSettings
from engage.errors import ConfigError
from engage_components._dask import (
    CLUSTER_SPEC_ENV,
    NAMESPACE_ENV,
    engine_cluster,
    load_cluster_spec,
    named_cluster_spec,
)


def _pod(name: str) -> dict[str, Any]:
    return {"containers": [{"name": name, "image": "ghcr.io/engage-ml/engage-components:0.1.0"}]}


#: the smallest DaskCluster manifest the loader takes (the chart's full one: test_chart_dask.py)
CLUSTER: dict[str, Any] = {
    "apiVersion": "kubernetes.dask.org/v1",
    "kind": "DaskCluster",
    "metadata": {"name": "engage-dask"},
    "spec": {
        "scheduler": {
            "spec": _pod("scheduler"),
            "service": {
                "type": "ClusterIP",
                "selector": {"dask.org/cluster-name": "engage-dask", "dask.org/component": "scheduler"},
                "ports": [{"name": "tcp-comm", "port": 8786, "targetPort": "tcp-comm"}],
            },
        },
        "worker": {"replicas": 2, "spec": _pod("worker")},
    },
}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (CLUSTER_SPEC_ENV, NAMESPACE_ENV, "ENGAGE_DASK_SCHEDULER", "KUBECONFIG"):
        monkeypatch.delenv(name, raising=False)


def _spec_file(tmp_path: Path, doc: Any) -> Path:
    path = tmp_path / "daskcluster.yaml"
    path.write_text(yaml.safe_dump(doc) if not isinstance(doc, str) else doc, encoding="utf-8")
    return path


def test_without_the_variable_the_settings_are_yielded_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    with engine_cluster() as settings:
        assert settings == DaskSettings()
        assert settings.scheduler == ""  # dask_client starts a LocalCluster
    monkeypatch.setenv(CLUSTER_SPEC_ENV, "  ")
    given = DaskSettings(scheduler="tcp://engage-dask-scheduler.kubeflow:8786", workers=4)
    with engine_cluster(given) as settings:
        assert settings is given


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read the DaskCluster manifest"),
        ("kind: [DaskCluster", "is not YAML"),
    ],
    ids=["missing", "not-yaml"],
)
def test_an_unreadable_spec_is_a_config_error_naming_the_file(
    content: str | None, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "daskcluster.yaml" if content is None else _spec_file(tmp_path, content)
    monkeypatch.setenv(CLUSTER_SPEC_ENV, str(path))
    with pytest.raises(ConfigError) as raised, engine_cluster():
        pytest.fail("no cluster from an unreadable spec")
    assert f"{CLUSTER_SPEC_ENV}={path}" in str(raised.value)
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({**CLUSTER, "kind": "DaskJob"}, "not a DaskCluster manifest"),
        ({**CLUSTER, "apiVersion": "kubernetes.dask.org/v1beta1"}, "not a DaskCluster manifest"),
        (
            {"apiVersion": "v1", "kind": "ConfigMap", "data": {"daskcluster.yaml": "..."}},
            "found ('v1', 'ConfigMap')",
        ),
        (["a", "list"], "found list"),
        (
            {**CLUSTER, "spec": {"worker": CLUSTER["spec"]["worker"], "scheduler": {"spec": _pod("s")}}},
            "the DaskCluster has no spec.scheduler.service",
        ),
        ({**CLUSTER, "spec": {}}, "no spec.worker.spec.containers, spec.scheduler.spec.containers"),
    ],
    ids=["dask-job", "old-version", "configmap", "list", "no-service", "no-pods"],
)
def test_a_spec_that_is_not_a_dask_cluster_is_a_config_error(
    doc: Any, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _spec_file(tmp_path, doc)
    monkeypatch.setenv(CLUSTER_SPEC_ENV, str(path))
    with pytest.raises(ConfigError) as raised, engine_cluster():
        pytest.fail("no cluster from a spec that is not a DaskCluster")
    assert str(path) in str(raised.value)
    assert message in str(raised.value)


def test_each_run_names_its_cluster_and_points_the_scheduler_service_at_it(tmp_path: Path) -> None:
    template = load_cluster_spec(_spec_file(tmp_path, CLUSTER))
    named = named_cluster_spec(template, "engage-dask-0a1b2c3d")
    assert named["metadata"]["name"] == "engage-dask-0a1b2c3d"
    assert named["spec"]["scheduler"]["service"]["selector"] == {
        "dask.org/cluster-name": "engage-dask-0a1b2c3d",
        "dask.org/component": "scheduler",
    }
    assert template == CLUSTER  # the mounted template is left as it was


def test_an_unknown_namespace_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engage_components import _dask

    monkeypatch.setenv(CLUSTER_SPEC_ENV, str(_spec_file(tmp_path, CLUSTER)))
    monkeypatch.setattr(_dask, "SERVICE_ACCOUNT_NAMESPACE", tmp_path / "no-token" / "namespace")
    with pytest.raises(ConfigError, match=f"set {NAMESPACE_ENV}"), engine_cluster():
        pytest.fail("no cluster without a namespace")


def test_an_unreachable_kubernetes_api_is_a_config_error_and_leaves_no_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kubeconfig naming a closed port on loopback: the step fails at once with what it could not reach,
    and the operator loop's thread is gone."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv(NAMESPACE_ENV, "kubeflow")
    monkeypatch.setenv(CLUSTER_SPEC_ENV, str(_spec_file(tmp_path, CLUSTER)))
    with pytest.raises(ConfigError, match="cannot reach the Kubernetes API"), engine_cluster():
        pytest.fail("no cluster without the API")
    assert not [t for t in threading.enumerate() if t.name == "engage-dask-operator"]
