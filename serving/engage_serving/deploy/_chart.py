"""The Helm chart's values that make ``charts/engage`` render the same InferenceService as
:func:`~engage_serving.deploy.render_inference_service` for one version and one :class:`DeploySettings`.

The chart is the source of every other Kubernetes object Engage ships (``manifests/base`` is rendered
from it); the InferenceService exists twice, in the chart's template and in this package's renderer
(which the promote step and ``engage deploy`` run without Helm). ``tests/integration/test_chart.py``
renders the chart with these values and holds its InferenceService equal to the renderer's, field for
field, for several settings: a change to one that the other does not follow fails the build.
"""

from __future__ import annotations

from typing import Any

from engage.errors import ConfigError

from ._render import _check_storage_uri, version_ids
from ._settings import DeploySettings

__all__ = ["chart_values", "drift_detector_url"]


def drift_detector_url(namespace: str) -> str:
    """The drift detector's address the chart writes for a release in ``namespace``."""
    return f"http://engage-drift-detector.{namespace}.svc.cluster.local/"


def chart_values(version_id: str, storage_uri: str, settings: DeploySettings) -> dict[str, Any]:
    """Values for ``helm install -n <settings.namespace>`` that render the InferenceService of
    ``version_id`` at ``storage_uri`` exactly as ``engage deploy`` does.

    Raises :class:`ConfigError` for what the chart derives and so cannot take: a drift-detector URL
    other than the chart's own service in the namespace (the chart deploys that detector).
    """
    full_id, _ = version_ids(version_id)
    _check_storage_uri(storage_uri)
    expected = drift_detector_url(settings.namespace)
    if settings.logger_url != expected:
        raise ConfigError(
            f"drift_detector_url {settings.logger_url!r}: the chart posts to its own drift detector, {expected!r}"
        )
    values: dict[str, Any] = {
        "images": {"predictor": settings.predictor_image, "explainer": settings.explainer_image},
        "inferenceService": {
            "enabled": True,
            "name": settings.name,
            "modelName": settings.model_name,
            "model": {"version": full_id, "storageUri": storage_uri},
            "deploymentMode": settings.deployment_mode or "",
            "canaryTrafficPercent": settings.canary_traffic_percent,
            "loggerMode": settings.logger_mode,
            "minReplicas": settings.min_replicas,
            "maxReplicas": settings.max_replicas,
            "autoscaling": {"metric": settings.scale_metric or "", "target": settings.scale_target},
            "resources": {
                "requests": {"cpu": settings.cpu_request, "memory": settings.memory_request},
                "limits": {"cpu": settings.cpu_limit, "memory": settings.memory_limit},
            },
            "tmpSizeLimit": settings.tmp_size_limit,
            "nodeSelector": dict(settings.node_selector),
            "tolerations": [t.manifest() for t in settings.tolerations],
        },
        "signing": {"publicKeysSecret": settings.signing_public_keys_secret},
        # the renderer's service account is the chart's (created by it); none: the namespace's default
        "serviceAccount": {"create": False, "name": ""}
        if settings.service_account is None
        else {"create": True, "name": settings.service_account},
    }
    return values
