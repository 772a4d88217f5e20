"""Engage's Grafana dashboards as code (grafana-foundation-sdk): Operational, ML Model Health, Business
Metrics, Cost.

``make generate`` writes each one's JSON beside this file (``<uid>.json``, what Grafana imports and what
the chart ships as ConfigMaps); ``make check`` fails when a committed JSON is stale. Every query names
metrics of ``engage.telemetry.CATALOGUE`` or recording rules of ``monitoring/prometheus``;
``tests/integration/test_monitoring_stack.py`` runs every query against a real Prometheus scraping the real
stack and requires data from each.
"""

from __future__ import annotations

import json
from typing import Any

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef

DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
RATE = "5m"


def _query(expr: str, legend: str = "", ref: str = "A") -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref)


def series(title: str, unit: str, *queries: tuple[str, str], description: str = "", width: int = 12) -> Any:
    """A time series panel of one or more ``(expr, legend)`` queries."""
    panel = timeseries.Panel().title(title).unit(unit).datasource(DATASOURCE).height(8).span(width)
    if description:
        panel = panel.description(description)
    for index, (expr, legend) in enumerate(queries):
        panel = panel.with_target(_query(expr, legend, chr(ord("A") + index)))
    return panel


def single(
    title: str, unit: str, expr: str, legend: str = "", *, description: str = "", width: int = 6
) -> Any:
    """A stat panel of one query (its latest value)."""
    panel = stat.Panel().title(title).unit(unit).datasource(DATASOURCE).height(5).span(width)
    if description:
        panel = panel.description(description)
    return panel.with_target(_query(expr, legend))


def _board(uid: str, title: str, description: str) -> Any:
    variable = dashboard.DatasourceVariable("datasource").label("Prometheus").type("prometheus")
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["engage"])
        .refresh("30s")
        .time("now-6h", "now")
        .with_variable(variable)
    )


def operational() -> Any:
    """Serving: traffic, errors, latency against the SLO, refusals, readiness, the logger, explanations."""
    count = "engage_request_duration_seconds_count"
    return (
        _board("engage-operational", "Engage / Operational", "The three servers: traffic, errors, latency, readiness.")
        .with_row(dashboard.Row("Service level"))
        .with_panel(single("Availability (30 d)", "percentunit", "1 - max(engage:request_error_ratio:rate30d)",
                           description="Share of requests answered without a 5xx; objective 99.9 %"))
        .with_panel(single("Availability budget left", "percentunit",
                           "min(engage:slo_availability_error_budget_remaining:ratio)",
                           description="Of the 30-day budget (43 minutes of errors at 99.9 %)"))
        .with_panel(single("Requests under 200 ms (30 d)", "percentunit", "1 - max(engage:request_slow_ratio:rate30d)",
                           description="Objective: 95 % (the latency SLO, p95 < 200 ms)"))
        .with_panel(single("Latency budget left", "percentunit",
                           "min(engage:slo_latency_error_budget_remaining:ratio)"))
        .with_row(dashboard.Row("Traffic and errors"))
        .with_panel(single("Models ready", "short", "sum(engage_model_ready)",
                           description="Servers whose model passed its checks"))
        .with_panel(single("Requests per second (5 m)", "reqps", "sum(engage:requests:rate5m)"))
        .with_panel(single("Error ratio (5 m)", "percentunit", "max(engage:request_error_ratio:rate5m)"))
        .with_panel(single("Latency p95 (5 m)", "s", "max(engage:request_latency_p95_seconds:rate5m)",
                           description="Alert above 300 ms"))
        .with_panel(series("Requests per second", "reqps",
                           (f'sum by (job, instance, route) (rate({count}[{RATE}]))', "{{instance}} {{route}}")))
        .with_panel(series("Error ratio (5xx) of predictions", "percentunit",
                           ("engage:request_error_ratio:rate5m", "{{model}}"),
                           description="Alert above 1 %; 0 when no request failed"))
        .with_panel(series("Latency p95 by route", "s",
                           (f"histogram_quantile(0.95, sum by (le, route) "
                            f"(rate(engage_request_duration_seconds_bucket[{RATE}])))", "{{route}}"),
                           description="Alert above 300 ms; SLO 200 ms"))
        .with_panel(series("Refused requests by reason", "reqps",
                           (f"sum by (reason) (rate(engage_request_rejected_total[{RATE}]))", "{{reason}}")))
        .with_panel(series("Rows per request (p50)", "short",
                           (f"histogram_quantile(0.5, sum by (le, route) (rate(engage_request_rows_bucket[{RATE}])))",
                            "{{route}}")))
        .with_panel(series("Logger CloudEvents", "ops",
                           (f"sum by (outcome) (rate(engage_logger_events_total[{RATE}]))", "{{outcome}}"),
                           description="Request/response events the predictor posted to the drift detector"))
        .with_row(dashboard.Row("Explanations"))
        .with_panel(series("Explanation latency p95 by method", "s",
                           (f"histogram_quantile(0.95, sum by (le, method) "
                            f"(rate(engage_explain_duration_seconds_bucket[{RATE}])))", "{{method}}")))
        .with_panel(series("Sampling explanations in flight", "short",
                           ("sum(engage_explain_slow_in_flight)", "in flight")))
        .with_panel(series("KServe predict time p95", "s",
                           (f"histogram_quantile(0.95, sum by (le, model_name) "
                            f"(rate(request_predict_seconds_bucket[{RATE}])))", "{{model_name}}")))
        .with_panel(series("Served model version", "short",
                           ("max by (server, version) (engage_model_info)", "{{server}} {{version}}")))
    )  # fmt: skip


def model_health() -> Any:
    """Accuracy, fairness and drift: offline figures of the last run beside live drift and the feedback
    loop's live figures."""
    return (
        _board("engage-model-health", "Engage / ML Model Health",
               "Accuracy and fairness of the model the last run trained; drift of live traffic.")
        .with_row(dashboard.Row("Accuracy (last run, test set)"))
        .with_panel(series("R² by head", "none", ('engage_model_metric{metric="r2"}', "{{head}}"),
                           description="Alert below 0.75"))
        .with_panel(series("ROC AUC by head", "none", ('engage_model_metric{metric="auc_roc"}', "{{head}}")))
        .with_panel(series("RMSE by head", "none", ('engage_model_metric{metric="rmse"}', "{{head}}")))
        .with_panel(single("Last run promoted its model", "bool", "engage_model_promoted"))
        .with_row(dashboard.Row("Model SLOs (share of the last 30 days the objective held)"))
        .with_panel(single("Accuracy: R² > 0.75", "percentunit", "min(engage:slo_accuracy_sli:ratio30d)"))
        .with_panel(single("Parity > 0.80", "percentunit", "min(engage:slo_parity_sli:ratio30d)"))
        .with_panel(single("Freshness < 24 h", "percentunit", "min(engage:slo_freshness_sli:ratio30d)"))
        .with_panel(single("Accuracy budget left", "percentunit", "min(engage:slo_accuracy_error_budget_remaining:ratio)"))
        .with_row(dashboard.Row("Fairness"))
        .with_panel(series("Parity ratio by head and attribute", "percentunit",
                           ("engage_fairness_parity_ratio", "{{head}} {{attribute}}"),
                           description="Lowest ratio between groups; alert below 0.80"))
        .with_row(dashboard.Row("Drift (live traffic against the training reference)"))
        .with_panel(series("Feature drift (KS)", "none",
                           ('engage_drift_feature_statistic{test="ks"}', "{{feature}}"),
                           description="Alert above 0.1"))
        .with_panel(series("Prediction drift (KS)", "none", ("engage_prediction_drift_statistic", "{{head}}")))
        .with_panel(single("Drift detected", "bool", "max(engage_drift_detected)"))
        .with_panel(single("Outlier share", "percentunit", "max(engage_drift_outlier_share)"))
        .with_panel(series("Drift window rows", "short", ("engage_drift_window_rows", "{{model}}")))
        .with_panel(series("Median prediction by head", "none",
                           (f"histogram_quantile(0.5, sum by (le, head) (rate(engage_prediction_bucket[{RATE}])))",
                            "{{head}}")))
        .with_row(dashboard.Row("Live model (feedback loop: logged predictions joined with their outcomes)"))
        .with_panel(series("Live accuracy beside the test set", "none",
                           ('engage_live_metric{metric=~"auc_roc|r2"}', "{{head}} {{metric}} live"),
                           ('engage_model_metric{metric=~"auc_roc|r2"}', "{{head}} {{metric}} test set"),
                           description="Latest live report (engage feedback) against the last run's test set; "
                           "alert when a head crosses its policy rule"))
        .with_panel(series("Live fairness by head and attribute", "none",
                           ("engage_live_fairness", "{{head}} {{attribute}} {{metric}}"),
                           description="The fairness gate's figures on live traffic; alert when a rule is "
                           "crossed by its whole interval (bias drift)"))
        .with_panel(series("Prediction PSI by head", "none", ("engage_live_prediction_psi", "{{head}}"),
                           description="Logged predictions against the reference; alert above the policy's "
                           "threshold (0.2)"))
        .with_panel(series("Labelled rows by head", "short", ("engage_live_labelled_rows", "{{head}}")))
        .with_panel(series("Churn rate: predicted and realised", "percentunit",
                           ('engage_live_predicted_mean{head="churn"}', "predicted"),
                           ('engage_live_realised_mean{head="churn"}', "realised"),
                           description="Over the customers whose outcome came"))
        .with_panel(series("LTV: predicted and realised (mean)", "currencyUSD",
                           ('engage_live_predicted_mean{head="ltv"}', "predicted"),
                           ('engage_live_realised_mean{head="ltv"}', "realised"),
                           description="Over the customers whose outcome came"))
        .with_panel(single("Coverage (predictions with an outcome)", "percentunit", "min(engage_live_coverage)"))
        .with_panel(single("Live rules crossed", "short", "sum(1 - engage_live_rule_passed)",
                           description="Live accuracy, live fairness and prediction drift rules of the policy"))
        .with_panel(single("Live verdict passed", "bool", "min(engage_live_verdict_passed)"))
        .with_panel(single("Live report age", "s", "time() - max(engage_live_last_report_timestamp_seconds)",
                           description="The feedback run is daily; alert above 36 h"))
        .with_row(dashboard.Row("Data quality (last validated table)"))
        .with_panel(series("Null rate (worst column)", "percentunit",
                           ("max by (table) (engage_data_null_rate)", "{{table}}")))
        .with_panel(series("Schema violations", "short",
                           ("sum by (table) (engage_data_schema_violations)", "{{table}}")))
        .with_panel(series("Outlier rate (worst column)", "percentunit",
                           ("max by (table) (engage_data_outlier_rate)", "{{table}}")))
        .with_panel(series("Duplicate rows", "short", ("engage_data_duplicate_count", "{{table}}")))
        .with_panel(single("Data freshness", "h", "max(engage_data_freshness_hours)",
                           description="Alert above 24 h"))
        .with_panel(single("Quality gate passed", "bool", "min(engage_data_quality_gate_passed)"))
    )  # fmt: skip


def business() -> Any:
    """The customers behind the models: activity, churn, value."""
    return (
        _board("engage-business", "Engage / Business Metrics",
               "Computed by the pipeline's business-metrics step from the table it read and the trained model.")
        .with_panel(single("Customers", "short", "sum(engage_business_customers)"))
        .with_panel(single("Churn rate (predicted)", "percentunit", "avg(engage_business_churn_rate)"))
        .with_panel(single("Mean lifetime value", "currencyUSD", "avg(engage_business_ltv_mean)"))
        .with_panel(single("Mean engagement score", "none", "avg(engage_business_engagement_score_mean)"))
        .with_panel(series("Active customers: DAU, WAU, MAU", "short",
                           ('engage_business_active_customers{window="1d"}', "DAU"),
                           ('engage_business_active_customers{window="7d"}', "WAU"),
                           ('engage_business_active_customers{window="30d"}', "MAU"), width=24))
        .with_panel(series("Churn rate over runs", "percentunit", ("engage_business_churn_rate", "{{table}}")))
        .with_panel(series("Mean LTV over runs", "currencyUSD", ("engage_business_ltv_mean", "{{table}}")))
    )  # fmt: skip


def cost() -> Any:
    """What the pipeline costs, run by run and month to date (on-demand estimate)."""
    return (
        _board("engage-cost", "Engage / Cost", "Estimated on-demand cost of pipeline runs (EKS node prices).")
        .with_panel(single("Month to date", "currencyUSD", "engage_pipeline_cost_month_to_date_usd",
                           description="Alert above $500"))
        .with_panel(single("Last run", "currencyUSD", "engage_pipeline_run_cost_usd"))
        .with_panel(single("Last run succeeded", "bool", "engage_pipeline_run_success"))
        .with_panel(single("Hours since the last run", "h", "(time() - engage_pipeline_run_timestamp_seconds) / 3600"))
        .with_panel(series("Step wall time (last run)", "s", ("engage_pipeline_step_seconds", "{{step}}"), width=24))
        .with_panel(series("Cost month to date", "currencyUSD",
                           ("engage_pipeline_cost_month_to_date_usd", "month to date"),
                           ("engage_pipeline_run_cost_usd", "last run")))
    )  # fmt: skip


DASHBOARDS = {"engage-operational": operational, "engage-model-health": model_health,
              "engage-business": business, "engage-cost": cost}  # fmt: skip


def render(uid: str) -> str:
    """The dashboard's JSON as Grafana imports it."""
    return json.dumps(DASHBOARDS[uid]().build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """``(panel title, expr)`` of every query of a rendered dashboard."""
    return [
        (panel.get("title", ""), target["expr"])
        for panel in board.get("panels", [])
        for target in panel.get("targets") or []
        if target.get("expr")
    ]
