"""The InferenceService of one model version, built from the kserve SDK's typed models and checked
against them.

Building from the SDK's classes (not from hand-written dicts) means a misspelt field fails in Python;
:func:`validate_inference_service` walks the serialized manifest against the same classes' schemas, so a
manifest edited by hand (or by a later change) is held to the CRD's field names and types before anything
reaches a cluster. kserve (~8 s to import) and kubernetes are imported inside the functions that use them.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any

import yaml

from engage import __version__
from engage.errors import ConfigError

from ._settings import DeploySettings

__all__ = [
    "API_VERSION",
    "CONTAINER_NAME",
    "DEPLOYMENT_MODE_ANNOTATION",
    "EXPLAINER_MODULE",
    "KIND",
    "MODEL_DIR",
    "PREDICTOR_MODULE",
    "RUN_AS",
    "SERVER_FLAGS",
    "SIGNING_KEYS_DIR",
    "TMP_VOLUME",
    "explainer_args",
    "predictor_args",
    "render_inference_service",
    "to_yaml",
    "validate_inference_service",
    "version_ids",
]

API_VERSION = "serving.kserve.io/v1beta1"
KIND = "InferenceService"
#: KServe's storage initializer downloads ``STORAGE_URI`` into this folder of the container named
#: :data:`CONTAINER_NAME` (an init container fills a shared volume mounted there).
MODEL_DIR = "/mnt/models"
CONTAINER_NAME = "kserve-container"
PREDICTOR_MODULE = "engage_serving.predictor"
EXPLAINER_MODULE = "engage_serving.explainer"
#: The uid and gid the images run as (``useradd --uid 10001`` in each Dockerfile).
RUN_AS = 10001
#: The emptyDir at ``/tmp``: the servers' only writable folder (read-only root filesystem).
TMP_VOLUME = "tmp"
#: The trusted public keys' Secret, mounted read-only here in every server: each loads only a version
#: signed by one of them (engage.signing; ``ENGAGE_SIGNING_REQUIRED``: the development key never counts).
SIGNING_VOLUME = "signing-keys"
SIGNING_KEYS_DIR = "/etc/engage/signing"
DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
#: The command-line flags the servers take: the one place their names are written. The servers' parsers
#: (a later issue) are tested against this mapping.
SERVER_FLAGS = {"model_name": "--model_name", "model_dir": "--model_dir", "reference_dir": "--reference_dir"}
#: URI schemes KServe's storage initializer can fetch from inside the cluster.
STORAGE_SCHEMES = frozenset({"s3", "gs", "pvc", "http", "https", "hf", "oci", "hdfs", "webhdfs"})

_HEX64 = re.compile(r"^(?:sha256:)?(?P<hex>[0-9a-f]{64})$")
_ISVC_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
#: Types the generated models name that are plain JSON values once serialized.
_SCALARS: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "datetime": (str,),
    "date": (str,),
    "V1Time": (str,),
    # resource quantities: "500m" or a bare number
    "ResourceQuantity": (str, int, float),
    "V1beta1MetricQuantity": (str, int, float),
}
_LIST = re.compile(r"^list\[(?P<item>.+)\]$")
_DICT = re.compile(r"^dict\((?P<key>[^,]+), (?P<value>.+)\)$")


def _server_args(settings: DeploySettings) -> list[str]:
    return [SERVER_FLAGS["model_name"], settings.model_name, SERVER_FLAGS["model_dir"], MODEL_DIR]


def predictor_args(settings: DeploySettings) -> list[str]:
    """Arguments of ``python -m engage_serving.predictor``: which model name to answer to, where the
    storage initializer put the bundle."""
    return _server_args(settings)


def explainer_args(settings: DeploySettings) -> list[str]:
    """Arguments of ``python -m engage_serving.explainer``: it loads the same bundle as the predictor,
    because exact TreeSHAP needs the trees themselves, not only the predictor's answers, and the
    version's drift reference as its background rows; its storage URI is the whole version folder."""
    return [
        SERVER_FLAGS["model_name"], settings.model_name,
        SERVER_FLAGS["model_dir"], f"{MODEL_DIR}/model",
        SERVER_FLAGS["reference_dir"], f"{MODEL_DIR}/drift_reference",
    ]  # fmt: skip


def version_folder_uri(storage_uri: str) -> str:
    """The registry version folder of a model's storage URI (``…/versions/<hex>/model`` -> ``…/<hex>``)."""
    trimmed = storage_uri.rstrip("/")
    return trimmed[: -len("/model")] if trimmed.endswith("/model") else storage_uri


def version_ids(version_id: str) -> tuple[str, str]:
    """``(full, short)`` of a model version: ``sha256:<hex>`` and the first 12 hex digits.

    The short form fits a label value (at most 63 characters); the full form goes into an annotation.
    Accepts ``sha256:<64 hex>`` (how :func:`engage.training.bundle_version` writes it) or the bare hex.
    """
    match = _HEX64.match(version_id.strip().lower())
    if match is None:
        raise ConfigError(f"model version {version_id!r} is not a SHA-256 (sha256:<64 hex digits>)")
    return f"sha256:{match['hex']}", match["hex"][:12]


def _check_storage_uri(storage_uri: str) -> str:
    scheme, sep, rest = storage_uri.partition("://")
    if not sep or not rest or scheme.lower() not in STORAGE_SCHEMES:
        schemes = ", ".join(f"{s}://" for s in sorted(STORAGE_SCHEMES))
        raise ConfigError(
            f"storage URI {storage_uri!r} cannot be fetched by KServe's storage initializer (one of: {schemes})"
        )
    return storage_uri


def _labels(settings: DeploySettings, short_id: str, component: str | None = None) -> dict[str, str]:
    labels = {
        "app.kubernetes.io/name": settings.name,
        "app.kubernetes.io/part-of": "engage",
        "app.kubernetes.io/managed-by": "engage",
        "engage.dev/model-version": short_id,
    }
    if component is not None:
        labels["app.kubernetes.io/component"] = component
    return labels


def _annotations(settings: DeploySettings, full_id: str) -> dict[str, str]:
    annotations = {"engage.dev/model-version-full": full_id, "engage.dev/engage-version": __version__}
    if settings.deployment_mode is not None:
        annotations[DEPLOYMENT_MODE_ANNOTATION] = settings.deployment_mode
    return annotations


def _resources(settings: DeploySettings) -> Any:
    from kubernetes.client import V1ResourceRequirements  # type: ignore[import-untyped]

    return V1ResourceRequirements(
        requests={"cpu": settings.cpu_request, "memory": settings.memory_request},
        limits={"cpu": settings.cpu_limit, "memory": settings.memory_limit},
    )


def _container(image: str, module: str, args: list[str], storage_uri: str, settings: DeploySettings) -> Any:
    """The ``kserve-container`` of a component: ``STORAGE_URI`` on it is what makes KServe's webhook add
    the storage initializer that downloads the model files to :data:`MODEL_DIR`. It runs as the image's
    unprivileged user with a read-only root filesystem and no capabilities (Pod Security "restricted");
    its only writable folder is the ``/tmp`` emptyDir. It verifies the model's signature against the
    public keys mounted at :data:`SIGNING_KEYS_DIR` before loading it."""
    from kubernetes.client import V1Capabilities, V1Container, V1EnvVar, V1SecurityContext, V1VolumeMount

    return V1Container(
        name=CONTAINER_NAME,
        image=image,
        command=["python", "-m", module],
        args=args,
        env=[
            V1EnvVar(name="STORAGE_URI", value=storage_uri),
            V1EnvVar(name="ENGAGE_SIGNING_PUBLIC_KEYS_FILE", value=SIGNING_KEYS_DIR),
            V1EnvVar(name="ENGAGE_SIGNING_REQUIRED", value="true"),
        ],
        resources=_resources(settings),
        security_context=V1SecurityContext(
            allow_privilege_escalation=False,
            capabilities=V1Capabilities(drop=["ALL"]),
            read_only_root_filesystem=True,
            run_as_non_root=True,
        ),
        volume_mounts=[
            V1VolumeMount(name=TMP_VOLUME, mount_path="/tmp"),  # nosec B108 # the pod's emptyDir mount path, no file made here
            V1VolumeMount(name=SIGNING_VOLUME, mount_path=SIGNING_KEYS_DIR, read_only=True),
        ],
    )


def _pod_fields(settings: DeploySettings, short_id: str, component: str) -> dict[str, Any]:
    """What the predictor and the explainer share beside their container: replicas, autoscaling, service
    account, labels, the pod's security context, the ``/tmp`` volume and the signing keys' Secret."""
    from kubernetes.client import (
        V1EmptyDirVolumeSource,
        V1PodSecurityContext,
        V1SeccompProfile,
        V1SecretVolumeSource,
        V1Toleration,
        V1Volume,
    )

    return {
        "min_replicas": settings.min_replicas,
        "max_replicas": settings.max_replicas,
        "scale_metric": settings.scale_metric,
        "scale_target": settings.scale_target,
        "service_account_name": settings.service_account,
        "node_selector": settings.node_selector or None,
        "tolerations": [V1Toleration(**t.manifest()) for t in settings.tolerations] or None,
        "labels": _labels(settings, short_id, component),
        "security_context": V1PodSecurityContext(
            run_as_non_root=True,
            run_as_user=RUN_AS,
            run_as_group=RUN_AS,
            fs_group=RUN_AS,
            seccomp_profile=V1SeccompProfile(type="RuntimeDefault"),
        ),
        "volumes": [
            V1Volume(name=TMP_VOLUME, empty_dir=V1EmptyDirVolumeSource(size_limit=settings.tmp_size_limit)),
            V1Volume(
                name=SIGNING_VOLUME,
                secret=V1SecretVolumeSource(secret_name=settings.signing_public_keys_secret),
            ),
        ],
    }


def _predictor(storage_uri: str, short_id: str, settings: DeploySettings) -> Any:
    from kserve.models import V1beta1LoggerSpec, V1beta1PredictorSpec

    container = _container(
        settings.predictor_image, PREDICTOR_MODULE, predictor_args(settings), storage_uri, settings
    )
    return V1beta1PredictorSpec(
        containers=[container],
        logger=V1beta1LoggerSpec(mode=settings.logger_mode, url=settings.logger_url),
        canary_traffic_percent=settings.canary_split,
        **_pod_fields(settings, short_id, "predictor"),
    )


def _explainer(storage_uri: str, short_id: str, settings: DeploySettings) -> Any:
    from kserve.models import V1beta1ExplainerSpec

    container = _container(
        settings.explainer_image,
        EXPLAINER_MODULE,
        explainer_args(settings),
        version_folder_uri(storage_uri),
        settings,
    )
    return V1beta1ExplainerSpec(containers=[container], **_pod_fields(settings, short_id, "explainer"))


def render_inference_service(version_id: str, storage_uri: str, settings: DeploySettings) -> dict[str, Any]:
    """The InferenceService serving model version ``version_id`` from ``storage_uri``, as the dict the
    CRD expects (camelCase keys), checked by :func:`validate_inference_service`.

    Raises :class:`~engage.errors.ConfigError` for a version that is not a SHA-256, a storage URI the
    storage initializer cannot fetch, or a manifest the SDK's schemas refuse.
    """
    from kserve.models import V1beta1InferenceService, V1beta1InferenceServiceSpec
    from kubernetes.client import ApiClient, V1ObjectMeta

    full_id, short_id = version_ids(version_id)
    _check_storage_uri(storage_uri)
    isvc = V1beta1InferenceService(
        api_version=API_VERSION,
        kind=KIND,
        metadata=V1ObjectMeta(
            name=settings.name,
            namespace=settings.namespace,
            labels=_labels(settings, short_id),
            annotations=_annotations(settings, full_id),
        ),
        spec=V1beta1InferenceServiceSpec(
            predictor=_predictor(storage_uri, short_id, settings),
            explainer=_explainer(storage_uri, short_id, settings),
        ),
    )
    with ApiClient() as api_client:
        manifest: dict[str, Any] = api_client.sanitize_for_serialization(isvc)
    problems = validate_inference_service(manifest)
    if problems:
        raise ConfigError(_problems_message("the rendered InferenceService", problems))
    return manifest


def _problems_message(subject: str, problems: list[str]) -> str:
    if len(problems) == 1:
        return f"{subject}: {problems[0]}"
    return f"{subject}: {len(problems)} problems\n" + "\n".join(f"  - {p}" for p in problems)


def to_yaml(manifest: Mapping[str, Any]) -> str:
    """The manifest as YAML for ``kubectl apply -f``, keys in the order they were built."""
    return yaml.safe_dump(dict(manifest), sort_keys=False)


# --- validation ---------------------------------------------------------------------------------------


def validate_inference_service(manifest: Mapping[str, Any]) -> list[str]:
    """Every problem of ``manifest`` as an InferenceService, one ``path: what is wrong`` line each.

    Fields and types come from the kserve SDK's models (``openapi_types`` / ``attribute_map``) and the
    kubernetes client's for the core types inside (``V1Container`` ...): unknown fields, wrong types.
    Then the invariants the CRD's webhook enforces that a schema does not: the name rule, the canary range.
    An empty list means the manifest passes.
    """
    problems: list[str] = []
    _walk(manifest, "V1beta1InferenceService", "", problems)
    problems.extend(_invariants(manifest))
    return problems


def _model_class(type_name: str) -> Any | None:
    """The generated class named ``type_name`` (kserve's first, then the kubernetes client's)."""
    import kserve.models
    import kubernetes.client.models  # type: ignore[import-untyped]

    for module in (kserve.models, kubernetes.client.models):
        found = getattr(module, type_name, None)
        if found is not None and hasattr(found, "openapi_types"):
            return found
    return None


def _walk(value: Any, type_name: str, path: str, problems: list[str]) -> None:
    """Check ``value`` against the generated type ``type_name``, appending problems found under ``path``."""
    if value is None or type_name == "object":
        return
    if (list_match := _LIST.match(type_name)) is not None:
        _walk_list(value, list_match["item"], path, problems)
    elif (dict_match := _DICT.match(type_name)) is not None:
        _walk_dict(value, dict_match["value"], path, problems)
    elif type_name in _SCALARS:
        _check_scalar(value, type_name, path, problems)
    else:
        _walk_object(value, type_name, path, problems)


def _where(path: str) -> str:
    return path or "(top level)"


def _type_error(path: str, expected: str, value: Any) -> str:
    return f"{_where(path)}: expected {expected}, got {type(value).__name__} {value!r}"


def _check_scalar(value: Any, type_name: str, path: str, problems: list[str]) -> None:
    allowed = _SCALARS[type_name]
    # bool is an int in Python, never in the CRD's schema
    is_bool_for_number = isinstance(value, bool) and bool not in allowed
    if is_bool_for_number or not isinstance(value, allowed):
        problems.append(_type_error(path, type_name, value))


def _walk_list(value: Any, item_type: str, path: str, problems: list[str]) -> None:
    if not isinstance(value, list):
        problems.append(_type_error(path, f"list[{item_type}]", value))
        return
    for index, item in enumerate(value):
        _walk(item, item_type, f"{path}[{index}]", problems)


def _walk_dict(value: Any, value_type: str, path: str, problems: list[str]) -> None:
    if not isinstance(value, Mapping):
        problems.append(_type_error(path, f"a mapping of {value_type}", value))
        return
    for key, item in value.items():
        if not isinstance(key, str):
            problems.append(f"{path}: key {key!r} is not a string")
        _walk(item, value_type, f'{path}["{key}"]', problems)


def _walk_object(value: Any, type_name: str, path: str, problems: list[str]) -> None:
    if not isinstance(value, Mapping):
        problems.append(_type_error(path, f"an object ({type_name})", value))
        return
    model = _model_class(type_name)
    if model is None:  # a type the SDKs name but do not ship (e.g. a Knative type): shape only
        return
    fields = {json_key: attribute for attribute, json_key in model.attribute_map.items()}
    for key, item in value.items():
        child = f"{path}.{key}" if path else str(key)
        if key not in fields:
            problems.append(_unknown_field(child, str(key), fields))
            continue
        _walk(item, model.openapi_types[fields[key]], child, problems)


def _unknown_field(path: str, key: str, fields: Mapping[str, str]) -> str:
    close = difflib.get_close_matches(key, list(fields), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{path}: unknown field{hint}"


def _invariants(manifest: Mapping[str, Any]) -> list[str]:
    """What KServe and the API server refuse that a field schema cannot say."""
    problems: list[str] = []
    if manifest.get("apiVersion") != API_VERSION:
        problems.append(f"apiVersion: expected {API_VERSION!r}, got {manifest.get('apiVersion')!r}")
    if manifest.get("kind") != KIND:
        problems.append(f"kind: expected {KIND!r}, got {manifest.get('kind')!r}")
    metadata = manifest.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    problems.extend(_name_problems(metadata.get("name")))
    problems.extend(_label_problems(metadata.get("labels")))
    spec = manifest.get("spec")
    spec = spec if isinstance(spec, Mapping) else {}
    if not isinstance(spec.get("predictor"), Mapping):
        problems.append("spec.predictor: required")
    for component in ("predictor", "explainer", "transformer"):
        section = spec.get(component)
        if isinstance(section, Mapping):
            problems.extend(_component_problems(section, f"spec.{component}"))
    return problems


def _name_problems(name: Any) -> list[str]:
    if not isinstance(name, str) or not name:
        return ["metadata.name: required"]
    if len(name) > 63 or _ISVC_NAME.match(name) is None:
        return [
            f"metadata.name: {name!r} is not a valid InferenceService name (at most 63 lowercase "
            "letters, digits or '-', starting with a letter and ending with a letter or digit)"
        ]
    return []


def _label_problems(labels: Any) -> list[str]:
    if not isinstance(labels, Mapping):
        return []
    return [
        f'metadata.labels["{key}"]: {value!r} is not a valid label value (at most 63 characters)'
        for key, value in labels.items()
        if isinstance(value, str) and (len(value) > 63 or _LABEL_VALUE.match(value) is None)
    ]


def _component_problems(section: Mapping[str, Any], path: str) -> list[str]:
    problems: list[str] = []
    canary = section.get("canaryTrafficPercent")
    if isinstance(canary, int) and not isinstance(canary, bool) and not 0 <= canary <= 100:
        problems.append(f"{path}.canaryTrafficPercent: {canary} is outside 0..100")
    low, high = section.get("minReplicas"), section.get("maxReplicas")
    if isinstance(low, int) and isinstance(high, int) and high > 0 and low > high:
        problems.append(f"{path}.minReplicas: {low} exceeds maxReplicas {high}")
    containers = section.get("containers")
    if isinstance(containers, list):
        for index, container in enumerate(containers):
            if isinstance(container, Mapping) and not container.get("name"):
                problems.append(f"{path}.containers[{index}].name: required")
    return problems
