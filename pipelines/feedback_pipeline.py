"""The feedback pipeline ``engage-feedback``: the closed loop as a recurring Kubeflow run.

The source of ``pipelines/feedback_pipeline.yaml`` (``make generate`` compiles it; a test fails when it is
stale). ``engage pipeline submit --pipeline feedback --schedule daily`` uploads it and schedules it;
``engage_components.run_local(params, pipeline_root=..., pipeline="feedback")`` runs it under ``kfp.local``.

::

    feedback — the window's logged predictions (the drift detector's event store, ``events_uri``) joined with
               the outcomes (``outcomes_uri``), judged by the promotion policy: live accuracy, live fairness,
               prediction drift, business figures; report.json / report.md; engage_live_* to ``pushgateway``;
               with ``retrain``, a training run through the KFP API when the policy is crossed (audit record)

One step: the report and the trigger read the same report, and the trigger's audit record names the
report's crossed rules. It is the code ``engage feedback --retrain`` runs (docs/feedback.md).
"""

# no `from __future__ import annotations`: KFP reads parameter types from the live annotations
from kfp import dsl

from engage_components import RESOURCES
from engage_components import components as c
from engage_components._loop import DEFAULT_KFP_HOST

NAME = "engage-feedback"


@dsl.pipeline(
    name=NAME,
    description="Engage feedback loop: live accuracy, live fairness and prediction drift of the logged traffic "
    "against the outcomes, pushed to Prometheus; a training run when the promotion policy is crossed.",
)
def feedback_pipeline(
    events_uri: str,
    outcomes_uri: str,
    days: int = 30,
    since: str = "",
    until: str = "",
    contract: str = "",
    policy: str = "",
    reference_uri: str = "",
    pushgateway: str = "",
    retrain: bool = False,
    train_params: dict = {},  # noqa: B006  KFP reads `dict`; {}: ENGAGE_RUN_* defaults
    kfp_host: str = DEFAULT_KFP_HOST,
    experiment: str = "engage",
    governance_db: str = "",
) -> None:
    """Parameters: ``events_uri`` (the event store: a folder or ``s3://`` URI), ``outcomes_uri`` (Parquet or
    CSV: the customer id, ``observed_at`` and the outcome columns named as the contract's targets), the
    window (``days`` before ``until`` or now, 0: every event; or ``since`` / ``until``, ISO 8601),
    ``contract`` and ``policy`` (empty: the shipped ones), ``reference_uri`` (the model's predictions on
    training rows, for prediction drift; empty: the window's first half), ``pushgateway`` (host:port; empty:
    no push), ``retrain`` (start a training run when drift, live accuracy or live fairness is crossed) with
    ``train_params`` (the training pipeline's parameters as ``ENGAGE_RUN_*`` settings, e.g. ``data_uri``,
    ``registry``) on ``kfp_host`` (default: the in-cluster ml-pipeline service) in ``experiment``, and
    ``governance_db`` (the audit trail's database URL; empty: ``ENGAGE_GOVERNANCE_DATABASE_URL``)."""
    need = RESOURCES["feedback"]
    task = c.feedback(
        events_uri=events_uri, outcomes_uri=outcomes_uri, days=days, since=since, until=until,
        contract=contract, policy=policy, reference_uri=reference_uri, pushgateway=pushgateway,
        retrain=retrain, train_params=train_params, kfp_host=kfp_host, experiment=experiment,
        governance_db=governance_db,
    )  # fmt: skip
    task.set_cpu_request(need.cpu_request).set_memory_request(need.memory_request)
    task.set_display_name("feedback")
    # the window moves with the clock, and a run acts on the cluster as it is now: never from the cache
    task.set_caching_options(False)
    # no retries: a retry after the trigger started a training run would start a second one
