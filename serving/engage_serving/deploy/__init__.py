"""Deployment of a model version: its KServe InferenceService, rendered, checked and applied.

* :class:`DeploySettings`: namespace, name, images, logger, canary, replicas, resources
  (``ENGAGE_DEPLOY_*`` variables).
* :func:`render_inference_service`: the manifest of one version, built from the kserve SDK's typed
  models and checked by :func:`validate_inference_service`; :func:`to_yaml` for ``kubectl apply -f``.
* :func:`chart_values`: the values of ``charts/engage`` that render the same InferenceService.
* :func:`apply_inference_service`: create or merge-patch it through the kubernetes client
  (:class:`DeployError` when the cluster cannot be reached or says no).

kserve and kubernetes are imported inside the functions that use them (kserve costs ~8 s).
See ``docs/deploy.md``.
"""

from __future__ import annotations

from ._apply import GROUP, PLURAL, VERSION, DeployError, apply_inference_service, merge_patch
from ._chart import chart_values, drift_detector_url
from ._render import (
    API_VERSION,
    CONTAINER_NAME,
    EXPLAINER_MODULE,
    KIND,
    MODEL_DIR,
    PREDICTOR_MODULE,
    SERVER_FLAGS,
    explainer_args,
    predictor_args,
    render_inference_service,
    to_yaml,
    validate_inference_service,
    version_ids,
)
from ._settings import DeploySettings, Toleration
from ._version import inference_service, render_version, storage_uri, version_chart_values

__all__ = [
    "API_VERSION",
    "CONTAINER_NAME",
    "EXPLAINER_MODULE",
    "GROUP",
    "KIND",
    "MODEL_DIR",
    "PLURAL",
    "PREDICTOR_MODULE",
    "SERVER_FLAGS",
    "VERSION",
    "DeployError",
    "DeploySettings",
    "Toleration",
    "apply_inference_service",
    "chart_values",
    "drift_detector_url",
    "explainer_args",
    "inference_service",
    "merge_patch",
    "predictor_args",
    "render_inference_service",
    "render_version",
    "storage_uri",
    "to_yaml",
    "validate_inference_service",
    "version_chart_values",
    "version_ids",
]
