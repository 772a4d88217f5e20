"""The chart's dask section (issue 20) with the real tools: helm renders it from
``charts/engage/ci/dask-values.yaml``; every DaskCluster (the ConfigMap's, as the step loads and names it,
and the long-running one) validates against the operator's own CRD schema shipped in dask_kubernetes; the
core objects against Kubernetes' schemas (kubernetes-validate); the Dask pods are Pod Security
"restricted" and their commands parse with Dask's own CLI; the Role grants what KubeCluster calls; the
network policies select the Dask pods; values.schema.json refuses bad values. No cluster exists here:
nothing is applied."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s_support import (
    CHART,
    CHART_VALUES,
    documents,
    helm_template,
    restricted_problems,
    run,
    tool,
)

DASK = CHART / "ci" / "dask-values.yaml"
INFRA = CHART / "ci" / "infra-values.yaml"
CRD = (
    Path(__import__("dask_kubernetes").__file__).parent
    / "operator/deployment/helm/dask-kubernetes-operator/crds/daskcluster.yaml"
)
#: what dask_kubernetes 2026.3.0's KubeCluster asks of the API while engine_cluster starts, waits for and
#: deletes a cluster (operator/kubecluster/kubecluster.py, operator/networking.py, kr8s): (group,
#: resource) -> verbs. ``Obj.get(name)`` is a list with a field selector, ``exists``/``refresh`` a get.
KUBECLUSTER_CALLS = {
    ("kubernetes.dask.org", "daskclusters"): {"create", "get", "list", "delete"},
    ("kubernetes.dask.org", "daskworkergroups"): {"list"},  # _watch_component_status
    ("", "pods"): {"get", "list"},  # wait_for_scheduler, Pod.ready
    ("", "services"): {"get", "list"},  # wait_for_service, get_scheduler_address
    ("", "pods/log"): {"get"},  # the scheduler's log when it crash-loops
}
KUBECLUSTER_VERSION = "2026.3.0"


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(DASK.read_text(encoding="utf-8"))["dask"]
    return loaded


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    return documents(helm_template(DASK, sets={"dask.cluster.persistent": "true"}))


@pytest.fixture(scope="module")
def crd_schema() -> Any:
    """The DaskCluster CRD's openAPIV3Schema, closed as the API server's strict field validation is: an
    unknown field below ``spec`` is an error (the API server would drop it silently)."""
    crd = yaml.safe_load(CRD.read_text(encoding="utf-8"))
    (version,) = (v for v in crd["spec"]["versions"] if v["name"] == "v1")
    schema: dict[str, Any] = copy.deepcopy(version["schema"]["openAPIV3Schema"])

    def close(node: Any) -> None:
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for child in node.values():
                close(child)
        elif isinstance(node, list):
            for child in node:
                close(child)

    close(schema["properties"]["spec"])
    import jsonschema

    # OpenAPI v3's schema objects are JSON Schema draft 4 with extensions (x-kubernetes-*, ignored here)
    return jsonschema.Draft4Validator(schema)


def _by(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = (d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)
    return found


def _clusters(docs: list[dict[str, Any]], tmp_path: Path) -> dict[str, dict[str, Any]]:
    """The ConfigMap's DaskCluster as a step starts it (loaded by engine_cluster's loader from the mounted
    file, named for one run) and the long-running one."""
    from engage_components._dask import load_cluster_spec, named_cluster_spec

    mounted = tmp_path / "daskcluster.yaml"
    mounted.write_text(_by(docs, "ConfigMap", "engage-dask-cluster")["data"]["daskcluster.yaml"])
    return {
        "per-run": named_cluster_spec(load_cluster_spec(mounted), "engage-dask-0a1b2c3d"),
        "persistent": _by(docs, "DaskCluster", "engage-dask"),
    }


def _pods(cluster: Mapping[str, Any]) -> dict[str, tuple[dict[str, str], dict[str, Any]]]:
    """component -> (the pod's labels as the operator sets them, pod spec)."""
    labels = cluster["metadata"].get("labels") or {}
    return {
        part: (
            {**labels, **(cluster["spec"][part].get("metadata") or {}).get("labels", {})},
            cluster["spec"][part]["spec"],
        )
        for part in ("scheduler", "worker")
    }


def test_off_by_default_nothing_of_dask_is_rendered() -> None:
    for path in CHART_VALUES:
        if path == DASK:
            continue
        docs = documents(helm_template(path))
        assert not [d["metadata"]["name"] for d in docs if "dask" in d["metadata"]["name"]], path.name
        assert "DaskCluster" not in {d["kind"] for d in docs}, path.name


def test_on_it_renders_the_spec_rbac_policies_and_cluster_in_the_pipelines_namespace(
    rendered: list[dict[str, Any]], values: dict[str, Any]
) -> None:
    import kubernetes_validate

    dask = [d for d in rendered if "dask" in d["metadata"]["name"]]
    assert {(d["kind"], d["metadata"]["name"]) for d in dask} == {
        ("ConfigMap", "engage-dask-cluster"),
        ("Role", "engage-dask"),
        ("RoleBinding", "engage-dask"),
        ("NetworkPolicy", "engage-dask-ingress"),
        ("NetworkPolicy", "engage-dask-egress"),
        ("DaskCluster", "engage-dask"),
    }
    assert {d["metadata"]["namespace"] for d in dask} == {values["namespace"]}
    for doc in dask:
        if doc["kind"] != "DaskCluster":
            kubernetes_validate.validate(doc, "1.33", strict=True)
    # without the long-running cluster and without network policies: neither
    docs = documents(helm_template(DASK, sets={"networkPolicy.enabled": "false"}))
    assert {d["kind"] for d in docs if "dask" in d["metadata"]["name"]} == {
        "ConfigMap",
        "Role",
        "RoleBinding",
    }


def test_every_dask_cluster_meets_the_operators_crd(
    rendered: list[dict[str, Any]], crd_schema: Any, tmp_path: Path
) -> None:
    import jsonschema

    clusters = _clusters(rendered, tmp_path)
    for name, cluster in clusters.items():
        assert (cluster["apiVersion"], cluster["kind"]) == ("kubernetes.dask.org/v1", "DaskCluster"), name
        crd_schema.validate(cluster)
    assert clusters["persistent"]["spec"]["idleTimeout"] == 0  # kept up
    assert clusters["per-run"]["spec"]["idleTimeout"] == 1800  # reaped if its step died
    # the Service of each picks its own cluster's scheduler
    for name, cluster in clusters.items():
        selector = cluster["spec"]["scheduler"]["service"]["selector"]
        assert selector == {
            "dask.org/cluster-name": cluster["metadata"]["name"],
            "dask.org/component": "scheduler",
        }, name
    # the check has teeth: a misspelt field fails it
    broken = copy.deepcopy(clusters["per-run"])
    broken["spec"]["worker"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(jsonschema.ValidationError, match="imagePullPolicyy"):
        crd_schema.validate(broken)


def test_the_dask_pods_are_restricted_sized_and_run_commands_dask_takes(
    rendered: list[dict[str, Any]], values: dict[str, Any], tmp_path: Path
) -> None:
    import click
    from distributed.cli.dask_scheduler import main as scheduler_cli
    from distributed.cli.dask_worker import main as worker_cli

    clis = {"scheduler": scheduler_cli, "worker": worker_cli}
    for name, cluster in _clusters(rendered, tmp_path).items():
        for part, (_, pod) in _pods(cluster).items():
            where = f"{name}/{part}"
            assert restricted_problems(where, pod) == []
            assert pod["automountServiceAccountToken"] is False, where
            assert pod["serviceAccountName"] == values["podServiceAccount"], where
            assert pod["nodeSelector"] == values["nodeSelector"], where
            (container,) = pod["containers"]
            assert container["resources"]["requests"], where
            assert container["resources"]["limits"], where
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"], where
            assert container["command"] == ["dask", part], where
            try:
                ctx = clis[part].make_context(f"dask {part}", list(container["args"]))
            except click.ClickException as e:
                pytest.fail(f"{where}: {e.format_message()}")
            if part == "worker":
                assert ctx.params["local_directory"] == "/tmp/dask"  # on the emptyDir
                assert ctx.params["scheduler"] is None  # DASK_SCHEDULER_ADDRESS, set by the operator
                assert ctx.params["nthreads"] == values["worker"]["threads"]
                assert ctx.params["worker_port"] == "8789"
                assert container["resources"] == values["worker"]["resources"]
            else:
                assert int(ctx.params["port"]) == 8786
    # a flag Dask does not take fails the parse (dask worker passes unknown options on to --preload
    # modules, and there are none)
    with pytest.raises(click.UsageError):
        worker_cli.make_context("dask worker", ["--nthread", "2"])


def test_the_role_grants_every_verb_kubecluster_uses_to_the_pipelines_account(
    rendered: list[dict[str, Any]], values: dict[str, Any]
) -> None:
    import dask_kubernetes

    # KUBECLUSTER_CALLS was read from this version's source: re-read it when dask-kubernetes changes
    assert dask_kubernetes.__version__ == KUBECLUSTER_VERSION
    role = _by(rendered, "Role", "engage-dask")
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    for target, verbs in KUBECLUSTER_CALLS.items():
        assert verbs <= granted.get(target, set()), f"{target}: missing {verbs - granted.get(target, set())}"
    assert not any("*" in v or "*" in r for (_, r), v in granted.items())
    assert not [t for t in granted if t[1] in {"secrets", "pods/exec", "pods/portforward"}]
    binding = _by(rendered, "RoleBinding", "engage-dask")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "engage-dask",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": values["serviceAccount"], "namespace": values["namespace"]}
    ]


def test_the_network_policies_select_the_dask_pods_and_admit_the_step(
    rendered: list[dict[str, Any]], values: dict[str, Any], tmp_path: Path
) -> None:
    ingress = _by(rendered, "NetworkPolicy", "engage-dask-ingress")["spec"]
    egress = _by(rendered, "NetworkPolicy", "engage-dask-egress")["spec"]
    for name, cluster in _clusters(rendered, tmp_path).items():
        for part, (labels, _) in _pods(cluster).items():
            for policy in (ingress, egress):
                assert policy["podSelector"]["matchLabels"].items() <= labels.items(), f"{name}/{part}"
    peers, client, operator, prometheus = ingress["ingress"]
    assert "ports" not in peers  # each other on any port: nanny, worker, xgboost's collective
    assert client["from"] == [
        {"podSelector": {"matchLabels": values.get("clientPodLabels", {"engage.dev/dask-client": "true"})}}
    ]
    # the step reaches the scheduler's comm port and the workers' port, as the pods declare them
    cluster = _clusters(rendered, tmp_path)["per-run"]
    declared = {
        p["containerPort"]
        for part in ("scheduler", "worker")
        for p in cluster["spec"][part]["spec"]["containers"][0]["ports"]
        if p["name"] in {"tcp-comm", "tcp-worker"}
    }
    assert {p["port"] for p in client["ports"]} == declared == {8786, 8789}
    assert operator["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "dask-operator"
    }
    assert {p["port"] for p in prometheus["ports"]} == {8787, 8788}
    dns, store = egress["egress"][1:]
    assert dns["ports"][0] == {"protocol": "UDP", "port": 53}
    assert [peer["ipBlock"]["cidr"] for peer in store["to"]] == values["storageCIDRs"]
    assert store["ports"] == [{"protocol": "TCP", "port": 443}]


BAD_VALUES = [
    ({"dask.worker.replicas": "0"}, "at '/dask/worker/replicas': minimum: got 0, want 1"),
    ({"dask.worker.threads": "two"}, "at '/dask/worker/threads'"),
    ({"dask.image": "ghcr.io/engage-ml/engage-components"}, "at '/dask/image'"),
    ({"dask.cluster.name": "Engage_Dask"}, "at '/dask/cluster/name'"),
    (
        {"dask.cluster.name": "engage-dask-cluster-of-the-customers-team"},
        "at '/dask/cluster/name': maxLength",
    ),
    ({"dask.workers": "4"}, "at '/dask': additional properties 'workers' not allowed"),
    ({"dask.namespace": "Kubeflow"}, "at '/dask/namespace'"),
    ({"dask.podServiceAccount": "Pipeline_Runner"}, "at '/dask/podServiceAccount'"),
    ({"dask.worker.resources.limits.memory": "lots"}, "at '/dask/worker/resources/limits/memory'"),
    ({"dask.idleTimeoutSeconds": "-1"}, "at '/dask/idleTimeoutSeconds': minimum: got -1, want 0"),
]


@pytest.mark.parametrize(("sets", "message"), BAD_VALUES, ids=[m.split("'")[1] for _, m in BAD_VALUES])
def test_bad_dask_values_fail_with_the_schemas_message(sets: dict[str, str], message: str) -> None:
    command = [tool("helm"), "template", "engage", str(CHART), "-f", str(DASK)]
    for key, value in sets.items():
        command += ["--set", f"{key}={value}"]
    done = run(command)
    assert done.returncode != 0
    assert "values don't meet the specifications of the schema" in done.stderr
    assert message in done.stderr, done.stderr
