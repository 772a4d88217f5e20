"""The metrics catalogue: every metric in one place, well formed, and the only place metrics are made;
the pipeline's run metrics built from it; the business figures' active-customer windows."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from prometheus_client import generate_latest

from engage.contract import load_contract
from engage.telemetry import CATALOGUE, SOURCES, metric, series_names
from engage_components._record import month_cost, run_registries
from engage_components.steps import active_customers

ROOT = Path(__file__).resolve().parents[2]
CODE = [
    ROOT / "src" / "engage",
    ROOT / "serving" / "engage_serving",
    ROOT / "components" / "engage_components",
]
NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


def test_the_catalogue_is_well_formed() -> None:
    assert len(CATALOGUE) >= 45
    for name, spec in CATALOGUE.items():
        assert NAME.match(name), name
        assert name.startswith("engage_"), name
        assert spec.source in SOURCES, name
        assert spec.help, name
        assert not spec.help.endswith("."), name
        assert all(NAME.match(label) and not label.startswith("__") for label in spec.labels), name
        assert not name.endswith("_total"), f"{name}: a counter's _total is added on export"
        assert (spec.buckets is not None) == (spec.kind == "histogram"), name
    assert "engage_request_rejected_total" in series_names()
    assert "engage_request_duration_seconds_bucket" in series_names()
    assert 0.2 in CATALOGUE["engage_request_duration_seconds"].buckets  # type: ignore[operator]
    assert 0.3 in CATALOGUE["engage_request_duration_seconds"].buckets  # type: ignore[operator]


def test_an_unknown_metric_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match=re.escape("'engage_nope' is not in engage.telemetry.CATALOGUE")):
        metric("engage_nope")


def _sources() -> list[tuple[Path, str]]:
    return [(p, p.read_text(encoding="utf-8")) for root in CODE for p in sorted(root.rglob("*.py"))]


def test_code_makes_metrics_only_through_the_catalogue() -> None:
    """No prometheus_client metric is constructed by hand, and every name code asks for exists."""
    constructed = re.compile(r"\b(Gauge|Counter|Histogram|Summary)\(\s*[\"']")
    by_hand = [str(p.relative_to(ROOT)) for p, text in _sources() if constructed.search(text)]
    assert by_hand == []
    asked = {m for _, text in _sources() for m in re.findall(r"\bmetric\(\s*\"(engage_[a-z0-9_]+)\"", text)}
    assert asked - set(CATALOGUE) == set()
    assert len(asked) >= 40  # the servers, the quality gate and the pipeline all use it


def test_the_run_metrics_come_from_the_step_records() -> None:
    steps = [
        {"step": "validate", "seconds": 2.0},
        {"step": "evaluate", "seconds": 3.0, "model_metrics": {"ltv": {"r2": 0.81, "rmse": 120.5}}},
        {"step": "fairness", "seconds": 1.0, "parity": {"churn": {"gender": 0.91, "age": 0.84}}},
        {"step": "business-metrics", "seconds": 1.0, "business": {
            "table": "customers", "customers": 900, "active": {"1d": 10, "7d": 70, "30d": 300},
            "churn_rate": 0.2, "ltv_mean": 310.0}},
        {"step": "promote", "seconds": 0.5, "promoted": True, "version": "sha256:abc"},
    ]  # fmt: skip
    cost = {"on_demand_usd": 0.01, "month_to_date_usd": 12.5}
    registries = run_registries("SUCCEEDED", steps, cost)
    assert set(registries) == {"engage_pipeline", "engage_business"}
    pipeline = generate_latest(registries["engage_pipeline"]).decode()
    business = generate_latest(registries["engage_business"]).decode()
    for line in (
        "engage_pipeline_run_success 1.0",
        "engage_pipeline_run_cost_usd 0.01",
        "engage_pipeline_cost_month_to_date_usd 12.5",
        'engage_pipeline_step_seconds{step="evaluate"} 3.0',
        'engage_model_metric{head="ltv",metric="r2"} 0.81',
        'engage_fairness_parity_ratio{attribute="age",head="churn"} 0.84',
        "engage_model_promoted 1.0",
    ):
        assert line in pipeline, line
    for line in (
        'engage_business_customers{table="customers"} 900.0',
        'engage_business_active_customers{table="customers",window="7d"} 70.0',
        'engage_business_churn_rate{table="customers"} 0.2',
        'engage_business_ltv_mean{table="customers"} 310.0',
    ):
        assert line in business, line
    assert "engage_business_engagement_score_mean" not in business  # no such figure recorded
    failed = generate_latest(run_registries("FAILED", steps[:1], {"on_demand_usd": 0.0})["engage_pipeline"])
    assert b"engage_pipeline_run_success 0.0" in failed
    assert b"engage_model_metric" not in failed
    assert b"engage_model_promoted 0.0" in failed


def test_the_month_to_date_cost_counts_this_months_runs_only() -> None:
    audit = [
        {"event": "pipeline_run", "at": "2026-11-30T23:59:00+00:00", "cost_on_demand_usd": 9.0},
        {"event": "pipeline_run", "at": "2026-12-01T02:00:00+00:00", "cost_on_demand_usd": 1.5},
        {"event": "promotion", "at": "2026-12-02T02:00:00+00:00", "cost_on_demand_usd": 100.0},
        {"event": "pipeline_run", "at": "2026-12-06T02:00:00+00:00", "cost_on_demand_usd": 2.25},
    ]
    assert month_cost(audit, datetime(2026, 12, 7, tzinfo=UTC)) == pytest.approx(3.75)
    assert month_cost([], datetime(2026, 12, 7, tzinfo=UTC)) == 0.0


def test_active_customers_by_window_from_a_date_or_days_since() -> None:
    contract = load_contract(ROOT / "contracts" / "customers_contract.yml")
    frame = pd.DataFrame(
        {
            "snapshot_at": pd.to_datetime(["2026-12-07T01:00:00Z"] * 4),
            "last_activity_date": pd.to_datetime(
                ["2026-12-07", "2026-12-05", "2026-11-20", "2026-10-01"]
            ).date,
        }
    )
    assert active_customers(frame, contract) == {"1d": 1, "7d": 2, "30d": 3}
    days = contract.model_copy(update={"last_active": "days_since_last_activity"})
    frame["days_since_last_activity"] = [0, 2, 17, 67]
    assert active_customers(frame, days) == {"1d": 1, "7d": 2, "30d": 3}
