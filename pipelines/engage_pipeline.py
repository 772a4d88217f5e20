"""The Engage pipeline: the DAG of components, its parameters, gates, retries and exit handler.

The source of ``pipelines/engage_pipeline.yaml`` (``make generate`` compiles it). Its components, and the
step bodies they call, are the ``engage-components`` package; ``engage pipeline compile`` and ``engage run``
load this file (:func:`engage_components.pipeline_module`), as ``kfp dsl compile --py`` would.

::

    load-data ─► validate ─(verdict != fail)─► features ─┬─► train-head x the contract's heads (parallel) ─► evaluate ─┬─► fairness
                                                         └─► drift-reference                            business-metrics ◄─┘      │
                                             (fairness != fail) explain + model card ─► promote ◄─────────────────────────────┘
                                                                                          └─► review-sample (the review queue)
    exit handler (always): record-outcome — step times, cost, audit record, Pushgateway metrics (run, model,
    business figures: engage.telemetry's catalogue)

``dsl.If`` gates skip what a failing gate makes pointless; ``promote`` judges everything else (the
training policy, champion / challenger, drift baselines) by the one promotion policy and refuses with
the reasons. The compiled IR (``pipelines/engage_pipeline.yaml``) is committed and a test fails when
it is stale (``make generate`` rewrites it).
"""

# no `from __future__ import annotations`: KFP reads parameter types from the live annotations
from kfp import dsl

from engage_components import RESOURCES
from engage_components import components as c

NAME = "engage-customers"
#: steps that read or write shared storage retry; transient failures there are the common kind
RETRIES = 2


def _sized(task: dsl.PipelineTask, step: str, *, retries: int = 0) -> dsl.PipelineTask:
    need = RESOURCES[step]
    task.set_cpu_request(need.cpu_request).set_memory_request(need.memory_request)
    task.set_display_name(step)
    if retries:
        task.set_retry(num_retries=retries, backoff_duration="10s", backoff_factor=2.0)
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
) -> None:
    """Parameters: ``data_uri`` (a table to read, else ``rows``/``seed``/``snapshots`` and the knobs
    generate one), ``contract`` and ``policy`` files (empty: the shipped ones), the ``registry`` URI,
    the ``heads`` to train (empty: every target the contract defines), ``canary_percent`` (-1: the policy's), an optional Pushgateway,
    ``review_sample`` (records put in the human review queue, 0: none) and ``governance_db`` (its database's
    URL; empty: ``ENGAGE_GOVERNANCE_DATABASE_URL`` where the step runs, else the embedded SQLite file)."""
    outcome = c.record_outcome(
        registry=registry, pushgateway=pushgateway, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER
    )
    _sized(outcome, "record-outcome").set_caching_options(False)
    with dsl.ExitHandler(outcome, name="run"):
        engage_run(
            data_uri=data_uri, rows=rows, seed=seed, snapshots=snapshots, defect_rate=defect_rate, bias=bias,
            drift=drift, as_of=as_of, contract=contract, policy=policy, registry=registry, heads=heads,
            max_rounds=max_rounds, canary_percent=canary_percent, pushgateway=pushgateway,
            review_sample=review_sample, governance_db=governance_db,
        )  # fmt: skip
