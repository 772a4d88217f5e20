"""The InferenceService of a registry version: where the cluster fetches it, and its manifest."""

from __future__ import annotations

from typing import Any

from ._chart import chart_values
from ._render import render_inference_service, to_yaml
from ._settings import DeploySettings

__all__ = ["inference_service", "render_version", "storage_uri", "version_chart_values"]

#: schemes KServe's storage initializer fetches from
_FETCHABLE = ("s3://", "gs://", "pvc://", "http://", "https://", "hf://", "oci://", "hdfs://", "webhdfs://")


def storage_uri(version: Any) -> str:
    """Where the cluster fetches the version's model: the registry's own URI when the storage initializer
    can read it (``s3://`` in production), else the same layout on the ``engage-registry`` PVC (a local
    registry on a laptop is not reachable from a cluster: sync it there, or use an ``s3://`` registry)."""
    uri = f"{version.uri.rstrip('/')}/model"
    if uri.startswith(_FETCHABLE):
        return uri
    hexid = version.id.removeprefix("sha256:")
    return f"pvc://engage-registry/{version.model}/versions/{hexid}/model"


def inference_service(
    version: Any, canary_percent: int, settings: DeploySettings | None = None
) -> dict[str, Any]:
    """The InferenceService of a registry version with ``canary_percent`` of the traffic (0: all of it)."""
    return render_inference_service(version.id, storage_uri(version), _with_canary(canary_percent, settings))


def version_chart_values(
    version: Any, canary_percent: int, settings: DeploySettings | None = None
) -> dict[str, Any]:
    """The values of ``charts/engage`` that render :func:`inference_service`'s manifest."""
    return chart_values(version.id, storage_uri(version), _with_canary(canary_percent, settings))


def _with_canary(canary_percent: int, settings: DeploySettings | None) -> DeploySettings:
    base = settings if settings is not None else DeploySettings()
    return DeploySettings.model_validate({**base.model_dump(), "canary_traffic_percent": canary_percent})


def render_version(version: Any, canary_percent: int) -> str:
    """:func:`inference_service` as YAML: the ``render`` that :func:`engage.promotion.promote` takes."""
    return to_yaml(inference_service(version, canary_percent))
