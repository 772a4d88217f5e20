"""The compiled pipeline: committed beside the code, and shaped as designed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPILED = ROOT / "pipelines" / "engage_pipeline.yaml"


def test_the_committed_pipeline_yaml_is_what_the_code_compiles_to(tmp_path: Path) -> None:
    from engage_components import compile_pipeline

    fresh = compile_pipeline(tmp_path / "p.yaml").read_text()
    assert fresh == COMPILED.read_text(), "pipelines/engage_pipeline.yaml is stale: run `make generate`"


def compiled() -> tuple[dict[str, Any], dict[str, Any]]:
    """The pipeline spec and its platform spec (the second YAML document: the Kubernetes config)."""
    spec, platform = yaml.safe_load_all(COMPILED.read_text())
    return spec, platform


def test_the_pipeline_has_its_gates_fan_out_retries_resources_and_exit_handler() -> None:
    spec, _ = compiled()
    root = spec["root"]
    assert set(root["inputDefinitions"]["parameters"]) >= {
        "data_uri",
        "rows",
        "seed",
        "contract",
        "policy",
        "canary_percent",
    }
    tasks = root["dag"]["tasks"]
    assert tasks["record-outcome"]["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    components = spec["components"]
    run = components["comp-engage-run"]["dag"]["tasks"]
    assert run["condition-1"]["triggerPolicy"]["condition"].endswith("!= 'fail'")
    body = components["comp-condition-1"]["dag"]["tasks"]
    assert "parameterIterator" in body["for-loop-2"]
    assert body["evaluate"]["retryPolicy"]["maxRetryCount"] == 2
    executors = spec["deploymentSpec"]["executors"]
    images = {e["container"]["image"] for e in executors.values()}
    assert images == {f"ghcr.io/engage-ml/engage-components:{__import__('engage').__version__}"}
    assert all("resources" in e["container"] for e in executors.values())


def _executors_of_tasks(spec: dict[str, Any]) -> dict[str, str]:
    """Every task of every DAG in the spec -> its executor label."""
    components = spec["components"]
    return {
        task: components[t["componentRef"]["name"]]["executorLabel"]
        for c in components.values()
        for task, t in c.get("dag", {}).get("tasks", {}).items()
        if "executorLabel" in components[t["componentRef"]["name"]]
    }


def _cluster_env(config: dict[str, Any]) -> dict[str, str]:
    """The variables an executor's pod gets from its own annotations (the downward API)."""
    annotations = config.get("podMetadata", {}).get("annotations", {})
    env = {}
    for var in config.get("fieldPathAsEnv", []):
        match = re.fullmatch(r"metadata\.annotations\['([^']+)'\]", var["fieldPath"])
        if match is not None:  # other fields (metadata.namespace) are not values the pipeline set
            env[var["name"]] = annotations[match.group(1)]
    return env


def test_only_the_promote_task_mounts_the_private_key_and_the_fetching_tasks_the_public_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from engage.signing import SigningSettings

    spec, platform = compiled()
    executors = _executors_of_tasks(spec)
    kubernetes = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    mounted = {
        label: {v["secretName"]: v for v in config.get("secretAsVolume", [])}
        for label, config in kubernetes.items()
    }
    # the private key: on the one task that publishes, nowhere else (nor as a variable)
    assert [label for label, secrets in mounted.items() if "engage-signing-key" in secrets] == [
        executors["promote"]
    ]
    assert not any(c.get("secretAsEnv") for c in kubernetes.values())
    # the public keys: on the tasks that fetch a registry version (the champion; the scoring version)
    assert sorted(label for label, s in mounted.items() if "engage-signing-public-keys" in s) == sorted(
        [executors["evaluate"], executors["batch-score"]]
    )
    assert set(kubernetes) == {executors["promote"], executors["evaluate"], executors["batch-score"]}

    key = mounted[executors["promote"]]["engage-signing-key"]
    public = mounted[executors["evaluate"]]["engage-signing-public-keys"]
    for volume in (key, public):
        # optional: a missing Secret fails the step with a ConfigError instead of a pod left pending
        assert volume["optional"] is True
        assert volume["secretNameParameter"] == {"runtimeValue": {"constant": volume["secretName"]}}
    signs, verifies = (
        _cluster_env(kubernetes[executors["promote"]]),
        _cluster_env(kubernetes[executors["evaluate"]]),
    )
    assert signs == {
        "ENGAGE_SIGNING_KEY_FILE": f"{key['mountPath']}/engage-signing.pem",
        "ENGAGE_SIGNING_REQUIRED": "true",
    }
    assert verifies == {
        "ENGAGE_SIGNING_PUBLIC_KEYS_FILE": public["mountPath"],
        "ENGAGE_SIGNING_REQUIRED": "true",
    }
    # the names are the settings' own, and the values parse
    known = {f"ENGAGE_SIGNING_{field.upper()}" for field in SigningSettings.model_fields}
    assert set(signs) | set(verifies) <= known
    for env in (signs, verifies):
        with monkeypatch.context() as m:
            for name, value in env.items():
                m.setenv(name, value)
            settings = SigningSettings()
        assert settings.required is True
    assert settings.public_keys_file == Path(public["mountPath"])
    # nothing in the containers' own env: kfp.local applies that, and a local run signs with the dev key
    for executor in spec["deploymentSpec"]["executors"].values():
        assert not any(e["name"].startswith("ENGAGE_SIGNING_") for e in executor["container"].get("env", []))


def test_batch_score_can_start_its_dask_cluster_through_the_operator() -> None:
    """The batch-score task mounts the chart's DaskCluster spec (optional: only a Dask run needs it),
    names it, its namespace and a start deadline, and carries the label the chart's network policies let
    reach the scheduler (charts/engage/templates/dask.yaml); under kfp.local none of it applies."""
    spec, platform = compiled()
    config = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"][
        _executors_of_tasks(spec)["batch-score"]
    ]
    (volume,) = config["configMapAsVolume"]
    assert volume["configMapName"] == "engage-dask-cluster"
    assert volume["optional"] is True
    env = _cluster_env(config)
    assert env["ENGAGE_DASK_CLUSTER_SPEC"] == f"{volume['mountPath']}/daskcluster.yaml"
    assert float(env["ENGAGE_DASK_TIMEOUT_SECONDS"]) >= 300
    assert {"name": "ENGAGE_DASK_NAMESPACE", "fieldPath": "metadata.namespace"} in config["fieldPathAsEnv"]
    assert config["podMetadata"]["labels"]["engage.dev/dask-client"] == "true"
    assert "engage-dask-cluster" in (ROOT / "charts" / "engage" / "templates" / "dask.yaml").read_text()
    values = yaml.safe_load((ROOT / "charts" / "engage" / "values.yaml").read_text())
    assert values["dask"]["clientPodLabels"] == config["podMetadata"]["labels"]


def test_command_line_parameters_are_json_when_they_parse_else_text() -> None:
    from engage.errors import ConfigError
    from engage_components.cli import _pair, _value

    assert _pair("rows=1000") == ("rows", "1000")
    assert [_value(v) for v in ("1000", '["churn"]', "true", "", "s3://bucket/x")] == [
        1000, ["churn"], True, "", "s3://bucket/x",
    ]  # fmt: skip
    with pytest.raises(ConfigError, match="--param: expected NAME=VALUE, got 'rows'"):
        _pair("rows")


def test_the_rollout_step_runs_after_promote_never_cached_on_its_parameters() -> None:
    spec, _ = compiled()
    params = spec["root"]["inputDefinitions"]["parameters"]
    rollout = {name: p.get("defaultValue") for name, p in params.items() if name.startswith("rollout_")}
    assert rollout == {
        "rollout_prometheus": "", "rollout_isvc": "", "rollout_namespace": "", "rollout_stable": "",
        "rollout_canary": "", "rollout_period": "", "rollout_interval": "", "rollout_policy": "",
        "rollout_apply": True,
    }  # fmt: skip
    # after promote, only with a Prometheus to watch through: without one no task (no pod) at all
    condition = next(
        t
        for c in spec["components"].values()
        for t in c.get("dag", {}).get("tasks", {}).values()
        if t["taskInfo"]["name"] == "rollout-watched"
    )
    assert condition["dependentTasks"] == ["promote"]
    assert (
        condition["triggerPolicy"]["condition"]
        == "inputs.parameter_values['pipelinechannel--rollout_prometheus'] != ''"
    )
    assert condition["inputs"]["artifacts"]["pipelinechannel--promote-promotion"]["taskOutputArtifact"] == {
        "outputArtifactKey": "promotion",
        "producerTask": "promote",
    }
    task = spec["components"][condition["componentRef"]["name"]]["dag"]["tasks"]["rollout"]
    assert task["inputs"]["artifacts"]["promotion"] == {
        "componentInputArtifact": "pipelinechannel--promote-promotion"
    }
    assert task["cachingOptions"] == {}  # caching off: it watches the cluster as it is now
    assert "retryPolicy" not in task  # a retried watch would record a second decision


FEEDBACK = ROOT / "pipelines" / "feedback_pipeline.yaml"


def test_the_committed_feedback_pipeline_yaml_is_what_the_code_compiles_to(tmp_path: Path) -> None:
    from engage_components import compile_pipeline

    fresh = compile_pipeline(tmp_path / "f.yaml", "feedback").read_text()
    assert fresh == FEEDBACK.read_text(), "pipelines/feedback_pipeline.yaml is stale: run `make generate`"


def test_the_feedback_pipeline_is_one_uncached_step_on_the_components_image() -> None:
    (spec,) = yaml.safe_load_all(FEEDBACK.read_text())
    assert spec["pipelineInfo"]["name"] == "engage-feedback"
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert {n for n, p in params.items() if not p.get("isOptional")} == {"events_uri", "outcomes_uri"}
    defaults = {n: p.get("defaultValue") for n, p in params.items() if p.get("isOptional")}
    assert defaults["days"] == 30
    assert defaults["retrain"] is False
    assert defaults["kfp_host"] == "http://ml-pipeline.kubeflow.svc.cluster.local:8888"
    assert params["train_params"]["parameterType"] == "STRUCT"
    (task,) = spec["root"]["dag"]["tasks"].values()
    assert task["cachingOptions"] == {}
    assert "retryPolicy" not in task  # a retry after a started training run would start a second one
    (executor,) = spec["deploymentSpec"]["executors"].values()
    assert (
        executor["container"]["image"]
        == f"ghcr.io/engage-ml/engage-components:{__import__('engage').__version__}"
    )
    assert executor["container"]["resources"]["cpuRequest"] == 1


def test_the_schedules_are_daily_training_before_feedback() -> None:
    from engage_components._local import PIPELINES, SCHEDULES

    assert set(SCHEDULES) == set(PIPELINES) == {"engage", "feedback"}
    # KFP cron with seconds: second minute hour day month weekday; both daily, feedback after training
    hours = {name: int(cron.split()[2]) for name, cron in SCHEDULES.items()}
    assert all(cron.split()[3:] == ["*", "*", "*"] for cron in SCHEDULES.values())
    assert hours["engage"] < hours["feedback"]
