"""Every Prometheus metric Engage emits, in one place.

Code creates its metrics from here (:meth:`MetricSpec.create`), ``make generate`` writes the reference
``docs/metrics.md`` from here, and the tests hold every alert rule, recording rule and dashboard panel to
these names: a metric renamed here and not in a rule or a panel fails the build.

prometheus_client is imported when a metric is created, never when this module is imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = [
    "CATALOGUE",
    "LATENCY_BUCKETS",
    "LTV_BUCKETS",
    "ROW_BUCKETS",
    "SOURCES",
    "UNIT_BUCKETS",
    "MetricSpec",
    "metric",
    "series_names",
]

Kind = Literal["counter", "gauge", "histogram"]

#: 0.2 s sits between 0.1 and 0.25, where KServe's default buckets jump: the latency SLO's threshold
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.25, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
UNIT_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))
LTV_BUCKETS = (10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 25000.0)
ROW_BUCKETS = (1, 2, 5, 10, 50, 100, 500, 1000, 5000, 10000)

#: where series come from: scraped from a server's ``/metrics``, or pushed by a pipeline step to the
#: Pushgateway under a job name
SOURCES: dict[str, str] = {
    "servers": "Every server (predictor, explainer, drift detector): `/metrics`, scraped. KServe's own "
    "histograms (`request_predict_seconds`, …, label `model_name`) sit beside these.",
    "predictor": "The predictor: `/metrics`, scraped.",
    "explainer": "The explainer: `/metrics`, scraped.",
    "drift_detector": "The drift detector: `/metrics`, scraped. Each gauge holds the latest window test.",
    "data_quality": "The pipeline's validate step (and `engage validate --push-gateway`): pushed with "
    '`job="engage_data_quality"`, `instance=<contract>`; also written to `metrics.prom` beside the gate\'s '
    "reports. Table-wide figures are `sum by (table)` of the per-column series.",
    "pipeline": 'The pipeline\'s exit handler: pushed with `job="engage_pipeline"` after every run, '
    "succeeded or failed (one group per pipeline: each run replaces the last).",
    "model": 'The pipeline\'s exit handler, for the model the run trained: pushed with `job="engage_pipeline"` '
    "(offline test-set figures; live figures come from the feedback loop).",
    "cloudwatch": "The CloudWatch bridge (`engage cloudwatch-bridge`): `/metrics` on "
    "`ENGAGE_CLOUDWATCH_METRICS_PORT`, scraped ([cloudwatch.md](cloudwatch.md)).",
    "business": 'The pipeline\'s business-metrics step: pushed with `job="engage_business"`, computed from the '
    "table the run read and the model's predictions on it.",
    "governance": "The audit trail's verification (`engage audit verify --pushgateway`, the chart's daily "
    '`engage-audit-verify` CronJob): pushed with `job="engage_audit"`, `instance=<trail>` after every '
    "verification that read the whole chain, intact or not (each replaces the last); a verification that "
    "could not run (database down) pushes nothing, so the timestamp ages.",
    "feedback": "The feedback loop (`engage feedback --pushgateway`, the recurring feedback run): pushed with "
    '`job="engage_feedback"`, `instance=<model>` after every live report, each replacing the last: the '
    "predictor's logged traffic joined with outcomes as they arrive ([feedback.md](feedback.md)).",
}


@dataclass(frozen=True)
class MetricSpec:
    """One metric: its name as exported (a counter's series end in ``_total``), kind, labels, meaning."""

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...]
    source: str
    buckets: tuple[float, ...] | None = None

    @property
    def series(self) -> str:
        """The series name a query uses: ``<name>_total`` for a counter, ``<name>_bucket`` … for a
        histogram (this returns the base name; see :meth:`series_names`)."""
        return f"{self.name}_total" if self.kind == "counter" else self.name

    def series_names(self) -> tuple[str, ...]:
        """Every series name the metric exports."""
        if self.kind == "counter":
            return (f"{self.name}_total", f"{self.name}_created")
        if self.kind == "histogram":
            return tuple(f"{self.name}{s}" for s in ("_bucket", "_count", "_sum", "_created"))
        return (self.name,)

    def create(self, registry: CollectorRegistry | None = None, *, extra_labels: tuple[str, ...] = ()) -> Any:
        """The prometheus_client metric, in ``registry`` (default: the process's default registry)."""
        import prometheus_client

        kwargs: dict[str, Any] = {}
        if registry is not None:
            kwargs["registry"] = registry
        if self.buckets is not None:
            kwargs["buckets"] = self.buckets
        cls = {
            "counter": prometheus_client.Counter,
            "gauge": prometheus_client.Gauge,
            "histogram": prometheus_client.Histogram,
        }[self.kind]
        return cls(self.name, self.help, [*self.labels, *extra_labels], **kwargs)


def _m(
    name: str,
    kind: Kind,
    labels: tuple[str, ...],
    source: str,
    help: str,
    buckets: tuple[float, ...] | None = None,
) -> MetricSpec:
    return MetricSpec(name, kind, help, labels, source, buckets)


_SPECS = (
    # --- every server ---------------------------------------------------------------------------------
    _m("engage_request_duration_seconds", "histogram", ("model", "route", "code"), "servers",
       "Wall time of a request to an Engage server, from the body read to the answer", LATENCY_BUCKETS),
    _m("engage_request_rows", "histogram", ("model", "route"), "servers", "Rows per accepted request",
       ROW_BUCKETS),
    _m("engage_request_rejected", "counter", ("model", "route", "reason"), "servers",
       "Requests refused with a 4xx status, by reason (missing_feature, wrong_type, body_too_large, ...)"),
    _m("engage_model_info", "gauge", ("model", "server", "version", "learner", "heads"), "servers",
       "1 for the model version a server serves"),
    _m("engage_model_ready", "gauge", ("model", "server"), "servers",
       "1 when the model passed its checks and serves"),
    # --- predictor ------------------------------------------------------------------------------------
    _m("engage_prediction", "histogram", ("model", "head"), "predictor",
       "Predicted values of the heads whose output lies in 0..1 (churn probability, engagement score)",
       UNIT_BUCKETS),
    _m("engage_prediction_ltv", "histogram", ("model", "head"), "predictor", "Predicted lifetime values",
       LTV_BUCKETS),
    _m("engage_logger_events", "counter", ("model", "outcome"), "predictor",
       "CloudEvents posted to --logger_url: sent, refused, failed, dropped"),
    _m("engage_review_routed", "counter", ("model", "reason"), "predictor",
       "Predictions sent to human review (--review true), by reason: opted_out, near_threshold, outlier "
       "(a row with two reasons counts under each; a customer already pending is not queued twice)"),
    _m("engage_review_overrides_delivered", "counter", ("model",), "predictor",
       "Reviewers' overrides returned with a prediction (each one once)"),
    _m("engage_review_failures", "counter", ("model", "step"), "predictor",
       "Human-review routing the predictor could not do, the prediction answered all the same: lookup, "
       "deliver (a request's read or claim failed), skipped (a request while the database is backed off), "
       "enqueue (a write of queued items failed), dropped (items over the writer's bound)"),
    _m("engage_prediction_group", "counter", ("model", "head", "attribute", "group", "decision"), "predictor",
       "Predictions of a classification head for rows carrying a protected attribute, by the contract's "
       "group (other: a value outside it) and decision (positive / negative at the fairness threshold)"),
    # --- explainer ------------------------------------------------------------------------------------
    _m("engage_explain_duration_seconds", "histogram", ("model", "method"), "explainer",
       "Wall time of an answered explanation, by method (checks, queueing and the method itself)",
       LATENCY_BUCKETS),
    _m("engage_explain_slow_in_flight", "gauge", ("model",), "explainer",
       "Sampling explanations running now (a timed-out one counts until its thread ends)"),
    _m("engage_explain_refused", "counter", ("model", "reason"), "explainer",
       "Sampling explanations refused: busy (429, every slot taken) or timeout (504)"),
    # --- drift detector -------------------------------------------------------------------------------
    _m("engage_drift_feature_statistic", "gauge", ("model", "feature", "test"), "drift_detector",
       "Drift test statistic of a feature in the latest window test: KS distance (test=ks, 0..1) or "
       "chi-square (test=chi2)"),
    _m("engage_drift_feature_p_value", "gauge", ("model", "feature"), "drift_detector",
       "p-value of a feature's drift test (latest window test)"),
    _m("engage_drift_feature_detected", "gauge", ("model", "feature"), "drift_detector",
       "1 when a feature's p-value fell below the corrected threshold in the latest window test"),
    _m("engage_drift_detected", "gauge", ("model",), "drift_detector",
       "1 when any feature drifted in the latest window test"),
    _m("engage_prediction_drift_statistic", "gauge", ("model", "head"), "drift_detector",
       "KS statistic of a head's window predictions against its predictions on the reference"),
    _m("engage_prediction_drift_p_value", "gauge", ("model", "head"), "drift_detector",
       "p-value of a head's prediction drift test"),
    _m("engage_drift_outlier_score", "gauge", ("model",), "drift_detector",
       "Mean isolation-forest anomaly score of the window rows"),
    _m("engage_drift_outlier_share", "gauge", ("model",), "drift_detector",
       "Share of window rows scoring above the reference's outlier quantile"),
    _m("engage_drift_window_rows", "gauge", ("model",), "drift_detector", "Rows in the drift window now"),
    _m("engage_drift_last_test_timestamp_seconds", "gauge", ("model",), "drift_detector",
       "Unix time of the latest window test"),
    _m("engage_drift_test_duration_seconds", "histogram", ("model",), "drift_detector",
       "Wall time of a window drift test", LATENCY_BUCKETS),
    _m("engage_drift_events", "counter", ("model", "type"), "drift_detector",
       "Events taken into the window, by type (request, response, rows)"),
    _m("engage_event_store_failures", "counter", ("model",), "drift_detector",
       "Request/response pairs or flushes the event store (--event_store) could not write (ingestion goes "
       "on)"),
    # --- data quality (Pushgateway) -------------------------------------------------------------------
    _m("engage_data_rows", "gauge", ("table",), "data_quality", "Rows checked"),
    _m("engage_data_null_rate", "gauge", ("table", "column"), "data_quality",
       "Share of empty values, 0..1 (NullRate)"),
    _m("engage_data_duplicate_count", "gauge", ("table",), "data_quality",
       "Rows repeating the key of an earlier row (DuplicateCount)"),
    _m("engage_data_schema_violations", "gauge", ("table", "column"), "data_quality",
       "Rows breaking a schema check (type, not-null, bounds, categories) of the column (SchemaViolations)"),
    _m("engage_data_outlier_rate", "gauge", ("table", "column"), "data_quality",
       "Share of values outside the contract's bounds for the column (OutlierRate)"),
    _m("engage_data_freshness_hours", "gauge", ("table",), "data_quality",
       "Age of the newest event time when checked, in hours (DataFreshnessHours)"),
    _m("engage_data_check_passed", "gauge", ("table", "check", "severity", "dimension"), "data_quality",
       "1 when the check passed, else 0"),
    _m("engage_data_quarantined_rows", "gauge", ("table",), "data_quality", "Rows set aside by remediation"),
    _m("engage_data_quality_gate_passed", "gauge", ("table",), "data_quality",
       "1 unless the gate's verdict is fail"),
    _m("engage_data_last_check_timestamp_seconds", "gauge", ("table",), "data_quality",
       "When the table was checked (Unix time)"),
    # --- pipeline runs (Pushgateway) ------------------------------------------------------------------
    _m("engage_pipeline_run_success", "gauge", (), "pipeline", "1 when the last pipeline run succeeded"),
    _m("engage_pipeline_run_cost_usd", "gauge", (), "pipeline",
       "Estimated on-demand cost of the last run, in US dollars"),
    _m("engage_pipeline_cost_month_to_date_usd", "gauge", (), "pipeline",
       "Estimated on-demand cost of this calendar month's runs (UTC), the last one included, in US dollars"),
    _m("engage_pipeline_run_timestamp_seconds", "gauge", (), "pipeline", "When the last run finished (Unix time)"),
    _m("engage_pipeline_step_seconds", "gauge", ("step",), "pipeline", "Wall time of each step that ran"),
    # --- the model a run trained (Pushgateway) --------------------------------------------------------
    _m("engage_model_metric", "gauge", ("head", "metric"), "model",
       "Test-set figure of the head the last run trained: r2, rmse, mae, spearman (regression); auc_roc, "
       "pr_auc, brier, log_loss, ece, accuracy, precision, recall (classification)"),
    _m("engage_model_promoted", "gauge", (), "model", "1 when the last run promoted its model, else 0"),
    _m("engage_fairness_parity_ratio", "gauge", ("head", "attribute"), "model",
       "Lowest ratio between groups of the shipped model's selection rate (classification) or mean "
       "prediction (regression), 0..1 (1: parity; the four-fifths rule is 0.8)"),
    # --- business (Pushgateway) -----------------------------------------------------------------------
    _m("engage_business_customers", "gauge", ("table",), "business", "Customers in the table"),
    _m("engage_business_active_customers", "gauge", ("table", "window"), "business",
       "Customers active in the last day (window=1d, DAU), 7 days (7d, WAU) or 30 days (30d, MAU)"),
    _m("engage_business_churn_rate", "gauge", ("table",), "business",
       "Share of customers the model predicts will churn (probability >= 0.5)"),
    _m("engage_business_ltv_mean", "gauge", ("table",), "business", "Mean predicted lifetime value"),
    _m("engage_business_engagement_score_mean", "gauge", ("table",), "business", "Mean predicted engagement score"),
    # --- the audit trail's verification (Pushgateway) ------------------------------------------------
    _m("engage_audit_records_checked", "gauge", ("trail",), "governance",
       "Audit records the last verification read"),
    _m("engage_audit_problems", "gauge", ("trail", "kind"), "governance",
       "Problems the last verification found, by kind: edited (a payload or field no longer matches its "
       "hash), deleted (records missing), broken_link (a record inserted, reordered or rewritten before "
       "the next), head (the chain head, or --expect-head, does not match the records); 0 when intact"),
    _m("engage_audit_head_seq", "gauge", ("trail",), "governance",
       "Sequence number of the last record the verification read (the chain's head)"),
    _m("engage_audit_last_verify_timestamp_seconds", "gauge", ("trail",), "governance",
       "When the last verification finished (Unix time)"),
    _m("engage_audit_verify_duration_seconds", "gauge", ("trail",), "governance",
       "Wall time of the last verification's walk of the chain"),
    # --- the feedback loop's live report (Pushgateway) ------------------------------------------------
    _m("engage_live_metric", "gauge", ("model", "head", "metric"), "feedback",
       "A head's live accuracy figure on predictions joined with their outcomes (the offline metric "
       "functions: auc_roc, brier, ... for churn; r2, rmse, ... for the regression heads)"),
    _m("engage_live_labelled_rows", "gauge", ("model", "head"), "feedback",
       "Predictions of a head joined with an outcome"),
    _m("engage_live_coverage", "gauge", ("model",), "feedback",
       "Share of logged predictions that have an outcome"),
    _m("engage_live_predictions", "gauge", ("model",), "feedback",
       "Logged predictions (rows) the report read"),
    _m("engage_live_fairness", "gauge", ("model", "head", "attribute", "metric"), "feedback",
       "A live fairness gap figure by protected group (the offline gate's metrics)"),
    _m("engage_live_rule_passed", "gauge", ("model", "section", "head", "rule"), "feedback",
       "1 when a live rule (section live_accuracy, live_fairness, prediction_drift) holds, 0 when crossed"),
    _m("engage_live_prediction_psi", "gauge", ("model", "head"), "feedback",
       "Population stability index of a head's predictions against the reference"),
    _m("engage_live_prediction_ks", "gauge", ("model", "head"), "feedback",
       "KS statistic of a head's predictions against the reference"),
    _m("engage_live_predicted_mean", "gauge", ("model", "head"), "feedback",
       "Mean prediction over the labelled rows (churn: predicted churn rate; ltv: mean predicted LTV)"),
    _m("engage_live_realised_mean", "gauge", ("model", "head"), "feedback",
       "Mean outcome over the same rows (churn: realised churn rate; ltv: mean realised LTV)"),
    _m("engage_live_verdict_passed", "gauge", ("model",), "feedback",
       "1 when the live report's verdict is not fail"),
    _m("engage_live_last_report_timestamp_seconds", "gauge", ("model",), "feedback",
       "Unix time of the latest live report"),
    # --- the CloudWatch bridge ------------------------------------------------------------------------
    _m("engage_cloudwatch_datums_sent", "counter", (), "cloudwatch", "Datums CloudWatch accepted"),
    _m("engage_cloudwatch_datums_enqueued", "counter", (), "cloudwatch", "Datums scraped into the buffer"),
    _m("engage_cloudwatch_datums_dropped", "counter", ("reason",), "cloudwatch",
       "Datums dropped: buffer_full (oldest past the bound), non_finite, out_of_range, bad_name, rejected "
       "(CloudWatch refused the datum alone), expired (older than two weeks)"),
    _m("engage_cloudwatch_dimensions_fixed", "counter", ("reason",), "cloudwatch",
       "Dimensions dropped or shortened: empty_value, long_value, too_many_dimensions"),
    _m("engage_cloudwatch_put_calls", "counter", ("outcome",), "cloudwatch",
       "PutMetricData calls by outcome (ok, throttled, failed)"),
    _m("engage_cloudwatch_retries", "counter", (), "cloudwatch", "Retried PutMetricData calls"),
    _m("engage_cloudwatch_scrape_errors", "counter", (), "cloudwatch", "Ticks Prometheus did not answer"),
    _m("engage_cloudwatch_buffer_datums", "gauge", (), "cloudwatch", "Datums waiting in the buffer"),
)  # fmt: skip

#: name -> spec, in the order above (the reference's order)
CATALOGUE: dict[str, MetricSpec] = {spec.name: spec for spec in _SPECS}


def metric(name: str) -> MetricSpec:
    """The spec of ``name``; ``KeyError`` naming the catalogue when there is none."""
    try:
        return CATALOGUE[name]
    except KeyError:
        raise KeyError(f"{name!r} is not in engage.telemetry.CATALOGUE") from None


def series_names() -> set[str]:
    """Every series name Engage exports (what a rule or a panel may query)."""
    return {s for spec in CATALOGUE.values() for s in spec.series_names()}
