"""charts/engage and manifests/ with the real tools: helm lint / template, kubectl kustomize,
kubernetes-validate, checkov; the chart's InferenceService equal to `engage deploy`'s; every pod under
Pod Security "restricted"; every server container's args and env accepted by that server's own parser
and settings."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from engage_serving.deploy import (
    DeploySettings,
    chart_values,
    render_inference_service,
    validate_inference_service,
)
from tests.k8s_support import (
    CHART,
    CHART_VALUES,
    OVERLAYS,
    ROOT,
    all_restricted_problems,
    containers,
    documents,
    env_problems,
    helm_template,
    kustomize,
    rendered_sources,
    run,
    server_parsers,
    tool,
)
from tests.monitoring_support import binary, free_port, wait_ok

#: the infrastructure-only value set (no InferenceService, no governance): what the other sets build on
INFRA_VALUES = CHART / "ci" / "infra-values.yaml"
HEX = "5e" * 32
STORAGE = f"s3://engage-models/customers/versions/{HEX}/model"
#: kinds Kubernetes itself defines: checked against its OpenAPI schemas by kubernetes-validate
CORE_KINDS = {
    "ConfigMap",
    "Deployment",
    "Job",
    "CronJob",
    "Namespace",
    "NetworkPolicy",
    "PersistentVolumeClaim",
    "PodDisruptionBudget",
    "Role",
    "RoleBinding",
    "Secret",
    "Service",
    "ServiceAccount",
}
#: custom resources and what checks them
CUSTOM_KINDS = {
    ("serving.kserve.io/v1beta1", "InferenceService"),  # the kserve SDK's typed models
    ("monitoring.coreos.com/v1", "PodMonitor"),  # shape only (no schema offline)
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("security.istio.io/v1", "PeerAuthentication"),
}


@pytest.fixture(scope="module")
def sources() -> dict[str, list[dict[str, Any]]]:
    return rendered_sources()


@pytest.mark.parametrize("values", CHART_VALUES, ids=lambda p: p.name)
def test_helm_lint_strict(values: Path) -> None:
    done = run([tool("helm"), "lint", "--strict", str(CHART), "-f", str(values)])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


def test_every_values_file_and_overlay_renders(sources: dict[str, list[dict[str, Any]]]) -> None:
    assert {s.split(":")[0] for s in sources} == {"chart", "overlay"}
    assert {p.name for p in OVERLAYS} >= {"kind", "dev", "prod"}
    for name, docs in sources.items():
        kinds = {d["kind"] for d in docs}
        assert {"Deployment", "Service"} <= kinds, name


def test_core_objects_meet_the_kubernetes_schemas(sources: dict[str, list[dict[str, Any]]]) -> None:
    import kubernetes_validate

    checked = 0
    problems = []
    for name, docs in sources.items():
        for doc in docs:
            if doc["kind"] in CORE_KINDS:
                try:
                    kubernetes_validate.validate(doc, "1.33", strict=True)
                except kubernetes_validate.ValidationError as e:
                    problems.append(f"{name} {doc['kind']}/{doc['metadata']['name']}: {e.message}")
                checked += 1
            else:
                assert (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS, f"{name}: unexpected {doc['kind']}"
    assert not problems, "\n".join(problems)
    assert checked > 30


def test_a_misspelt_field_fails_kubernetes_validate() -> None:
    import kubernetes_validate

    deployment = next(d for d in documents(helm_template(INFRA_VALUES)) if d["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError, match="imagePullPolicyy"):
        kubernetes_validate.validate(deployment, "1.33", strict=True)


def test_inference_services_match_the_kserve_sdk(sources: dict[str, list[dict[str, Any]]]) -> None:
    isvcs = [d for docs in sources.values() for d in docs if d["kind"] == "InferenceService"]
    assert len(isvcs) >= 2
    for isvc in isvcs:
        assert validate_inference_service(isvc) == []


def test_every_pod_is_restricted_with_a_read_only_root(sources: dict[str, list[dict[str, Any]]]) -> None:
    pods = 0
    for name, docs in sources.items():
        assert all_restricted_problems(docs) == [], name
        pods += sum(1 for d in docs if d["kind"] in {"Deployment", "Job", "InferenceService"})
    assert pods >= len(sources)


def test_an_overlay_that_drops_the_security_context_fails(tmp_path: Path) -> None:
    overlay = tmp_path / "careless"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": [os.path.relpath(ROOT / "manifests" / "overlays" / "dev", overlay)],
                "patches": [
                    {
                        "target": {"kind": "Deployment", "name": "engage-drift-detector"},
                        "patch": "- op: remove\n  path: /spec/template/spec/containers/0/securityContext",
                    }
                ],
            }
        )
    )
    problems = all_restricted_problems(documents(kustomize(overlay)))
    assert (
        "Deployment/engage-drift-detector/drift-detector: allowPrivilegeEscalation is not false" in problems
    )
    assert "Deployment/engage-drift-detector/drift-detector: readOnlyRootFilesystem is not true" in problems


def test_server_args_and_env_are_the_servers_own(sources: dict[str, list[dict[str, Any]]]) -> None:
    """Flag drift (kserve's hack/verify-image-flag-drift.sh as a test): every server container of the
    chart and every overlay passes args its server's own parser takes, and env its settings take."""
    parsers = server_parsers()
    seen: set[str] = set()
    for name, docs in sources.items():
        for where, container in containers(docs):
            command = container.get("command") or []
            if command[:2] != ["python", "-m"]:
                continue
            module = command[2]
            assert module in parsers, f"{name} {where}: unknown server {module}"
            _, unknown = parsers[module]().parse_known_args(container.get("args") or [])
            assert unknown == [], f"{name} {where}: flags its parser does not take: {unknown}"
            assert env_problems(f"{name} {where}", container.get("env") or []) == []
            seen.add(module)
    assert seen == set(parsers)


def test_a_renamed_flag_or_setting_fails_the_contract() -> None:
    parser = server_parsers()["engage_serving.drift_detector"]()
    _, unknown = parser.parse_known_args(["--registry", "s3://x", "--windowsize", "10"])
    assert unknown == ["--windowsize", "10"]
    problems = env_problems("d", [{"name": "ENGAGE_DRIFT_WINDOW", "value": "10"}])
    assert problems == ["d: env ENGAGE_DRIFT_WINDOW: DriftSettings has no field 'window'"]
    assert env_problems("d", [{"name": "ENGAGE_DRIFT_WINDOW_SIZE", "value": "-1"}])
    assert env_problems("d", [{"name": "DRIFT_BACKEND", "value": "scipy"}])


SETTINGS = {
    "defaults": {},
    "standard-autoscaled": {
        "deployment_mode": "Standard",
        "canary_traffic_percent": 0,
        "scale_metric": "cpu",
        "scale_target": 70,
        "min_replicas": 2,
        "max_replicas": 6,
        "service_account": "engage-serving",
        "node_selector": {"engage.dev/pool": "serving"},
        "tolerations": [{"key": "engage.dev/pool", "value": "serving", "effect": "NoSchedule"}],
    },
    "knative-canary": {
        "deployment_mode": "Knative",
        "canary_traffic_percent": 25,
        "logger_mode": "request",
        "min_replicas": 0,
        "cpu_request": "250m",
        "cpu_limit": "2",
        "memory_request": "512Mi",
        "memory_limit": "4Gi",
        "tmp_size_limit": "1Gi",
        "predictor_image": "registry.example.org/p@sha256:" + "1" * 64,
    },
    "other-namespace": {"namespace": "engage-dev", "name": "churn-only", "model_name": "churn"},
}


@pytest.mark.parametrize("case", SETTINGS)
def test_the_chart_renders_engage_deploys_inference_service(case: str, tmp_path: Path) -> None:
    settings = DeploySettings(**SETTINGS[case])
    expected = render_inference_service(HEX, STORAGE, settings)
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(chart_values(HEX, STORAGE, settings)))
    rendered = documents(helm_template(INFRA_VALUES, values, namespace=settings.namespace))
    (isvc,) = (d for d in rendered if d["kind"] == "InferenceService")
    assert isvc == expected


BAD_VALUES = [
    (
        {"inferenceService.replicas": "2"},
        "at '/inferenceService': additional properties 'replicas' not allowed",
    ),
    ({"inferenceService.minReplicas": "-1"}, "at '/inferenceService/minReplicas': minimum: got -1, want 0"),
    ({"driftDetector.replicas": "-2"}, "at '/driftDetector/replicas': minimum: got -2, want 0"),
    (
        {"inferenceService.canaryTrafficPercent": "101"},
        "at '/inferenceService/canaryTrafficPercent': maximum: got 101, want 100",
    ),
    ({"images.predictor": "ghcr.io/engage-ml/engage-predictor"}, "at '/images/predictor'"),
    ({"images.explainer": "engage-explainer:"}, "at '/images/explainer'"),
    ({"inferenceService.enabled": "true"}, "at '/inferenceService/model/version': minLength"),
    ({"inferenceService.model.version": "latest"}, "at '/inferenceService/model/version'"),
    ({"inferenceService.model.storageUri": "/local/path"}, "at '/inferenceService/model/storageUri'"),
    ({"inferenceService.resources.limits.cpu": "lots"}, "at '/inferenceService/resources/limits/cpu'"),
    ({"driftDetector.registry.pvc": ""}, "at '/driftDetector/registry': 'anyOf' failed"),
]


@pytest.mark.parametrize(("sets", "message"), BAD_VALUES, ids=[m.split("'")[1] for _, m in BAD_VALUES])
def test_bad_values_fail_with_the_schemas_message(sets: dict[str, str], message: str) -> None:
    command = [tool("helm"), "template", "engage", str(CHART), "-f", str(INFRA_VALUES)]
    for key, value in sets.items():
        command += ["--set", f"{key}={value}"]
    done = run(command)
    assert done.returncode != 0
    assert "values don't meet the specifications of the schema" in done.stderr
    assert message in done.stderr


@pytest.mark.slow
def test_checkov_finds_no_unexplained_failure(
    sources: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    """checkov over everything rendered: no failed check; every skip carries its reason in the manifest
    (``checkov.io/skip<n>: CKV_...=<reason>``)."""
    uv = shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")
    for name, docs in sources.items():
        (tmp_path / f"{name.replace(':', '-')}.yaml").write_text(yaml.safe_dump_all(docs))
    done = subprocess.run(
        [uv, "tool", "run", "--from", "checkov==3.3.30", "checkov", "-d", str(tmp_path),
         "--framework", "kubernetes", "--output", "json", "--compact"],
        capture_output=True, text=True, check=False, timeout=600,
        # offline: no download of Prisma Cloud's guideline mappings (BC_* ids are not used here)
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )  # fmt: skip
    assert done.stdout.strip(), done.stderr[-2000:]
    report = json.loads(done.stdout)
    report = report[0] if isinstance(report, list) else report
    failed = report["results"]["failed_checks"]
    assert failed == [], "\n".join(f"{c['check_id']} {c['resource']}: {c['check_name']}" for c in failed)
    assert report["summary"]["passed"] > 100
    skipped = report["results"]["skipped_checks"]
    # CKV_K8S_35 (secrets as files): the governance pods read the database URL and password from env
    assert {c["check_id"] for c in skipped} == {"CKV_K8S_43", "CKV_K8S_15", "CKV_K8S_35"}
    for check in skipped:
        reason = (check["check_result"].get("suppress_comment") or "").strip()
        assert len(reason) > 20, f"{check['check_id']} on {check['resource']} skipped without a reason"


def test_the_chart_ships_the_rules_and_dashboards_of_monitoring() -> None:
    """One source: the PrometheusRule's spec is monitoring/prometheus's rule file, each dashboard ConfigMap
    holds monitoring/grafana's JSON (the chart's files/ are generated copies, checked by make check)."""
    docs = documents(helm_template(INFRA_VALUES, ROOT / "charts/engage/ci/model-values.yaml"))
    rules = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "PrometheusRule"}
    sources = sorted((ROOT / "monitoring" / "prometheus").glob("*.rules.yml"))
    assert len(rules) == len(sources) >= 1
    for path in sources:
        assert rules[f"engage-{path.name.removesuffix('.rules.yml')}"] == yaml.safe_load(path.read_text())
    boards = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    grafana = sorted((ROOT / "monitoring" / "grafana").glob("*.json"))
    assert len(grafana) == 4
    for path in grafana:
        board = boards[f"engage-dashboard-{path.stem}"]
        assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert json.loads(board["data"][path.name]) == json.loads(path.read_text())


def test_the_pod_monitor_labels_each_series_with_its_revision(tmp_path: Path) -> None:
    """The PodMonitor's relabelings, as the Prometheus Operator hands them to Prometheus, run in a real
    Prometheus over targets carrying a stable, a canary and a raw deployment's pod's Kubernetes meta labels:
    each gets the ``revision``, ``model_version`` and ``component`` labels it has, which ``engage rollout
    --stable/--canary`` select by."""
    docs = documents(helm_template(INFRA_VALUES, ROOT / "charts/engage/ci/model-values.yaml"))
    (monitor,) = [d for d in docs if d["kind"] == "PodMonitor"]
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    relabel_configs = [
        {"source_labels": r["sourceLabels"], "target_label": r["targetLabel"]}
        for r in endpoint["relabelings"]
    ]
    assert {r["target_label"] for r in relabel_configs} == {"revision", "model_version", "component"}
    meta = "__meta_kubernetes_pod_label_"
    pods = {
        "127.0.0.1:9": {f"{meta}serving_knative_dev_revision": "engage-customers-predictor-00004",
                        f"{meta}engage_dev_model_version": "5e5e5e5e5e5e", f"{meta}app_kubernetes_io_component": "predictor"},
        "127.0.0.1:10": {f"{meta}serving_knative_dev_revision": "engage-customers-predictor-00005",
                         f"{meta}engage_dev_model_version": "6f6f6f6f6f6f", f"{meta}app_kubernetes_io_component": "predictor"},
        "127.0.0.1:11": {f"{meta}app_kubernetes_io_component": "explainer"},  # raw deployment: no revision
    }  # fmt: skip
    (tmp_path / "pods.json").write_text(
        json.dumps([{"targets": [target], "labels": labels} for target, labels in pods.items()])
    )
    config = {
        "global": {"scrape_interval": "1h"},
        "scrape_configs": [{"job_name": "engage-inference", "relabel_configs": relabel_configs,
                            "file_sd_configs": [{"files": [str(tmp_path / "pods.json")]}]}],
    }  # fmt: skip
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    address = f"127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [binary("prometheus", package="prometheus"), f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address={address}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_ok(f"http://{address}/-/ready", proc=process)
        targets: list[dict[str, Any]] = []
        for _ in range(50):  # file discovery reports the targets shortly after start
            targets = httpx.get(f"http://{address}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
            if len(targets) == len(pods):
                break
            time.sleep(0.2)
    finally:
        process.terminate()
        process.wait(timeout=10)
    labels = {t["labels"]["instance"]: t["labels"] for t in targets}
    assert labels["127.0.0.1:9"]["revision"] == "engage-customers-predictor-00004"
    assert labels["127.0.0.1:10"]["revision"] == "engage-customers-predictor-00005"
    assert labels["127.0.0.1:10"]["model_version"] == "6f6f6f6f6f6f"
    assert labels["127.0.0.1:10"]["component"] == "predictor"
    assert labels["127.0.0.1:11"] == {
        "instance": "127.0.0.1:11",
        "job": "engage-inference",
        "component": "explainer",
    }
