"""Apply a rendered InferenceService to a cluster with the kubernetes client: create it, or merge-patch
the one that is there.

No Kubernetes API server exists on the machines Engage is developed on, so this module is exercised
only up to the API call: a missing kubeconfig, an unknown context and an unreachable API server are
tested for real (each gives a one-line :class:`DeployError`); the create and patch calls themselves run
only against a cluster. The client gets a short timeout and no urllib3 retries, so an unreachable server
fails in seconds, not after a retry loop.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml

from engage.errors import ConfigError, DeployError

from ._render import validate_inference_service

__all__ = ["GROUP", "PLURAL", "VERSION", "DeployError", "apply_inference_service"]

GROUP = "serving.kserve.io"
VERSION = "v1beta1"
PLURAL = "inferenceservices"
#: Seconds one API call may take (connect and read). Admission webhooks (KServe's among them) answer
#: within this on a healthy cluster; an unreachable server fails fast.
DEFAULT_TIMEOUT_SECONDS = 10.0
#: Optional fields Engage manages that a merge patch must remove when the new manifest leaves them out
#: (a JSON merge patch keeps any field it does not mention): without this, promoting a canary by
#: rendering without ``canaryTrafficPercent`` would leave the old split in place.
_MANAGED_OPTIONAL = ("canaryTrafficPercent", "serviceAccountName")


def apply_inference_service(
    manifest: Mapping[str, Any],
    *,
    kubeconfig: Path | None,
    context: str | None = None,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
) -> Literal["created", "patched"]:
    """Create the InferenceService ``manifest`` or merge-patch the existing one; say which was done.

    ``kubeconfig`` None reads the in-cluster service account when running in a pod (a pipeline step),
    else the default kubeconfig (``$KUBECONFIG`` or ``~/.kube/config``). The manifest is checked with
    :func:`validate_inference_service` first (:class:`~engage.errors.ConfigError` if it fails), so a
    cluster never sees a manifest Engage would not render. Every other failure is a :class:`DeployError`.
    """
    problems = validate_inference_service(manifest)
    if problems:
        raise ConfigError("the InferenceService to apply: " + "; ".join(problems))
    namespace, name = _target(manifest)
    configuration = _configuration(kubeconfig, context)
    return _create_or_patch(manifest, namespace, name, configuration, timeout_seconds)


def _target(manifest: Mapping[str, Any]) -> tuple[str, str]:
    metadata = manifest["metadata"]
    namespace = metadata.get("namespace")
    if not namespace:
        raise ConfigError("the InferenceService to apply: metadata.namespace: required")
    return str(namespace), str(metadata["name"])


def _configuration(kubeconfig: Path | None, context: str | None) -> Any:
    """A client configuration from the kubeconfig (or the pod's service account), without retries."""
    from kubernetes import client, config  # type: ignore[import-untyped]

    configuration = client.Configuration()
    in_cluster = kubeconfig is None and context is None and "KUBERNETES_SERVICE_HOST" in os.environ
    try:
        if in_cluster:
            config.load_incluster_config(client_configuration=configuration)
        else:
            _load_kubeconfig(kubeconfig, context, configuration)
    except config.ConfigException as exc:
        source = "the pod's service account" if in_cluster else f"kubeconfig {_describe(kubeconfig)}"
        raise DeployError(f"{source}: {_one_line(str(exc))}") from exc
    # urllib3 retries a refused connection three times by default; an apply fails once and says so
    configuration.retries = 0
    return configuration


def _load_kubeconfig(kubeconfig: Path | None, context: str | None, configuration: Any) -> None:
    from kubernetes import config

    if kubeconfig is not None and not kubeconfig.is_file():
        raise DeployError(f"kubeconfig {kubeconfig} does not exist")
    try:
        config.load_kube_config(
            config_file=str(kubeconfig) if kubeconfig is not None else None,
            context=context,
            client_configuration=configuration,
            persist_config=False,
        )
    except (OSError, yaml.YAMLError) as exc:
        raise DeployError(
            f"kubeconfig {_describe(kubeconfig)} cannot be read: {_one_line(str(exc))}"
        ) from exc


def _describe(kubeconfig: Path | None) -> str:
    return str(kubeconfig) if kubeconfig is not None else "(default: $KUBECONFIG or ~/.kube/config)"


def _create_or_patch(
    manifest: Mapping[str, Any], namespace: str, name: str, configuration: Any, timeout: float
) -> Literal["created", "patched"]:
    import urllib3
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException  # type: ignore[import-untyped]

    what = f"{PLURAL}.{GROUP} {namespace}/{name}"
    try:
        with client.ApiClient(configuration) as api_client:
            api = client.CustomObjectsApi(api_client)
            common = {"group": GROUP, "version": VERSION, "namespace": namespace, "plural": PLURAL}
            if _exists(api, common, name, timeout):
                api.patch_namespaced_custom_object(
                    name=name, body=merge_patch(manifest), _request_timeout=timeout, **common
                )
                return "patched"
            api.create_namespaced_custom_object(body=dict(manifest), _request_timeout=timeout, **common)
            return "created"
    except ApiException as exc:
        raise DeployError(f"the Kubernetes API refused {what}: {_api_reason(exc)}") from exc
    except urllib3.exceptions.HTTPError as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DeployError(
            f"cannot reach the Kubernetes API at {configuration.host}: {_one_line(str(reason))}"
        ) from exc


def _exists(api: Any, common: Mapping[str, str], name: str, timeout: float) -> bool:
    from kubernetes.client.exceptions import ApiException

    try:
        api.get_namespaced_custom_object(name=name, _request_timeout=timeout, **common)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def merge_patch(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch that makes a live InferenceService match ``manifest``.

    Lists (containers, env, args) are replaced whole by a merge patch; optional fields Engage manages
    but the manifest leaves out are sent as null so the API server removes them.
    """
    patch: dict[str, Any] = copy.deepcopy(dict(manifest))
    spec = patch.get("spec")
    if isinstance(spec, dict):
        for component in ("predictor", "explainer"):
            section = spec.get(component)
            if isinstance(section, dict):
                for field in _MANAGED_OPTIONAL:
                    section.setdefault(field, None)
    return patch


def _api_reason(exc: Any) -> str:
    """``403 Forbidden: <the API server's message>`` from an ApiException, on one line."""
    message = ""
    body = getattr(exc, "body", None)
    if body:
        try:
            decoded = json.loads(body)
        except (TypeError, ValueError):
            message = str(body)
        else:
            message = str(decoded.get("message", "")) if isinstance(decoded, dict) else str(decoded)
    head = f"{exc.status} {exc.reason}".strip()
    return _one_line(f"{head}: {message}" if message else head)


def _one_line(text: str) -> str:
    return " ".join(text.split())
