"""engage_serving.deploy without a cluster: the rendered InferenceService, its validation, the settings' bounds,
and the apply errors that can happen for real here (no kubeconfig, no such context, no API server)."""

from __future__ import annotations

import copy
import logging
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from engage.errors import ConfigError, EngageError
from engage_serving.deploy import (
    CONTAINER_NAME,
    MODEL_DIR,
    SERVER_FLAGS,
    DeployError,
    DeploySettings,
    apply_inference_service,
    explainer_args,
    merge_patch,
    predictor_args,
    render_inference_service,
    to_yaml,
    validate_inference_service,
    version_ids,
)

HEX = "0123456789abcdef" * 4
VERSION = f"sha256:{HEX}"
STORAGE = "s3://engage-models/customers/versions/0123456789ab/model"


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    return render_inference_service(VERSION, STORAGE, DeploySettings(service_account="engage-serving"))


#: every server checks the model's signature against the mounted public keys (engage.signing)
SIGNING_ENV = {"ENGAGE_SIGNING_PUBLIC_KEYS_FILE": "/etc/engage/signing", "ENGAGE_SIGNING_REQUIRED": "true"}


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"]}


def test_predictor_is_our_container_with_the_storage_uri(manifest: dict[str, Any]) -> None:
    predictor = manifest["spec"]["predictor"]
    (container,) = predictor["containers"]
    assert container["name"] == CONTAINER_NAME == "kserve-container"
    assert _env(container) == {"STORAGE_URI": STORAGE, **SIGNING_ENV}
    assert container["command"] == ["python", "-m", "engage_serving.predictor"]
    assert container["args"] == ["--model_name", "engage", "--model_dir", MODEL_DIR]
    assert container["image"].startswith("ghcr.io/engage-ml/engage-predictor:")
    assert container["resources"] == {
        "limits": {"cpu": "1", "memory": "2Gi"},
        "requests": {"cpu": "500m", "memory": "1Gi"},
    }
    assert predictor["minReplicas"] == 1
    assert predictor["maxReplicas"] == 3
    assert predictor["serviceAccountName"] == "engage-serving"


def test_logger_posts_to_the_drift_detector_and_canary_splits(manifest: dict[str, Any]) -> None:
    predictor = manifest["spec"]["predictor"]
    assert predictor["logger"] == {
        "mode": "all",
        "url": "http://engage-drift-detector.engage.svc.cluster.local/",
    }
    assert predictor["canaryTrafficPercent"] == 10


def test_explainer_is_a_custom_container_on_the_same_model(manifest: dict[str, Any]) -> None:
    (container,) = manifest["spec"]["explainer"]["containers"]
    assert container["name"] == CONTAINER_NAME
    assert container["command"] == ["python", "-m", "engage_serving.explainer"]
    # the whole version folder: the model and the drift reference (its background rows)
    assert _env(container) == {"STORAGE_URI": STORAGE.removesuffix("/model"), **SIGNING_ENV}
    assert container["image"].startswith("ghcr.io/engage-ml/engage-explainer:")
    assert "logger" not in manifest["spec"]["explainer"]


def test_labels_and_annotations_name_the_version(manifest: dict[str, Any]) -> None:
    meta = manifest["metadata"]
    assert manifest["apiVersion"] == "serving.kserve.io/v1beta1"
    assert manifest["kind"] == "InferenceService"
    assert (meta["name"], meta["namespace"]) == ("engage-customers", "engage")
    assert meta["labels"]["app.kubernetes.io/name"] == "engage-customers"
    assert meta["labels"]["app.kubernetes.io/part-of"] == "engage"
    assert meta["labels"]["engage.dev/model-version"] == HEX[:12]
    assert meta["annotations"]["engage.dev/model-version-full"] == VERSION
    assert manifest["spec"]["predictor"]["labels"]["app.kubernetes.io/component"] == "predictor"
    assert "status" not in manifest


def test_server_flags_are_written_in_one_place() -> None:
    settings = DeploySettings(model_name="churn")
    assert predictor_args(settings) == [
        SERVER_FLAGS["model_name"],
        "churn",
        SERVER_FLAGS["model_dir"],
        MODEL_DIR,
    ]
    assert explainer_args(settings)[:2] == [SERVER_FLAGS["model_name"], "churn"]


def test_the_servers_own_parsers_take_the_rendered_args(manifest: dict[str, Any]) -> None:
    """Flag drift: what the manifest passes is what the images' entrypoints accept (kserve's
    hack/verify-image-flag-drift.sh, as a test)."""
    from engage_serving._server import server_parser

    parsed = {}
    for component in ("predictor", "explainer"):
        container = manifest["spec"][component]["containers"][0]
        assert container["command"][:2] == ["python", "-m"]
        module = container["command"][2]
        assert module == f"engage_serving.{component}"
        parsed[component] = server_parser(module, "").parse_args(container["args"])
    assert parsed["predictor"].model_dir == MODEL_DIR
    assert parsed["predictor"].model_name == "engage"
    assert parsed["explainer"].model_dir == f"{MODEL_DIR}/model"
    assert parsed["explainer"].reference_dir == f"{MODEL_DIR}/drift_reference"
    predictor_uri = manifest["spec"]["predictor"]["containers"][0]["env"][0]["value"]
    explainer_uri = manifest["spec"]["explainer"]["containers"][0]["env"][0]["value"]
    assert predictor_uri == explainer_uri + "/model"


@pytest.mark.parametrize("percent", [0, 100])
def test_no_canary_split_at_0_or_100(percent: int) -> None:
    manifest = render_inference_service(HEX, STORAGE, DeploySettings(canary_traffic_percent=percent))
    assert "canaryTrafficPercent" not in manifest["spec"]["predictor"]
    assert "serviceAccountName" not in manifest["spec"]["predictor"]


def test_version_ids_accept_prefixed_or_bare_hex_only() -> None:
    assert version_ids(HEX) == version_ids(VERSION) == (VERSION, HEX[:12])
    for bad in ("sha256:abc", "latest", f"md5:{HEX}", HEX + "0"):
        with pytest.raises(ConfigError, match="is not a SHA-256"):
            version_ids(bad)


@pytest.mark.parametrize("uri", ["/tmp/models", "file:///tmp/models", "s3://", "ftp://host/x"])
def test_storage_uri_must_be_fetchable_by_the_storage_initializer(uri: str) -> None:
    with pytest.raises(ConfigError, match="storage initializer"):
        render_inference_service(VERSION, uri, DeploySettings())


def test_the_rendered_manifest_passes_validation(manifest: dict[str, Any]) -> None:
    assert validate_inference_service(manifest) == []


def test_validation_reports_unknown_fields_and_wrong_types_with_paths(manifest: dict[str, Any]) -> None:
    bad = copy.deepcopy(manifest)
    bad["spec"]["predictor"]["containers"][0]["imagePullPolicyy"] = "Always"
    bad["spec"]["predictor"]["minReplicas"] = "1"
    bad["spec"]["explainer"]["containers"][0]["env"][0]["value"] = 3
    bad["spec"]["predictor"]["logger"]["batchSize"] = True
    bad["spec"]["transformerr"] = {}
    problems = validate_inference_service(bad)
    assert (
        "spec.predictor.containers[0].imagePullPolicyy: unknown field (did you mean 'imagePullPolicy'?)"
        in problems
    )
    assert "spec.predictor.minReplicas: expected int, got str '1'" in problems
    assert "spec.explainer.containers[0].env[0].value: expected str, got int 3" in problems
    assert "spec.predictor.logger.batchSize: expected int, got bool True" in problems
    assert any(p.startswith("spec.transformerr: unknown field") for p in problems)
    assert len(problems) == 5


def test_validation_checks_the_invariants(manifest: dict[str, Any]) -> None:
    bad = copy.deepcopy(manifest)
    bad["metadata"]["name"] = "Engage_Customers"
    bad["metadata"]["labels"]["engage.dev/model-version"] = VERSION  # ':' and 71 characters
    bad["spec"]["predictor"]["canaryTrafficPercent"] = 101
    bad["spec"]["predictor"]["minReplicas"] = 5
    bad["kind"] = "Deployment"
    problems = validate_inference_service(bad)
    assert any(
        p.startswith("metadata.name: 'Engage_Customers' is not a valid InferenceService") for p in problems
    )
    assert any(p.startswith('metadata.labels["engage.dev/model-version"]') for p in problems)
    assert "spec.predictor.canaryTrafficPercent: 101 is outside 0..100" in problems
    assert "spec.predictor.minReplicas: 5 exceeds maxReplicas 3" in problems
    assert "kind: expected 'InferenceService', got 'Deployment'" in problems


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "Engage", "not a valid InferenceService name"),
        ("name", "1-engage", "starting with a letter"),
        ("name", "e" * 64, "at most 63"),
        ("namespace", "engage_ns", "DNS-1123 label"),
        ("canary_traffic_percent", 101, "less than or equal to 100"),
        ("canary_traffic_percent", -1, "greater than or equal to 0"),
        ("logger_mode", "everything", "'all', 'request' or 'response'"),
        ("drift_detector_url", "not a url", "URL"),
        ("cpu_request", "lots", "not a Kubernetes quantity"),
        ("service_account", "Engage SA", "service account"),
        ("max_replicas", 0, "greater than or equal to 1"),
    ],
)
def test_invalid_settings_are_refused(field: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        DeploySettings(**{field: value})


def test_settings_refuse_inconsistent_bounds() -> None:
    with pytest.raises(ValidationError, match=r"min_replicas \(4\) exceeds max_replicas \(3\)"):
        DeploySettings(min_replicas=4)
    with pytest.raises(ValidationError, match=r"memory_request \(4Gi\) exceeds memory_limit \(2Gi\)"):
        DeploySettings(memory_request="4Gi")
    assert DeploySettings(cpu_request="1000m", cpu_limit="1").cpu_request == "1000m"


def test_settings_come_from_engage_deploy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENGAGE_DEPLOY_NAMESPACE", "serving")
    monkeypatch.setenv("ENGAGE_DEPLOY_CANARY_TRAFFIC_PERCENT", "25")
    settings = DeploySettings()
    assert (settings.namespace, settings.canary_split) == ("serving", 25)
    with pytest.raises(ValidationError, match="frozen"):
        settings.namespace = "other"  # type: ignore[misc]


def test_to_yaml_round_trips_in_build_order(manifest: dict[str, Any]) -> None:
    text = to_yaml(manifest)
    assert yaml.safe_load(text) == manifest
    assert text.startswith("apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\n")


def test_merge_patch_removes_the_fields_a_new_version_leaves_out() -> None:
    manifest = render_inference_service(VERSION, STORAGE, DeploySettings(canary_traffic_percent=100))
    patch = merge_patch(manifest)
    assert patch["spec"]["predictor"]["canaryTrafficPercent"] is None
    assert patch["spec"]["explainer"]["serviceAccountName"] is None
    assert "canaryTrafficPercent" not in manifest["spec"]["predictor"]  # the manifest is not changed


# --- apply: the errors that can happen without a cluster ------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "local", "cluster": {"server": server}}],
                "users": [{"name": "tester", "user": {"token": "not-a-secret"}}],
                "contexts": [{"name": "local", "context": {"cluster": "local", "user": "tester"}}],
                "current-context": "local",
            }
        )
    )
    return path


def test_deploy_error_is_an_engage_error_answered_502() -> None:
    assert issubclass(DeployError, EngageError)
    assert DeployError.http_status == 502


def test_apply_names_a_missing_kubeconfig(manifest: dict[str, Any], tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "kubeconfig"
    with pytest.raises(DeployError, match=f"kubeconfig {missing} does not exist"):
        apply_inference_service(manifest, kubeconfig=missing)


def test_apply_names_an_unknown_context(manifest: dict[str, Any], tmp_path: Path) -> None:
    kubeconfig = _kubeconfig(tmp_path / "kubeconfig", "https://127.0.0.1:6443")
    with pytest.raises(DeployError, match=r"kubeconfig .*kubeconfig: .*staging"):
        apply_inference_service(manifest, kubeconfig=kubeconfig, context="staging")


def test_apply_says_the_api_cannot_be_reached_and_fails_fast(
    manifest: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = _closed_port()
    kubeconfig = _kubeconfig(tmp_path / "kubeconfig", f"https://127.0.0.1:{port}")
    started = time.monotonic()
    with (
        caplog.at_level(logging.WARNING, logger="urllib3"),
        pytest.raises(
            DeployError, match=rf"^cannot reach the Kubernetes API at https://127\.0\.0\.1:{port}: "
        ),
    ):
        apply_inference_service(manifest, kubeconfig=kubeconfig)
    assert time.monotonic() - started < 5
    assert not [r for r in caplog.records if "Retrying" in r.getMessage()]  # urllib3 retries are off


def test_apply_refuses_an_invalid_manifest_before_any_call(manifest: dict[str, Any], tmp_path: Path) -> None:
    bad = copy.deepcopy(manifest)
    bad["spec"]["predictor"]["replicas"] = 2
    with pytest.raises(ConfigError, match=r"spec\.predictor\.replicas: unknown field"):
        apply_inference_service(bad, kubeconfig=tmp_path / "never-read")


@pytest.mark.skipif(
    Path("/var/run/secrets/kubernetes.io/serviceaccount/token").exists(), reason="runs inside a pod"
)
def test_apply_in_a_pod_without_a_service_account_token_says_so(
    manifest: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    with pytest.raises(DeployError, match=r"^the pod's service account: .*token"):
        apply_inference_service(manifest, kubeconfig=None)


def test_pods_are_restricted_with_a_writable_tmp_only() -> None:
    manifest = render_inference_service(HEX, STORAGE, DeploySettings())
    for component in ("predictor", "explainer"):
        spec = manifest["spec"][component]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["volumes"] == [
            {"name": "tmp", "emptyDir": {"sizeLimit": "512Mi"}},
            # pragma: allowlist nextline secret
            {"name": "signing-keys", "secret": {"secretName": "engage-signing-public-keys"}},
        ]
        container = spec["containers"][0]
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
        }
        assert container["volumeMounts"] == [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "signing-keys", "mountPath": "/etc/engage/signing", "readOnly": True},
        ]


def test_mode_autoscaling_and_the_namespaces_own_drift_detector() -> None:
    settings = DeploySettings(
        namespace="engage-dev", deployment_mode="Standard", scale_metric="cpu", scale_target=70
    )
    manifest = render_inference_service(HEX, STORAGE, settings)
    assert manifest["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    predictor = manifest["spec"]["predictor"]
    assert (predictor["scaleMetric"], predictor["scaleTarget"]) == ("cpu", 70)
    assert predictor["logger"]["url"] == "http://engage-drift-detector.engage-dev.svc.cluster.local/"
    default = render_inference_service(HEX, STORAGE, DeploySettings())
    assert "serving.kserve.io/deploymentMode" not in default["metadata"]["annotations"]
    assert "scaleMetric" not in default["spec"]["predictor"]


def test_a_scale_target_needs_its_metric_and_the_chart_its_own_detector() -> None:
    from engage_serving.deploy import chart_values

    with pytest.raises(ValidationError, match="scale_target needs scale_metric"):
        DeploySettings(scale_target=70)
    elsewhere = DeploySettings(drift_detector_url="http://drift.other.svc/")
    with pytest.raises(ConfigError, match="the chart posts to its own drift detector"):
        chart_values(HEX, STORAGE, elsewhere)


def test_the_explainer_gets_the_version_folder_with_or_without_a_trailing_slash() -> None:
    for uri in (STORAGE, STORAGE + "/"):
        manifest = render_inference_service(HEX, uri, DeploySettings())
        assert manifest["spec"]["explainer"]["containers"][0]["env"][0]["value"] == STORAGE.removesuffix(
            "/model"
        )
