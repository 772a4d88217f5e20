"""What a run records about itself: each step's time, the run's cost, and its outcome.

Every component writes a small JSON record (``step`` output artifact): its name, when it started, how
long it ran, and what it found. The exit handler (:func:`record_outcome`) runs whatever happened, finds
the records of the steps that ran in this run (cached steps did not run and cost nothing), estimates the
run's cost from the resources each step requested (:data:`RESOURCES`, the same table the pipeline sets
its requests from) at EKS node prices, writes ``outcome.json``, appends an audit record to the registry,
and pushes the run's metrics to a Prometheus Pushgateway when one is given.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "RESOURCES",
    "CostSettings",
    "Resources",
    "estimate_cost",
    "month_cost",
    "push_run_metrics",
    "record_outcome",
    "run_registries",
    "timed",
]


@dataclass(frozen=True)
class Resources:
    cpu: float
    memory_gib: float

    @property
    def cpu_request(self) -> str:
        return f"{round(self.cpu * 1000)}m"

    @property
    def memory_request(self) -> str:
        return f"{round(self.memory_gib * 1024)}Mi"


#: what each step requests on a cluster (the pipeline sets these; the cost estimate prices them)
RESOURCES: dict[str, Resources] = {
    "load-data": Resources(1, 2),
    "validate": Resources(2, 4),
    "features": Resources(1, 2),
    "train-head": Resources(2, 4),
    "evaluate": Resources(1, 4),
    "fairness": Resources(2, 4),
    "explain": Resources(1, 4),
    "drift-reference": Resources(1, 2),
    "promote": Resources(0.5, 1),
    "business-metrics": Resources(1, 2),
    "review-sample": Resources(1, 2),
    "batch-score": Resources(2, 4),
    "rollout": Resources(0.25, 0.5),  # waits on Prometheus for the watch period
    "feedback": Resources(1, 2),  # the engage-feedback pipeline's one step
    "record-outcome": Resources(0.25, 0.5),
}


class CostSettings(BaseSettings):
    """EKS node prices the cost estimate uses (``ENGAGE_COST_*``); defaults: m5.xlarge in us-east-1."""

    model_config = SettingsConfigDict(env_prefix="ENGAGE_COST_", extra="forbid", frozen=True)

    node_type: str = "m5.xlarge"
    node_vcpu: float = Field(default=4, gt=0)
    node_memory_gib: float = Field(default=16, gt=0)
    on_demand_per_hour: float = Field(default=0.192, ge=0, description="USD per node-hour, on-demand")
    spot_per_hour: float = Field(default=0.0768, ge=0, description="USD per node-hour, Spot (typical)")
    target_per_run: float = Field(default=4.42, ge=0, description="The checklist's target cost per run")


def estimate_cost(steps: list[dict[str, Any]], settings: CostSettings | None = None) -> dict[str, Any]:
    """Price each step as its share of a node (the larger of its CPU and memory shares) for its time."""
    prices = settings or CostSettings()
    rows: list[dict[str, Any]] = []
    for record in steps:
        need = RESOURCES.get(str(record.get("step")), Resources(1, 2))
        share = max(need.cpu / prices.node_vcpu, need.memory_gib / prices.node_memory_gib)
        hours = float(record.get("seconds", 0.0)) / 3600
        rows.append(
            {
                "step": record.get("step"),
                "seconds": round(float(record.get("seconds", 0.0)), 2),
                "cpu": need.cpu,
                "memory_gib": need.memory_gib,
                "on_demand_usd": hours * share * prices.on_demand_per_hour,
                "spot_usd": hours * share * prices.spot_per_hour,
            }
        )
    on_demand = sum(r["on_demand_usd"] for r in rows)
    spot = sum(r["spot_usd"] for r in rows)
    return {
        "node_type": prices.node_type,
        "on_demand_usd": on_demand,
        "spot_usd": spot,
        "target_usd": prices.target_per_run,
        "below_target_by": prices.target_per_run / on_demand if on_demand > 0 else None,
        "steps": rows,
        "excluded": "the EKS control plane, idle node capacity, storage and data transfer",
    }


@contextlib.contextmanager
def timed(step: str, record_path: str) -> Iterator[dict[str, Any]]:
    """Cap the step's threads (:func:`engage.threads.cap_threads`), time the body and write the step's
    record to ``record_path`` (also when the body fails).

    When tracing is on (``engage.telemetry.tracing``: an OTLP endpoint configured), the step is one span
    of service ``engage-pipeline`` named after it, with the run's id (the folder two levels above the
    record, where the exit handler finds the run) and the step's status; a failure is recorded on it.
    Each KFP task is its own process, so the span is flushed before the step returns."""
    from engage.telemetry.tracing import PIPELINE, process_tracing, record_failure
    from engage.threads import cap_threads

    threads = cap_threads()
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    record: dict[str, Any] = {
        "step": step,
        "started": started.isoformat(timespec="seconds"),
        "threads": threads,
    }
    tracing = process_tracing(PIPELINE)
    span_scope = contextlib.ExitStack()
    span = None
    if tracing is not None:
        run_id = run_folder(record_path)
        span = span_scope.enter_context(
            tracing.root(step, {"engage.step": step, "engage.run.id": run_id, "engage.step.threads": threads})
        )
    try:
        yield record
        record["status"] = "succeeded"
    except BaseException as e:
        record["status"] = "failed"
        record["error"] = f"{type(e).__name__}: {e}"
        if span is not None:
            record_failure(span, e, refusals=False)
        raise
    finally:
        record["seconds"] = time.perf_counter() - t0
        path = Path(record_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
        if span is not None and tracing is not None:
            span.set_attribute("engage.step.status", record["status"])
            span_scope.close()  # the span ends (its exception, if any, is already recorded)
            tracing.flush()


def _job_root(outcome_uri: str) -> str:
    """The run's folder: outputs live at ``<pipeline root>/<run>/<task>/<output>``."""
    return outcome_uri.rstrip("/").rsplit("/", 2)[0]


def step_records(job_root: str) -> list[dict[str, Any]]:
    """The records of the steps that ran in this run (local folder or any fsspec URL)."""
    import fsspec  # type: ignore[import-untyped]

    fs, root = fsspec.core.url_to_fs(job_root)
    records = []
    for path in sorted(fs.glob(f"{root.rstrip('/')}/**/step")):
        try:
            with fs.open(path, "r") as f:
                records.append(json.load(f))
        except (OSError, ValueError):
            continue  # a step killed before it wrote its record: nothing to price
    return records


def record_outcome(
    *,
    state: str,
    error: str,
    outcome_uri: str,
    outcome_path: Path,
    run_id: str,
    registry_uri: str,
    pushgateway: str = "",
) -> dict[str, Any]:
    """The exit handler's work: ``outcome.json``, an audit record, and metrics for the Pushgateway."""
    steps = step_records(_job_root(outcome_uri))
    cost = estimate_cost(steps)
    now = datetime.now(UTC)
    registry = None
    if registry_uri:
        from engage.registry import Registry

        registry = Registry(registry_uri)
    earlier = month_cost(registry.audit(), now) if registry is not None else 0.0
    cost["month_to_date_usd"] = earlier + float(cost["on_demand_usd"])
    outcome = {
        "run_id": run_id,
        "state": state,
        "error": error or None,
        "finished": now.isoformat(timespec="seconds"),
        "steps": steps,
        "cost": cost,
    }
    outcome_path.parent.mkdir(parents=True, exist_ok=True)
    outcome_path.write_text(json.dumps(outcome, indent=2, default=str) + "\n", encoding="utf-8")
    if registry is not None:
        registry.record(
            {
                "event": "pipeline_run",
                "pipeline_run_id": run_id,
                "state": state,
                "error": error or None,
                "steps_run": len(steps),
                "cost_on_demand_usd": cost["on_demand_usd"],
            }
        )
    if pushgateway:
        push_run_metrics(pushgateway, state, steps, cost)
    return outcome


def month_cost(audit: list[dict[str, Any]], now: datetime) -> float:
    """On-demand cost of the earlier runs of ``now``'s calendar month (UTC), from the audit trail."""
    month = now.strftime("%Y-%m")
    return sum(
        float(r.get("cost_on_demand_usd") or 0.0)
        for r in audit
        if r.get("event") == "pipeline_run" and str(r.get("at", "")).startswith(month)
    )


#: the Pushgateway groups of a run's metrics (one group per job: each run replaces the last)
PIPELINE_JOB = "engage_pipeline"
BUSINESS_JOB = "engage_business"


def run_registries(state: str, steps: list[dict[str, Any]], cost: dict[str, Any]) -> dict[str, Any]:
    """The run's metrics by Pushgateway job, built from the catalogue (``engage.telemetry``): the run
    itself, the model it trained (test-set figures, parity of what ships, promoted or not), and the
    business figures of its table. A figure a step did not record (it did not run) is left out."""
    from prometheus_client import CollectorRegistry

    from engage.telemetry import metric

    pipeline = CollectorRegistry()
    metric("engage_pipeline_run_success").create(pipeline).set(1.0 if state == "SUCCEEDED" else 0.0)
    metric("engage_pipeline_run_cost_usd").create(pipeline).set(cost["on_demand_usd"])
    metric("engage_pipeline_cost_month_to_date_usd").create(pipeline).set(
        cost.get("month_to_date_usd", cost["on_demand_usd"])
    )
    metric("engage_pipeline_run_timestamp_seconds").create(pipeline).set(time.time())
    seconds = metric("engage_pipeline_step_seconds").create(pipeline)
    by_step: dict[str, dict[str, Any]] = {}
    for record in steps:
        seconds.labels(step=str(record.get("step"))).set(float(record.get("seconds", 0.0)))
        by_step[str(record.get("step"))] = record
    figures = by_step.get("evaluate", {}).get("model_metrics") or {}
    if figures:
        model_metric = metric("engage_model_metric").create(pipeline)
        for head, values in figures.items():
            for name, value in values.items():
                model_metric.labels(head=head, metric=name).set(float(value))
    parity = by_step.get("fairness", {}).get("parity") or {}
    if parity:
        ratio = metric("engage_fairness_parity_ratio").create(pipeline)
        for head, attributes in parity.items():
            for attribute, value in attributes.items():
                ratio.labels(head=head, attribute=attribute).set(float(value))
    metric("engage_model_promoted").create(pipeline).set(
        1.0 if by_step.get("promote", {}).get("promoted") else 0.0
    )
    registries = {PIPELINE_JOB: pipeline}
    business = by_step.get("business-metrics", {}).get("business")
    if business:
        registries[BUSINESS_JOB] = business_registry(business)
    return registries


def business_registry(figures: dict[str, Any]) -> Any:
    """The business gauges of one table (``engage_business_*``) from the business step's figures."""
    from prometheus_client import CollectorRegistry

    from engage.telemetry import metric

    registry = CollectorRegistry()
    table = str(figures["table"])
    metric("engage_business_customers").create(registry).labels(table).set(figures["customers"])
    active = figures.get("active") or {}
    if active:
        gauge = metric("engage_business_active_customers").create(registry)
        for window, count in active.items():
            gauge.labels(table, window).set(count)
    for key, name in (
        ("churn_rate", "engage_business_churn_rate"),
        ("ltv_mean", "engage_business_ltv_mean"),
        ("engagement_score_mean", "engage_business_engagement_score_mean"),
    ):
        if figures.get(key) is not None:
            metric(name).create(registry).labels(table).set(float(figures[key]))
    return registry


def push_run_metrics(gateway: str, state: str, steps: list[dict[str, Any]], cost: dict[str, Any]) -> None:
    """Replace each job's group on the Pushgateway (a run id label would grow without bound)."""
    from prometheus_client import push_to_gateway

    for job, registry in run_registries(state, steps, cost).items():
        push_to_gateway(gateway, job=job, registry=registry)


def run_folder(output_path: str) -> str:
    """The run a step output belongs to: its folder (``<pipeline root>/<run>/<task>/<output>``), the same
    under ``kfp.local`` and on a cluster, and stable across a cached step (a job-id placeholder is not)."""
    parts = Path(output_path).parts
    return parts[-3] if len(parts) >= 3 else ""
