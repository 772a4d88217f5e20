"""The Engage pipeline: the DAG of components, its parameters, gates, retries and exit handler.

The source of ``pipelines/engage_pipeline.yaml`` (``make generate`` compiles it). Its components, and the
step bodies they call, are the ``engage-components`` package; ``engage pipeline compile`` and ``engage run``
load this file (:func:`engage_components.pipeline_module`), as ``kfp dsl compile --py`` would.

::

    load-data ─► validate ─(verdict != fail)─► features ─┬─► train-head x the contract's heads (parallel) ─► evaluate ─┬─► fairness
                                                         └─► drift-reference                            business-metrics ◄─┘      │
                                             (fairness != fail) explain + model card ─► promote ◄─────────────────────────────┘
                                                                                          ├─► review-sample (the review queue)
                                                                                          ├─► batch-score (every customer, Parquet)
                                                                                          └─► rollout (the canary through Prometheus)
    exit handler (always): record-outcome — step times, cost, audit record, Pushgateway metrics (run, model,
    business figures: engage.telemetry's catalogue)

``dsl.If`` gates skip what a failing gate makes pointless; ``promote`` judges everything else (the
training policy, champion / challenger, drift baselines) by the one promotion policy and refuses with
the reasons. The compiled IR (``pipelines/engage_pipeline.yaml``) is committed and a test fails when
it is stale (``make generate`` rewrites it).

Signing keys (docs/registry.md "Signed versions", docs/deploy.md "Signing keys"): on a cluster ``promote``,
the one task that publishes, mounts the private key's Secret and ``evaluate``, the one that fetches a
version (the champion), the public keys' Secret, each with ``ENGAGE_SIGNING_REQUIRED=true``. That is all
Kubernetes platform config, which ``kfp.local`` does not apply: a local run signs and verifies with the
development key.
"""

# no `from __future__ import annotations`: KFP reads parameter types from the live annotations
from kfp import dsl, kubernetes

from engage_components import RESOURCES
from engage_components import components as c

NAME = "engage-customers"
#: steps that read or write shared storage retry; transient failures there are the common kind
RETRIES = 2

# The Secrets the signing keys come from, in the namespace the runs execute in. Fixed names, not run
# parameters: whoever starts a run must not choose which Secret a step mounts.
SIGNING_KEY_SECRET = "engage-signing-key"  # pragma: allowlist secret  (a name: the private key's Secret)
SIGNING_PUBLIC_KEYS_SECRET = "engage-signing-public-keys"  # pragma: allowlist secret  (a name)
#: where they are mounted; the private key is the Secret's entry engage-signing.pem
SIGNING_KEY_FILE = "/etc/engage/signing-key/engage-signing.pem"
SIGNING_PUBLIC_KEYS_DIR = "/etc/engage/signing"  # every entry of the Secret: a rotation's keys
# The DaskCluster spec the chart renders (dask.enabled), mounted into the steps that may use Dask
DASK_CLUSTER_CONFIG_MAP = "engage-dask-cluster"
DASK_CLUSTER_SPEC = "/etc/engage/dask/daskcluster.yaml"


def _sized(task: dsl.PipelineTask, step: str, *, retries: int = 0) -> dsl.PipelineTask:
    need = RESOURCES[step]
    task.set_cpu_request(need.cpu_request).set_memory_request(need.memory_request)
    task.set_display_name(step)
    if retries:
        task.set_retry(num_retries=retries, backoff_duration="10s", backoff_factor=2.0)
    return task


def _cluster_env(task: dsl.PipelineTask, name: str, value: str) -> None:
    """``name=value`` in the task's container on a cluster, and not under ``kfp.local``.

    KFP's Kubernetes config has no plain variable, and ``kfp.local`` applies ``set_env_variable`` (where
    these would name files that are not there). So the value is a pod annotation and the variable reads it
    through the downward API: both Kubernetes platform config, which ``kfp.local`` leaves alone."""
    annotation = f"engage.dev/env.{name}"
    kubernetes.add_pod_annotation(task, annotation, value)
    kubernetes.use_field_path_as_env(task, name, f"metadata.annotations['{annotation}']")


def _signs(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """The private key from its Secret (``optional``: without the Secret the step fails at once with
    ``ConfigError: /etc/engage/signing-key/engage-signing.pem: cannot read the key``, never signing with a
    development key, instead of its pod waiting for the volume)."""
    kubernetes.use_secret_as_volume(
        task, SIGNING_KEY_SECRET, mount_path=SIGNING_KEY_FILE.rsplit("/", 1)[0], optional=True
    )
    _cluster_env(task, "ENGAGE_SIGNING_KEY_FILE", SIGNING_KEY_FILE)
    _cluster_env(task, "ENGAGE_SIGNING_REQUIRED", "true")
    return task


def _verifies(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """The trusted public keys from their Secret (``optional``, as above: a fetch then fails with
    ``ConfigError: /etc/engage/signing: holds no Ed25519 public key``)."""
    kubernetes.use_secret_as_volume(
        task, SIGNING_PUBLIC_KEYS_SECRET, mount_path=SIGNING_PUBLIC_KEYS_DIR, optional=True
    )
    _cluster_env(task, "ENGAGE_SIGNING_PUBLIC_KEYS_FILE", SIGNING_PUBLIC_KEYS_DIR)
    _cluster_env(task, "ENGAGE_SIGNING_REQUIRED", "true")
    return task


def _dask_client(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """What a step needs to start its DaskCluster through the operator (``score_engine`` dask): the
    cluster spec from the chart's ConfigMap (``optional``: without ``dask.enabled`` in the chart the step
    fails only when asked for Dask, with ``ConfigError: … cannot read the DaskCluster spec``), its
    namespace, a start deadline that allows for a node to be added, and the label the chart's network
    policies let reach the scheduler (docs/deploy.md "Dask on EKS")."""
    kubernetes.use_config_map_as_volume(
        task, DASK_CLUSTER_CONFIG_MAP, mount_path=DASK_CLUSTER_SPEC.rsplit("/", 1)[0], optional=True
    )
    _cluster_env(task, "ENGAGE_DASK_CLUSTER_SPEC", DASK_CLUSTER_SPEC)
    _cluster_env(task, "ENGAGE_DASK_TIMEOUT_SECONDS", "600")
    kubernetes.use_field_path_as_env(task, "ENGAGE_DASK_NAMESPACE", "metadata.namespace")
    kubernetes.add_pod_label(task, "engage.dev/dask-client", "true")
    return task


@dsl.pipeline(name="engage-run", description="The Engage run, inside the exit handler.")
def engage_run(
    data_uri: str,
    rows: int,
    seed: int,
    snapshots: int,
    defect_rate: float,
    bias: float,
    drift: float,
    as_of: str,
    contract: str,
    policy: str,
    registry: str,
    heads: list,
    max_rounds: int,
    canary_percent: int,
    pushgateway: str,
    review_sample: int,
    governance_db: str,
    score_version: str,
    score_uri: str,
    score_engine: str,
    score_reasons: int,
    rollout_prometheus: str,
    rollout_isvc: str,
    rollout_namespace: str,
    rollout_stable: str,
    rollout_canary: str,
    rollout_period: str,
    rollout_interval: str,
    rollout_policy: str,
    rollout_apply: bool,
) -> None:
    data = _sized(
        c.load_data(
            data_uri=data_uri, rows=rows, seed=seed, snapshots=snapshots, defect_rate=defect_rate,
            bias=bias, drift=drift, as_of=as_of,
        ),
        "load-data", retries=RETRIES,
    )  # fmt: skip
    gate = _sized(
        c.validate(data=data.outputs["data"], contract=contract, pushgateway=pushgateway), "validate"
    )
    with dsl.If(gate.outputs["Output"] != "fail", name="quality-gate-passed"):
        table = gate.outputs["remediated"]
        feats = _sized(c.features(data=table, contract=contract, seed=seed, heads=heads), "features")
        with dsl.ParallelFor(feats.outputs["Output"], name="heads") as head:  # the contract's heads
            fitted = _sized(
                c.train_head(
                    data=table, features=feats.outputs["features"], contract=contract, head=head,
                    seed=seed, max_rounds=max_rounds,
                ),
                "train-head",
            )  # fmt: skip
        measured = _sized(
            c.evaluate(
                data=table, features=feats.outputs["features"], heads=dsl.Collected(fitted.outputs["model"]),
                contract=contract, policy=policy, registry=registry,
            ),
            "evaluate", retries=RETRIES,
        )  # fmt: skip
        _verifies(measured)  # it fetches the production champion from the registry
        _sized(
            c.business_metrics(data=table, training=measured.outputs["training"], contract=contract),
            "business-metrics",
        )
        reference = _sized(
            c.drift_reference(
                data=table, features=feats.outputs["features"], contract=contract, policy=policy, seed=seed
            ),
            "drift-reference",
        )
        fair = _sized(
            c.fairness(
                data=table, features=feats.outputs["features"], training=measured.outputs["training"],
                contract=contract, policy=policy,
            ),
            "fairness",
        )  # fmt: skip
        with dsl.If(fair.outputs["Output"] != "fail", name="fairness-gate-passed"):
            explained = _sized(
                c.explain(
                    data=table, training=measured.outputs["training"], fairness=fair.outputs["fairness"],
                    contract=contract, policy=policy, seed=seed,
                ),
                "explain",
            )  # fmt: skip
            promoted = _sized(
                c.promote(
                    quality=gate.outputs["report"], training=measured.outputs["training"],
                    fairness=fair.outputs["fairness"], explanations=explained.outputs["explanations"],
                    card=explained.outputs["card"], reference=reference.outputs["reference"], policy=policy,
                    registry=registry, canary_percent=canary_percent, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                ),
                "promote", retries=RETRIES,
            )  # fmt: skip
            promoted.set_caching_options(False)  # judged against the registry as it is now
            _signs(promoted)  # the one task that publishes: it alone sees the private key
            # after promotion, which never waits for it: a governance database that is down fails the run
            # with its error, the promotion already made
            _sized(
                c.review_sample(
                    data=table, features=feats.outputs["features"], training=measured.outputs["training"],
                    fairness=fair.outputs["fairness"], contract=contract, size=review_sample, seed=seed,
                    governance_db=governance_db,
                ),
                "review-sample",
            ).after(promoted)  # fmt: skip
            # every customer scored by the production version (this run's, when it was promoted)
            scored = _sized(
                c.batch_score(
                    data=data.outputs["data"], contract=contract, registry=registry, version=score_version,
                    out_uri=score_uri, engine=score_engine, reasons=score_reasons,
                ),
                "batch-score",
            ).after(promoted)  # fmt: skip
            scored.set_caching_options(False)  # scores with the registry's production version as it is now
            _verifies(_dask_client(scored))  # it fetches a version: checks its signature
            # the canary the promotion deployed, watched through Prometheus, then promoted or rolled back:
            # only with a Prometheus to watch it through (no pod otherwise; engage run says so); the step
            # itself skips, with the reason, without a new version or a canary split
            with dsl.If(rollout_prometheus != "", name="rollout-watched"):
                watched = _sized(
                    c.rollout(
                        promotion=promoted.outputs["promotion"], prometheus=rollout_prometheus,
                        isvc=rollout_isvc, namespace=rollout_namespace, stable=rollout_stable,
                        canary=rollout_canary, period=rollout_period, interval=rollout_interval,
                        policy=rollout_policy, apply=rollout_apply, governance_db=governance_db,
                    ),
                    "rollout",
                )  # fmt: skip
                watched.set_caching_options(False)  # watches the cluster as it is now


@dsl.pipeline(
    name=NAME,
    description="Engage: quality gate, features, the contract's heads (engagement / churn / LTV) in parallel, evaluation, "
    "fairness gate with mitigation, explanations and model card, drift reference, promotion by one policy.",
)
def engage_pipeline(
    data_uri: str = "",
    rows: int = 100_000,
    seed: int = 42,
    snapshots: int = 4,
    defect_rate: float = 0.002,
    bias: float = 0.0,
    drift: float = 0.0,
    as_of: str = "",
    contract: str = "",
    policy: str = "",
    registry: str = "artifacts/registry",
    heads: list = [],  # noqa: B006  a KFP parameter default: empty is every head the contract defines
    max_rounds: int = 1000,
    canary_percent: int = -1,
    pushgateway: str = "",
    review_sample: int = 400,
    governance_db: str = "",
    score_version: str = "production",
    score_uri: str = "",
    score_engine: str = "local",
    score_reasons: int = 3,
    rollout_prometheus: str = "",
    rollout_isvc: str = "",
    rollout_namespace: str = "",
    rollout_stable: str = "",
    rollout_canary: str = "",
    rollout_period: str = "",
    rollout_interval: str = "",
    rollout_policy: str = "",
    rollout_apply: bool = True,
) -> None:
    """Parameters: ``data_uri`` (a table to read, else ``rows``/``seed``/``snapshots`` and the knobs
    generate one), ``contract`` and ``policy`` files (empty: the shipped ones), the ``registry`` URI,
    the ``heads`` to train (empty: every target the contract defines), ``canary_percent`` (-1: the policy's), an optional Pushgateway,
    ``review_sample`` (records put in the human review queue, 0: none), ``governance_db`` (its database's
    URL; empty: ``ENGAGE_GOVERNANCE_DATABASE_URL`` where the step runs, else the embedded SQLite file), and
    batch scoring: ``score_version`` (the registry version every customer is scored with), ``score_uri``
    (where the partitioned Parquet goes; empty: the step's ``scores`` artifact), ``score_engine`` (local or
    dask) and ``score_reasons`` (reason codes per customer, 0: none); the rollout after promotion:
    ``rollout_prometheus`` (Prometheus' URL; empty: the step skips), ``rollout_isvc`` / ``rollout_namespace``
    (empty: the rendered InferenceService's), ``rollout_stable`` / ``rollout_canary`` (LABEL=VALUE; empty:
    ``model_version=<short id>`` of the previous and the new version), ``rollout_period`` /
    ``rollout_interval`` (``10m``, ``30s``; empty: the rollout policy's), ``rollout_policy`` (a rollout
    policy file) and ``rollout_apply`` (patch the InferenceService with kubectl; docs/rollout.md)."""
    outcome = c.record_outcome(
        registry=registry, pushgateway=pushgateway, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER
    )
    _sized(outcome, "record-outcome").set_caching_options(False)
    with dsl.ExitHandler(outcome, name="run"):
        engage_run(
            data_uri=data_uri, rows=rows, seed=seed, snapshots=snapshots, defect_rate=defect_rate, bias=bias,
            drift=drift, as_of=as_of, contract=contract, policy=policy, registry=registry, heads=heads,
            max_rounds=max_rounds, canary_percent=canary_percent, pushgateway=pushgateway,
            review_sample=review_sample, governance_db=governance_db, score_version=score_version,
            score_uri=score_uri, score_engine=score_engine, score_reasons=score_reasons,
            rollout_prometheus=rollout_prometheus, rollout_isvc=rollout_isvc, rollout_namespace=rollout_namespace,
            rollout_stable=rollout_stable, rollout_canary=rollout_canary, rollout_period=rollout_period,
            rollout_interval=rollout_interval, rollout_policy=rollout_policy, rollout_apply=rollout_apply,
        )  # fmt: skip
