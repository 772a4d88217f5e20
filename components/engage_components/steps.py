"""The work of each pipeline step, as plain functions of paths and values.

A KFP component (:mod:`engage_components.components`) is a typed signature that calls one of these with
its artifacts' paths; tests call them directly. Each writes its outputs completely or not at all
(staging folders and atomic renames, as everywhere in Engage) and returns a small JSON-able summary.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engage._io import replace_dir, sha256_file, staging_dir, write_text_atomic

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = [
    "batch_score_line",
    "batch_score_step",
    "drift_reference_step",
    "evaluate_step",
    "explain_step",
    "fairness_step",
    "features_step",
    "load_data_step",
    "promote_step",
    "review_sample_step",
    "train_head_step",
    "validate_step",
]

FEATURES_FILE = "features.json"
SPLIT_FILE = "split.npz"
HEAD_FILE = "head.json"


def _contract(path: str) -> Any:
    from engage.contract import load_contract

    return load_contract(path or None)


def _policy(path: str) -> Any:
    from engage.policy import load_policy

    return load_policy(path or None)


def _frame(data: Path, contract: Any) -> Any:
    from engage.tables import conform, read_table

    return conform(read_table(data), contract).frame


# ---- data -------------------------------------------------------------------------------------------


def load_data_step(
    out: Path,
    *,
    data_uri: str,
    rows: int,
    seed: int,
    snapshots: int,
    defect_rate: float,
    bias: float,
    drift: float,
    as_of: str,
) -> dict[str, Any]:
    """The run's table: copied from ``data_uri`` (a path or any fsspec URL), else generated."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if data_uri:
        import fsspec  # type: ignore[import-untyped]

        from engage.errors import DataError

        try:
            with fsspec.open(data_uri, "rb") as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst)  # KFP fixes the artifact's path: read_table reads the content
        except FileNotFoundError:
            raise DataError(f"{data_uri}: no such file") from None
        source = data_uri
    else:
        from engage.synthetic import DefectKind, SyntheticConfig, generate_customers
        from engage.tables import write_table

        when = (
            datetime.fromisoformat(as_of)
            if as_of
            else datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        )
        stamp = when.isoformat()
        config = SyntheticConfig(
            rows=rows,
            seed=seed,
            as_of=when,
            defects=dict.fromkeys(DefectKind, defect_rate) if defect_rate else {},
            bias=bias,
            drift=drift,
            snapshots=snapshots,
        )
        write_table(generate_customers(config).frame, out)
        source = f"generated: {rows:,} customers, seed {seed}, {snapshots} extract(s), as of {stamp}"
    return {"source": source, "sha256": sha256_file(out), "bytes": out.stat().st_size}


def validate_step(
    data: Path, contract_path: str, report_dir: Path, remediated: Path, *, pushgateway: str = ""
) -> dict[str, Any]:
    """The data-quality gate: every report in ``report_dir``, the repaired table at ``remediated``; the
    data-quality metrics pushed to ``pushgateway`` when one is given (job engage_data_quality)."""
    from engage.quality import data_quality_registry, push_metrics, run_gate

    contract = _contract(contract_path)
    gate = run_gate(data, contract, out_dir=report_dir)
    if pushgateway:
        push_metrics(data_quality_registry(gate), pushgateway, instance=contract.contract)
    if (report_dir / "remediated.parquet").is_file():
        remediated.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(report_dir / "remediated.parquet", remediated)
    report = json.loads((report_dir / "report.json").read_text(encoding="utf-8"))
    return {"verdict": gate.verdict, "reason": gate.reason, "rows_in": report.get("rows_in"),
            "rows_out": report.get("rows_out"), "rows_quarantined": report.get("rows_quarantined")}  # fmt: skip


# ---- features and training --------------------------------------------------------------------------


def features_step(
    data: Path, contract_path: str, out_dir: Path, *, seed: int, heads: list[str] | None = None
) -> dict[str, Any]:
    """Decide the heads (``heads``, or every target the contract defines), the model inputs and the split
    once, for every head: features.json and split.npz. ``heads`` in the answer is what the pipeline
    trains in parallel."""
    from engage.features import fit_feature_set, time_split
    from engage.model import plan_heads

    contract = _contract(contract_path)
    planned, _ = plan_heads(contract, heads or None)
    frame = _frame(data, contract)
    split = time_split(frame, contract, seed=seed)
    features = fit_feature_set(frame.iloc[split.train], contract)
    with staging_dir(out_dir) as stage:
        write_text_atomic(stage / FEATURES_FILE, features.to_json() + "\n")
        np.savez(stage / SPLIT_FILE, train=split.train, valid=split.valid, test=split.test, rows=len(frame))
        write_text_atomic(stage / "split.json", json.dumps({"how": split.how, "rows": len(frame)}) + "\n")
        replace_dir(stage, out_dir)
    return {"features": len(features.columns), "split": split.how, "rows": len(frame),
            "heads": [h.name for h in planned]}  # fmt: skip


def read_features(folder: Path) -> tuple[Any, Any]:
    """The FeatureSet and Split a features step wrote (no pickles: ``allow_pickle=False``)."""
    from engage.features import FeatureSet, Split

    features = FeatureSet.from_json((folder / FEATURES_FILE).read_text(encoding="utf-8"))
    with np.load(folder / SPLIT_FILE, allow_pickle=False) as parts:
        how = json.loads((folder / "split.json").read_text(encoding="utf-8"))["how"]
        split = Split(train=parts["train"], valid=parts["valid"], test=parts["test"], how=how)
    return features, split


def train_head_step(
    data: Path,
    features_dir: Path,
    contract_path: str,
    head: str,
    out_dir: Path,
    *,
    seed: int,
    max_rounds: int,
) -> dict[str, Any]:
    """Fit one head (xgboost and the scikit-learn baseline) on the shared features and split."""
    from engage.training import TrainConfig, train

    contract = _contract(contract_path)
    frame = _frame(data, contract)
    features, split = read_features(features_dir)
    config = TrainConfig(seed=seed, max_rounds=max_rounds)
    result = train(frame, contract, heads=[head], config=config, features=features, split=split)
    with staging_dir(out_dir) as stage:
        result.bundle("xgboost").save(stage / "xgboost")
        result.bundle("sklearn").save(stage / "sklearn")
        info = {"head": head, "config": config.model_dump(), "notes": result.notes,
                "seconds": result.heads[head].seconds}  # fmt: skip
        write_text_atomic(stage / HEAD_FILE, json.dumps(info, indent=2) + "\n")
        replace_dir(stage, out_dir)
    return {"head": head, "seconds": round(sum(result.heads[head].seconds.values()), 2)}


def evaluate_step(
    data: Path,
    features_dir: Path,
    contract_path: str,
    policy_path: str,
    head_dirs: list[Path],
    out_dir: Path,
    *,
    champion: Path | None = None,
) -> dict[str, Any]:
    """Measure the heads trained apart, together: metrics, the policy, champion / challenger, reports."""
    from engage.training import TrainConfig, load_bundle, measure, write_outputs

    contract = _contract(contract_path)
    frame = _frame(data, contract)
    features, split = read_features(features_dir)
    models: dict[str, dict[str, Any]] = {}
    seconds: dict[str, dict[str, float]] = {}
    notes: list[str] = []
    config: TrainConfig | None = None
    for folder in head_dirs:
        info = json.loads((folder / HEAD_FILE).read_text(encoding="utf-8"))
        name = info["head"]
        models[name] = {
            learner: load_bundle(folder / learner).heads[name] for learner in ("xgboost", "sklearn")
        }
        seconds[name], config = info["seconds"], TrainConfig(**info["config"])
        notes += info["notes"]
    order = [h for h in contract.targets if h in models]  # the contract's order, not the fan-in's
    result = measure(
        frame,
        contract,
        features=features,
        split=split,
        models={h: models[h] for h in order},
        policy=_policy(policy_path),
        config=config,
        seconds=seconds,
        notes=notes,
        champion=champion,
    )
    write_outputs(result, frame, out_dir)
    return {
        "passed": result.verdict.passed,
        "failures": [f"{r.head}: {r.rule}" for r in result.verdict.failures],
        "champion": result.champion.winner if result.champion is not None else None,
        # the primary learner's test-set figures, pushed by the exit handler (engage_model_metric)
        "model_metrics": {
            name: {k: float(v) for k, v in head.metrics["xgboost"]["test"].items()}
            for name, head in result.heads.items()
        },
    }


# ---- business metrics -------------------------------------------------------------------------------

#: active-customer windows (DAU, WAU, MAU) in days
ACTIVE_WINDOWS = {"1d": 1, "7d": 7, "30d": 30}


def business_step(data: Path, contract_path: str, training: Path) -> dict[str, Any]:
    """Business figures of the table the run read, with the trained model's predictions on every
    customer: customers, active customers by window (from the contract's ``last_active`` column, as of
    the table's newest event time), churn rate (churn probability >= 0.5), mean LTV and engagement score
    (the heads the contract defines; a figure whose column or head is absent is left out)."""
    from engage.training import load_bundle

    contract = _contract(contract_path)
    frame = _frame(data, contract)
    figures: dict[str, Any] = {"table": contract.contract, "customers": len(frame)}
    if contract.last_active is not None:
        figures["active"] = active_customers(frame, contract)
    predictions = load_bundle(training / "model").predict(frame)
    for head, key, churn in (
        ("churn", "churn_rate", True),
        ("ltv", "ltv_mean", False),
        ("engagement_score", "engagement_score_mean", False),
    ):
        target = contract.targets.get(head)
        column = next((c for c in predictions.columns if target is not None and c.startswith(head)), None)
        if column is None:
            continue
        values = predictions[column].astype(float)
        figures[key] = float((values >= 0.5).mean() if churn else values.mean())
    return {"business": figures}


def active_customers(frame: Any, contract: Any) -> dict[str, int]:
    """Customers active within each window of :data:`ACTIVE_WINDOWS`, as of the table's newest event
    time (or now): ``last_active`` is a date / datetime, or a number of days since the activity."""
    import pandas as pd

    column = frame[contract.last_active]
    if contract.columns[contract.last_active].type.is_numeric:
        days = pd.to_numeric(column, errors="coerce")
    else:
        last = pd.to_datetime(column, errors="coerce", utc=True)
        et = contract.event_time.column if contract.event_time is not None else None
        as_of = (
            pd.to_datetime(frame[et], errors="coerce", utc=True).max() if et else pd.Timestamp.now(tz="UTC")
        )
        days = (as_of.normalize() - last.dt.normalize()).dt.days
    return {window: int((days < size).sum()) for window, size in ACTIVE_WINDOWS.items()}


# ---- fairness, explanations, drift ------------------------------------------------------------------


def fairness_step(
    data: Path, features_dir: Path, contract_path: str, policy_path: str, training: Path, out_dir: Path
) -> dict[str, Any]:
    """The fairness gate on the trained model's test rows, with mitigation; the chosen model unless fail."""
    from engage.fairness import assess, write_fairness
    from engage.training import TrainConfig, load_bundle

    contract = _contract(contract_path)
    frame = _frame(data, contract)
    _, split = read_features(features_dir)
    bundle = load_bundle(training / "model")
    config = TrainConfig(**bundle.metadata.get("config", {}))
    result = assess(frame, contract, bundle, split, config=config, policy=_policy(policy_path))
    write_fairness(result, out_dir)
    return {
        "verdict": result.verdict,
        "heads": {n: h.verdict for n, h in result.heads.items()},
        "parity": parity_ratios(result),
    }


#: the parity figure of a classification / regression head: the lowest group ratio of selection rates
#: or of mean predictions
PARITY_FIGURES = ("demographic_parity_ratio", "mean_prediction_ratio")


def parity_ratios(result: Any) -> dict[str, dict[str, float]]:
    """``{head: {attribute: ratio}}`` of the candidate each head ships (none where nothing ships or
    fairness does not apply), for ``engage_fairness_parity_ratio``."""
    import math

    ratios: dict[str, dict[str, float]] = {}
    for name, head in result.heads.items():
        if head.chosen is None or head.verdict == "not_applicable":
            continue
        chosen = head.candidate(head.chosen)
        for attribute, figures in chosen.fairness.items():
            figure = next((figures.summary[k] for k in PARITY_FIGURES if k in figures.summary), None)
            if figure is not None and math.isfinite(figure.value):
                ratios.setdefault(name, {})[attribute] = float(figure.value)
    return ratios


def explain_step(
    data: Path,
    contract_path: str,
    policy_path: str,
    training: Path,
    fairness: Path | None,
    explanations_dir: Path,
    card_dir: Path,
    *,
    seed: int,
) -> dict[str, Any]:
    """Global explanations of the model that would ship, one customer's document, and the model card."""
    from engage.explain import Explainer, customer_explanation, global_summary
    from engage.features import design_matrix
    from engage.modelcard import build_model_card, write_model_card
    from engage.promotion import RunArtifacts
    from engage.training import load_bundle

    contract = _contract(contract_path)
    frame = _frame(data, contract)
    model_dir = RunArtifacts(training=training, fairness=fairness).model
    bundle = load_bundle(model_dir)
    explainer = Explainer(bundle, contract, frame)
    summary = global_summary(explainer, frame, contract, _policy(policy_path), seed=seed)
    head = explainer.default_head
    risk = bundle.heads[head].predict(design_matrix(frame, bundle.features))
    customer = str(frame[contract.primary_key[0]].iloc[int(risk.argmax())])
    document = customer_explanation(explainer, frame, customer)
    with staging_dir(explanations_dir) as stage:
        write_text_atomic(stage / "global.json", json.dumps(summary.to_dict(), indent=2) + "\n")
        document.write(stage / "customers" / customer)
        replace_dir(stage, explanations_dir)
    card = build_model_card(
        training,
        fairness_dir=fairness if fairness is not None and (fairness / "fairness.json").is_file() else None,
        explanations=explanations_dir / "global.json",
        contract=contract,
        model_dir=model_dir,
    )
    write_model_card(card, card_dir)
    return {"model_version": bundle.version, "customer": customer,
            "reasons": [r["text"] for r in document.reasons[head][:3]]}  # fmt: skip


def drift_reference_step(
    data: Path, features_dir: Path, contract_path: str, policy_path: str, out_dir: Path, *, seed: int
) -> dict[str, Any]:
    """What the drift detector compares traffic against: a seeded sample of model inputs
    (``reference.parquet``) and per-feature summaries (``summary.json``).

    The rows sampled are the policy's ``drift.source``: by default the customers of the table's latest
    extract, the population the model scores next (:func:`_latest_rows`); or the training split."""
    from engage.tables import write_table

    contract = _contract(contract_path)
    policy = _policy(policy_path)
    frame = _frame(data, contract)
    features, split = read_features(features_dir)
    watched = policy.drift.features or features.columns
    unknown = [f for f in watched if f not in features.columns]
    if unknown:
        from engage.errors import ConfigError

        raise ConfigError(
            f"policy drift.features names columns that are not model inputs: {', '.join(unknown)}"
        )
    if policy.drift.source == "training":
        pool, source = split.train, "training split"
    else:
        pool, source = _latest_rows(frame, contract)
    rng = np.random.default_rng(seed)
    rows = (
        pool
        if len(pool) <= policy.drift.reference_rows
        else np.sort(rng.choice(pool, policy.drift.reference_rows, replace=False))
    )
    reference = frame.iloc[rows][list(watched)].reset_index(drop=True)
    summary: dict[str, Any] = {
        "rows": len(reference),
        "available_rows": len(pool),
        "source": source,
        "features": list(watched),
        "categorical": {n: features.categorical[n] for n in watched if n in features.categorical},
        "p_value": policy.drift.p_value,
        "seed": seed,
        "stats": _feature_stats(reference, features),
    }
    with staging_dir(out_dir) as stage:
        write_table(reference, stage / "reference.parquet")
        write_text_atomic(stage / "summary.json", json.dumps(summary, indent=2, default=float) + "\n")
        replace_dir(stage, out_dir)
    return {"rows": len(reference), "features": len(watched)}


def _latest_rows(frame: Any, contract: Any) -> tuple[npt.NDArray[np.intp], str]:
    """Positions of the rows of the latest extract (the contract's event time), and what they are; every
    row when the table holds one extract or the contract names no event time."""
    import pandas as pd

    event = contract.event_time.column if contract.event_time is not None else None
    if event is not None and event in frame.columns:
        times = pd.to_datetime(frame[event], utc=True)
        if times.nunique() > 1:
            latest = times.max()
            rows = np.flatnonzero((times == latest).to_numpy())
            return rows, f"latest extract ({event} {latest.isoformat()})"
    return np.arange(len(frame)), "whole table (one extract)"


def _feature_stats(reference: Any, features: Any) -> dict[str, Any]:
    stats: dict[str, Any] = {}
    for name in reference.columns:
        column = reference[name]
        if name in features.categorical:
            shares = column.astype("string").value_counts(normalize=True, dropna=False)
            stats[name] = {"shares": {str(k): float(v) for k, v in shares.items()}}
        else:
            values = column.to_numpy(dtype="float64", na_value=np.nan)
            known = values[~np.isnan(values)]
            quantiles = np.quantile(known, [0.01, 0.25, 0.5, 0.75, 0.99]).tolist() if len(known) else []
            stats[name] = {"mean": float(known.mean()) if len(known) else None, "quantiles": quantiles,
                           "missing_share": float(np.isnan(values).mean())}  # fmt: skip
    return stats


# ---- human review -----------------------------------------------------------------------------------


def review_sample_step(
    data: Path,
    features_dir: Path,
    contract_path: str,
    training: Path,
    fairness: Path | None,
    out: Path,
    *,
    size: int,
    seed: int,
    run_id: str,
    database_url: str = "",
) -> dict[str, Any]:
    """Put a stratified sample of the run's scored test rows in the human review queue.

    The test split's rows are scored by the model that would ship (the fairness gate's choice, else the
    trained one: its ``model_version`` is the registry version promotion publishes); strata are the
    contract's protected groups crossed with quintiles of the first classification head's score
    (:func:`engage.governance._sample.review_sample`). ``size`` 0 puts nothing in the queue. Writes
    ``out`` (JSON: run id, model version, count per stratum; no customer id) and returns the same.
    A database that cannot be reached fails the step with a :class:`~engage.errors.GovernanceError`.
    """
    from engage.contract import Role

    summary: dict[str, Any] = {"run_id": run_id, "size": size, "items": 0, "strata": {}}
    if size <= 0:
        summary["note"] = "review sample disabled (review_sample=0): nothing put in the queue"
        return _write_sample_summary(out, summary)
    import pandas as pd

    from engage.governance import open_database
    from engage.governance._review import ReviewQueue
    from engage.governance._sample import review_sample
    from engage.model import load_bundle
    from engage.promotion import RunArtifacts

    db = open_database(database_url or None)  # unreachable: fail now, before the scoring
    contract = _contract(contract_path)
    frame = _frame(data, contract)
    _, split = read_features(features_dir)
    rows = frame.iloc[split.test].reset_index(drop=True)
    bundle = load_bundle(RunArtifacts(training=training, fairness=fairness).model)
    predictions = bundle.predict(rows)
    outputs = [str(c) for c in predictions.columns]
    # the customer id: the primary key's id column, else any id column; a table without one samples anyway
    keys = [c for c in contract.primary_key if contract.columns[c].role is Role.id]
    id_column = next((c for c in keys or contract.by_role(Role.id) if c in rows.columns), None)
    features = [c for c in contract.features if c in rows.columns]
    protected = [c for c in contract.protected if c in rows.columns and c not in outputs]
    score = next((m.head.output for m in bundle.heads.values() if m.head.classification), None)
    scored = rows[list(dict.fromkeys([*([id_column] if id_column else []), *features, *protected]))].copy()
    scored = pd.concat([scored, predictions.reset_index(drop=True)], axis=1)
    items = review_sample(
        scored, size=size, strata=protected, id_column=id_column, outputs=outputs, feature_columns=features,
        run_id=run_id, model_version=bundle.version, seed=seed, score_column=score or outputs[0],
        bins={c: contract.columns[c].bins or [] for c in protected},
    )  # fmt: skip
    added = ReviewQueue(db).add(items)
    strata: dict[str, int] = {}
    for item in items:
        strata[str(item.stratum)] = strata.get(str(item.stratum), 0) + 1
    summary.update(
        items=len(added), rows=len(scored), model_version=bundle.version, database=db.name,
        score=score or outputs[0], strata_by=protected, strata=dict(sorted(strata.items())),
        customer_ids=id_column is not None,
    )  # fmt: skip
    if id_column is None:
        summary["note"] = "the contract names no id column: the sample's items carry no customer id"
    return _write_sample_summary(out, summary)


def _write_sample_summary(out: Path, summary: dict[str, Any]) -> dict[str, Any]:
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, json.dumps(summary, indent=2) + "\n")
    return summary


def review_sample_line(summary: dict[str, Any]) -> str:
    """The step's one log line: counts, the run, the database (never a customer id nor a group)."""
    if not summary.get("items"):
        return f"review-sample: run {summary['run_id']}: {summary.get('note', 'nothing sampled')}"
    return (
        f"review-sample: run {summary['run_id']}: {summary['items']} of {summary['rows']} scored test rows "
        f"in {len(summary['strata'])} strata ({', '.join(summary['strata_by']) or 'no protected attribute'} "
        f"x {summary['score']} quintiles) put in the review queue at {summary['database']}"
        + ("" if summary["customer_ids"] else "; the table has no id column: items carry no customer id")
    )


# ---- promotion --------------------------------------------------------------------------------------


def promote_step(
    *,
    registry_uri: str,
    run_id: str,
    policy_path: str,
    training: Path,
    quality: Path | None,
    fairness: Path | None,
    explanations: Path | None,
    card: Path | None,
    drift: Path | None,
    out_dir: Path,
    canary_percent: int = -1,
    run_name: str | None = None,
) -> dict[str, Any]:
    """Judge the run by the whole policy; publish, move aliases and render the InferenceService on a pass.

    ``canary_percent`` (0-100) overrides the policy's; -1 keeps it. ``run_name``: the run's folder (what
    the review sample's items name the run by), recorded beside the job id.
    """
    from engage.promotion import RunArtifacts, promote
    from engage.registry import Registry

    run = RunArtifacts(
        training=training,
        quality=quality,
        fairness=fairness,
        explanations=explanations,
        card=card,
        drift=drift,
    )
    policy = _policy(policy_path)
    if canary_percent >= 0:
        rollout = policy.promotion.model_copy(update={"canary_percent": canary_percent})
        policy = policy.model_copy(update={"promotion": rollout})
    from engage_serving.deploy import render_version

    result = promote(
        policy,
        run,
        registry=Registry(registry_uri),
        run_id=run_id,
        out_dir=out_dir,
        render=render_version,
        run_name=run_name,
    )
    return result.to_json()


# ---- batch scoring ----------------------------------------------------------------------------------


def batch_score_step(
    data: Path,
    contract_path: str,
    out_dir: Path,
    *,
    registry_uri: str,
    version: str = "production",
    out_uri: str = "",
    engine: str = "local",
    reasons: int = 0,
    run_date: str = "",
    max_rejected: float = 0.05,
) -> dict[str, Any]:
    """Score every customer of the run's table with registry version ``version`` (:func:`engage.scoring.
    score_table`): the latest extract when the table stacks several (the customers as they are now).
    Writes under ``out_uri`` (empty: ``out_dir``) and the run's report to ``out_dir/report.json``.
    ``version`` production while the registry has none: nothing to score with, said in the summary.
    ``engine`` dask: the cluster :func:`engage_components._dask.engine_cluster` gives (the operator's
    DaskCluster on EKS when the chart mounts its spec, else a LocalCluster)."""
    import tempfile
    from contextlib import nullcontext

    from engage.registry import Registry
    from engage.scoring import score_table

    contract = _contract(contract_path)
    registry = Registry(registry_uri)
    out_dir.mkdir(parents=True, exist_ok=True)
    if version == "production" and registry.alias("production") is None:
        summary: dict[str, Any] = {
            "verdict": "skipped",
            "note": f"registry {registry.location} has no production version yet",
        }
        write_text_atomic(out_dir / "report.json", json.dumps(summary, indent=2) + "\n")
        return summary
    when = datetime.fromisoformat(run_date).date() if run_date else None
    if engine == "dask":
        from engage_components._dask import engine_cluster

        cluster: Any = engine_cluster()
    else:
        cluster = nullcontext(None)
    with tempfile.TemporaryDirectory(prefix="engage-batch-") as tmp, cluster as dask_settings:
        table, rows, extract = _latest_extract(data, contract, Path(tmp))
        report = score_table(
            str(table), out_uri or str(out_dir), registry=registry_uri, ref=version, contract=contract,
            run_date=when, engine=engine, dask=dask_settings, reasons=reasons, max_rejected=max_rejected,
        )  # fmt: skip
    summary = {**report.to_json(), "table_rows": rows, "extract": extract}
    write_text_atomic(
        out_dir / "report.json", json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n"
    )
    return summary


def _latest_extract(data: Path, contract: Any, tmp: Path) -> tuple[Path, int, str | None]:
    """``data`` itself, or its rows of the latest extract time written to ``tmp`` when it has several."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    event = contract.event_time.column if contract.event_time is not None else None
    file = pq.ParquetFile(data)
    rows = file.metadata.num_rows
    if event is None or event not in file.schema_arrow.names:
        return data, rows, None
    table = pq.read_table(data)
    latest = pc.max(table[event])
    if not latest.is_valid or pc.count_distinct(table[event]).as_py() < 2:
        return data, rows, None
    path = tmp / "latest.parquet"
    pq.write_table(table.filter(pc.equal(table[event], latest)), path)
    return path, rows, str(latest.as_py())


def batch_score_line(summary: dict[str, Any]) -> str:
    if summary.get("verdict") == "skipped":
        return f"batch-score: skipped: {summary['note']}"
    share = summary["quarantined"] / summary["rows"] if summary["rows"] else 0.0
    return (
        f"batch-score: {summary['verdict']}: {summary['scored']:,} of {summary['rows']:,} customers scored by "
        f"{summary['model_version'][:19]} ({summary['engine']}), {summary['quarantined']:,} quarantined "
        f"({share:.2%}); {summary['files'].get('scores', 'no scores committed')}"
    )
