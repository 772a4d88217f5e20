"""The chart's rollout section with real helm: off by default; on, a Role in the release's namespace that
grants the pipeline's step pods exactly what the rollout step asks of the API for the InferenceService
(engage_serving.deploy.apply_inference_service: get, then create or merge-patch; the decision's kubectl
patch), bound to the step pods' service account in the pipelines' namespace; values.schema.json refuses
bad values. No cluster exists here: nothing is applied."""

from __future__ import annotations

from typing import Any

import pytest

from tests.k8s_support import CHART, CHART_VALUES, documents, helm_template, run, tool

pytestmark = pytest.mark.integration

DASK = CHART / "ci" / "dask-values.yaml"
#: what the rollout step asks of the API: (group, resource, the object's name or None for any) -> verbs.
#: ``create`` cannot be limited to a name; ``get`` and ``patch`` are limited to the release's
#: InferenceService (the values' inferenceService.name)
STEP_CALLS = {
    ("serving.kserve.io", "inferenceservices", None): {"create"},
    ("serving.kserve.io", "inferenceservices", "engage-customers"): {"get", "patch"},
}


def _rollout(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in docs if d["metadata"]["name"] == "engage-rollout"}


def test_off_by_default() -> None:
    for path in CHART_VALUES:
        if path != DASK:
            assert not _rollout(documents(helm_template(path))), path.name


def test_on_the_role_grants_the_steps_calls_to_the_pipelines_account_and_nothing_else() -> None:
    import kubernetes_validate

    objects = _rollout(documents(helm_template(DASK, namespace="serving")))
    assert set(objects) == {"Role", "RoleBinding"}
    role, binding = objects["Role"], objects["RoleBinding"]
    for doc in (role, binding):
        assert doc["metadata"]["namespace"] == "serving"  # where the InferenceService is: the release's
        kubernetes_validate.validate(doc, "1.33", strict=True)
    granted = {
        (group, resource, name): set(rule["verbs"])
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for name in rule.get("resourceNames") or [None]
    }
    assert granted == STEP_CALLS
    renamed = _rollout(documents(helm_template(DASK, sets={"inferenceService.name": "churn"})))["Role"]
    assert [r.get("resourceNames") for r in renamed["rules"]] == [None, ["churn"]]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "engage-rollout",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "pipeline-runner", "namespace": "kubeflow"}
    ]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("rollout.pipelineNamespace", "Kubeflow_NS", "pipelineNamespace"),
        ("rollout.serviceAccount", "", "serviceAccount"),
        ("rollout.verbs", "delete", "additional properties"),
    ],
)
def test_bad_values_fail_with_the_schemas_message(key: str, value: str, message: str) -> None:
    done = run([tool("helm"), "template", "engage", str(CHART), "-f", str(DASK), "--set", f"{key}={value}"])
    assert done.returncode != 0
    assert message in done.stderr, done.stderr
