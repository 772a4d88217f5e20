"""The pipeline's components: one typed KFP v2 component per step, each a thin wrapper over
:mod:`engage_components.steps`.

Every component runs on the one components image (``components/Dockerfile``: the ``engage`` library
installed, non-root) as a lightweight component with ``base_image=`` that image and
``install_kfp_package=False``: on a cluster the image provides the library, under ``kfp.local`` the
current environment does, and the very same component runs in both. (``target_image=`` components
are refused by ``kfp.local``'s SubprocessRunner; see ../shared/guide/ecosystem.md.)

A component body only imports Engage, calls one step function with its artifacts' paths inside
:func:`engage_components.timed` (which writes the ``step`` record the exit handler prices), and returns
the one value a ``dsl.If`` needs. Outputs are typed (``Dataset``, ``Model``, ``Metrics``,
``ClassificationMetrics``, ``HTML``, ``Markdown``) so the KFP UI shows them.
"""

# no `from __future__ import annotations`: KFP reads the artifact types from the live annotations
import functools
from typing import List  # noqa: UP035  KFP reads Input[List[Model]] (fan-in of a ParallelFor)

from kfp import dsl
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from engage import __version__

#: the components image (built from components/Dockerfile, tagged with the engage version)
IMAGE = f"ghcr.io/engage-ml/engage-components:{__version__}"

component = functools.partial(dsl.component, base_image=IMAGE, install_kfp_package=False)


@component
def load_data(
    data_uri: str,
    rows: int,
    seed: int,
    snapshots: int,
    defect_rate: float,
    bias: float,
    drift: float,
    as_of: str,
    data: Output[Dataset],
    step: Output[Artifact],
) -> str:
    """The run's customer table: copied from data_uri, or generated (rows, seed, snapshots, knobs)."""
    from pathlib import Path

    from engage_components import timed
    from engage_components.steps import load_data_step

    with timed("load-data", step.path) as record:
        record.update(
            load_data_step(
                Path(data.path), data_uri=data_uri, rows=rows, seed=seed, snapshots=snapshots,
                defect_rate=defect_rate, bias=bias, drift=drift, as_of=as_of,
            )
        )  # fmt: skip
    data.metadata["sha256"] = record["sha256"]
    return str(record["sha256"])


@component
def validate(
    data: Input[Dataset],
    contract: str,
    pushgateway: str,
    remediated: Output[Dataset],
    report: Output[Artifact],
    summary: Output[HTML],
    metrics: Output[Metrics],
    step: Output[Artifact],
) -> str:
    """The data-quality gate; returns its verdict: pass, pass_after_remediation or fail. Pushes the
    data-quality metrics to ``pushgateway`` when one is given."""
    import json
    import shutil
    from pathlib import Path

    from engage_components import timed
    from engage_components.steps import validate_step

    with timed("validate", step.path) as record:
        record.update(
            validate_step(
                Path(data.path), contract, Path(report.path), Path(remediated.path), pushgateway=pushgateway
            )
        )
        shutil.copyfile(Path(report.path) / "summary.html", summary.path)
    for key in ("rows_in", "rows_out", "rows_quarantined"):
        metrics.log_metric(key, float(record[key] or 0))
    # the figures live in the artifact's metadata; a file at its URI lets kfp.local's cache find it again
    Path(metrics.path).write_text(json.dumps(metrics.metadata))
    return str(record["verdict"])


@component
def features(
    data: Input[Dataset],
    contract: str,
    seed: int,
    heads: List[str],  # noqa: UP006
    features: Output[Artifact],
    step: Output[Artifact],
) -> List[str]:  # noqa: UP006
    """The heads to train (``heads``, or every target of the contract), the model inputs and the
    time-aware split, decided once for every head; returns the heads, which the pipeline fans out over."""
    from pathlib import Path

    from engage_components import timed
    from engage_components.steps import features_step

    with timed("features", step.path) as record:
        done = features_step(Path(data.path), contract, Path(features.path), seed=seed, heads=list(heads))
        record.update(done)
    return list(done["heads"])


@component
def train_head(
    data: Input[Dataset],
    features: Input[Artifact],
    contract: str,
    head: str,
    seed: int,
    max_rounds: int,
    model: Output[Model],
    step: Output[Artifact],
) -> None:
    """One prediction head: xgboost and the scikit-learn baseline (the heads run in parallel)."""
    from pathlib import Path

    from engage_components import timed
    from engage_components.steps import train_head_step

    with timed("train-head", step.path) as record:
        record.update(
            train_head_step(
                Path(data.path),
                Path(features.path),
                contract,
                head,
                Path(model.path),
                seed=seed,
                max_rounds=max_rounds,
            )
        )
    model.metadata["head"] = head


@component
def evaluate(
    data: Input[Dataset],
    features: Input[Artifact],
    heads: Input[List[Model]],  # noqa: UP006
    contract: str,
    policy: str,
    registry: str,
    training: Output[Model],
    metrics: Output[Metrics],
    roc: Output[ClassificationMetrics],
    report: Output[HTML],
    step: Output[Artifact],
) -> str:
    """Measure the heads together against the policy and the production model; returns pass or fail."""
    import json
    import shutil
    import tempfile
    from pathlib import Path

    from engage_components import timed
    from engage_components.steps import evaluate_step

    with timed("evaluate", step.path) as record, tempfile.TemporaryDirectory() as tmp:
        champion = None
        if registry:
            from engage.registry import Registry

            store = Registry(registry)
            if store.alias("production") is not None:
                champion = store.fetch("production", Path(tmp) / "champion")
        record.update(
            evaluate_step(
                Path(data.path), Path(features.path), contract, policy, [Path(h.path) for h in heads],
                Path(training.path), champion=champion,
            )
        )  # fmt: skip
    out = Path(training.path)
    shutil.copyfile(out / "report.html", report.path)
    for name, value in json.loads((out / "kfp" / "metrics.json").read_text()).items():
        metrics.log_metric(name, float(value))
    curves = json.loads((out / "kfp" / "classification_metrics.json").read_text())
    for curve in curves.values() if isinstance(curves, dict) else []:
        if "roc" in curve:
            roc.log_roc_curve(curve["roc"]["fpr"], curve["roc"]["tpr"], curve["roc"]["threshold"])
        if "confusion_matrix" in curve:
            roc.log_confusion_matrix(
                curve["confusion_matrix"]["categories"], curve["confusion_matrix"]["matrix"]
            )
        break  # one ClassificationMetrics artifact shows one classifier: the first
    # the figures live in the artifacts' metadata; files at their URIs let kfp.local's cache find them again
    Path(metrics.path).write_text(json.dumps(metrics.metadata))
    Path(roc.path).write_text(json.dumps(roc.metadata))
    return "pass" if record["passed"] else "fail"


@component
def business_metrics(
    data: Input[Dataset],
    training: Input[Model],
    contract: str,
    step: Output[Artifact],
) -> None:
    """Business figures of the table with the trained model's predictions (customers, DAU / WAU / MAU,
    churn rate, mean LTV and engagement score): the exit handler pushes them (job engage_business)."""
    from pathlib import Path

    from engage_components import timed
    from engage_components.steps import business_step

    with timed("business-metrics", step.path) as record:
        record.update(business_step(Path(data.path), contract, Path(training.path)))


@component
def fairness(
    data: Input[Dataset],
    features: Input[Artifact],
    training: Input[Model],
    contract: str,
    policy: str,
    fairness: Output[Model],
    report: Output[HTML],
    summary: Output[Markdown],
    step: Output[Artifact],
) -> str:
    """The fairness gate with mitigation; returns pass, pass_after_mitigation, fail or not_applicable (the contract says fairness does not apply)."""
    import shutil
    from pathlib import Path

    from engage_components import timed
    from engage_components.steps import fairness_step

    with timed("fairness", step.path) as record:
        record.update(
            fairness_step(
                Path(data.path),
                Path(features.path),
                contract,
                policy,
                Path(training.path),
                Path(fairness.path),
            )
        )
    shutil.copyfile(Path(fairness.path) / "report.html", report.path)
    shutil.copyfile(Path(fairness.path) / "summary.md", summary.path)
    return str(record["verdict"])


@component
def explain(
    data: Input[Dataset],
    training: Input[Model],
    fairness: Input[Model],
    contract: str,
    policy: str,
    seed: int,
    explanations: Output[Artifact],
    card: Output[Artifact],
    card_html: Output[HTML],
    card_markdown: Output[Markdown],
    step: Output[Artifact],
) -> None:
    """Global explanations, one customer's right-to-explanation document, and the model card."""
    import shutil
    from pathlib import Path

    from engage_components import timed
    from engage_components.steps import explain_step

    with timed("explain", step.path) as record:
        record.update(
            explain_step(
                Path(data.path), contract, policy, Path(training.path), Path(fairness.path),
                Path(explanations.path), Path(card.path), seed=seed,
            )
        )  # fmt: skip
    shutil.copyfile(Path(card.path) / "model_card.html", card_html.path)
    shutil.copyfile(Path(card.path) / "model_card.md", card_markdown.path)


@component
def review_sample(
    data: Input[Dataset],
    features: Input[Artifact],
    training: Input[Model],
    fairness: Input[Model],
    contract: str,
    size: int,
    seed: int,
    governance_db: str,
    sample: Output[Artifact],
    step: Output[Artifact],
) -> None:
    """A stratified sample of the scored test rows (``size``, 0: none) into the human review queue of the
    governance database ``governance_db`` (empty: ``ENGAGE_GOVERNANCE_DATABASE_URL``, else the embedded
    SQLite file); ``sample`` holds the count per stratum. The run's id is its folder, as in ``timed``."""
    from pathlib import Path

    from engage_components import run_folder, timed
    from engage_components.steps import review_sample_line, review_sample_step

    run_id = run_folder(sample.path)
    with timed("review-sample", step.path) as record:
        done = review_sample_step(
            Path(data.path), Path(features.path), contract, Path(training.path), Path(fairness.path),
            Path(sample.path), size=size, seed=seed, run_id=run_id, database_url=governance_db,
        )  # fmt: skip
        record.update({k: done[k] for k in ("run_id", "items") if k in done}, strata=len(done["strata"]))
    print(review_sample_line(done), flush=True)


@component
def batch_score(
    data: Input[Dataset],
    contract: str,
    registry: str,
    version: str,
    out_uri: str,
    engine: str,
    reasons: int,
    scores: Output[Artifact],
    step: Output[Artifact],
) -> str:
    """Score every customer of the table (its latest extract) with registry version ``version``
    (production by default) into partitioned Parquet under ``out_uri`` (empty: the ``scores`` artifact):
    the heads, the bundle's fairness offsets, ``reasons`` reason codes; rejected rows quarantined. Fails
    when more than 5 % of the rows are rejected (nothing committed but the quarantine and the report)."""
    from pathlib import Path

    from engage.errors import DataError
    from engage_components import timed
    from engage_components.steps import batch_score_line, batch_score_step

    with timed("batch-score", step.path) as record:
        done = batch_score_step(
            Path(data.path), contract, Path(scores.path), registry_uri=registry, version=version,
            out_uri=out_uri, engine=engine, reasons=reasons,
        )  # fmt: skip
        record.update({k: done[k] for k in ("verdict", "rows", "scored", "quarantined") if k in done})
    print(batch_score_line(done), flush=True)
    if done["verdict"] == "fail":
        raise DataError(f"batch scoring failed: {done['notes'][0]}")
    return str(done["verdict"])


@component
def drift_reference(
    data: Input[Dataset],
    features: Input[Artifact],
    contract: str,
    policy: str,
    seed: int,
    reference: Output[Dataset],
    step: Output[Artifact],
) -> None:
    """The training distribution the drift detector will compare serving traffic against."""
    from pathlib import Path

    from engage_components import timed
    from engage_components.steps import drift_reference_step

    with timed("drift-reference", step.path) as record:
        record.update(
            drift_reference_step(
                Path(data.path), Path(features.path), contract, policy, Path(reference.path), seed=seed
            )
        )


@component
def promote(
    quality: Input[Artifact],
    training: Input[Model],
    fairness: Input[Model],
    explanations: Input[Artifact],
    card: Input[Artifact],
    reference: Input[Dataset],
    policy: str,
    registry: str,
    canary_percent: int,
    run_id: str,
    promotion: Output[Artifact],
    verdict: Output[Markdown],
    step: Output[Artifact],
) -> str:
    """Judge the run by the whole promotion policy; publish, move aliases, render the InferenceService."""
    import shutil
    from pathlib import Path

    from engage_components import run_folder, timed
    from engage_components.steps import promote_step

    with timed("promote", step.path) as record:
        record.update(
            promote_step(
                registry_uri=registry, run_id=run_id, policy_path=policy, training=Path(training.path),
                quality=Path(quality.path), fairness=Path(fairness.path), explanations=Path(explanations.path),
                card=Path(card.path), drift=Path(reference.path), out_dir=Path(promotion.path),
                canary_percent=canary_percent, run_name=run_folder(promotion.path),
            )
        )  # fmt: skip
    shutil.copyfile(Path(promotion.path) / "promotion.md", verdict.path)
    return str(record["version"] or "not promoted")


@component
def record_outcome(
    status: dsl.PipelineTaskFinalStatus,
    registry: str,
    pushgateway: str,
    run_id: str,
    outcome: Output[Artifact],
) -> str:
    """The exit handler: always runs; records the run's outcome, step times and cost."""
    from pathlib import Path

    from engage_components._record import record_outcome as record

    error = status.error_message if status.state != "SUCCEEDED" else ""
    result = record(
        state=status.state, error=error, outcome_uri=outcome.uri, outcome_path=Path(outcome.path),
        run_id=run_id, registry_uri=registry, pushgateway=pushgateway,
    )  # fmt: skip
    return str(result["state"])


@component
def rollout(
    promotion: Input[Artifact],
    prometheus: str,
    isvc: str,
    namespace: str,
    stable: str,
    canary: str,
    period: str,
    interval: str,
    policy: str,
    apply: bool,
    governance_db: str,
    rollout: Output[Artifact],
    step: Output[Artifact],
) -> str:
    """After promotion: watch the canary through Prometheus (``prometheus``; empty: skipped, and why),
    then promote it to all the traffic or roll it back (kubectl patch with ``apply``), recorded on the
    audit trail; returns promote, rollback, insufficient_data or skipped. A rollback fails the step after
    the record. Targets and the InferenceService default to the promotion's (docs/rollout.md)."""
    from pathlib import Path

    from engage.errors import DeployError
    from engage_components import timed
    from engage_components._loop import rollout_line, rollout_step

    with timed("rollout", step.path) as record:
        done = rollout_step(
            Path(rollout.path), promotion=Path(promotion.path), prometheus=prometheus, isvc=isvc,
            namespace=namespace, stable=stable, canary=canary, period=period, interval=interval,
            policy=policy, apply=apply, governance_db=governance_db, say=lambda line: print(line, flush=True),
        )  # fmt: skip
        record.update({k: done[k] for k in ("outcome", "audit_seq") if k in done})
    print(rollout_line(done), flush=True)
    if done["outcome"] == "rollback":
        raise DeployError(f"the canary was rolled back: {done['reason']}")
    return str(done["outcome"])


@component
def feedback(
    events_uri: str,
    outcomes_uri: str,
    days: int,
    since: str,
    until: str,
    contract: str,
    policy: str,
    reference_uri: str,
    pushgateway: str,
    retrain: bool,
    train_params: dict,
    kfp_host: str,
    experiment: str,
    governance_db: str,
    report: Output[Artifact],
    summary: Output[Markdown],
    metrics: Output[Metrics],
    step: Output[Artifact],
) -> str:
    """The feedback loop: the window's logged predictions joined with their outcomes, judged by the policy
    (live accuracy, live fairness, prediction drift), pushed to ``pushgateway``; with ``retrain`` a training
    run started on ``kfp_host`` when the policy is crossed (audit record). Returns the verdict: pass,
    no_labels or fail (a crossed policy is a finding, not a failed step)."""
    import json
    import shutil
    from pathlib import Path

    from engage_components import timed
    from engage_components._loop import feedback_line, feedback_step

    with timed("feedback", step.path) as record:
        done = feedback_step(
            Path(report.path), events_uri=events_uri, outcomes_uri=outcomes_uri, days=days, since=since,
            until=until, contract=contract, policy=policy, reference_uri=reference_uri, pushgateway=pushgateway,
            retrain=retrain, train_params=dict(train_params), kfp_host=kfp_host, experiment=experiment,
            governance_db=governance_db,
        )  # fmt: skip
        record.update({k: done[k] for k in ("verdict", "predictions", "labelled")})
    shutil.copyfile(Path(report.path) / "report.md", summary.path)
    for key in ("predictions", "labelled", "coverage"):
        metrics.log_metric(key, float(done[key]))
    Path(metrics.path).write_text(json.dumps(metrics.metadata))
    print(feedback_line(done), flush=True)
    return str(done["verdict"])
