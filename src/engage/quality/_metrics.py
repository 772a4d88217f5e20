"""Data-quality metrics of one checked table, for a Pushgateway (pipeline steps are batch jobs).

Every series carries ``table`` (the contract name). Names and meanings (docs/metrics.md is the list
the alert rules are written against):

========================================  ====================  ==============================================
metric                                    labels                meaning
========================================  ====================  ==============================================
engage_data_rows                          table                 rows checked
engage_data_null_rate                     table, column         share of empty values (0..1)
engage_data_duplicate_count               table                 rows repeating the key of an earlier row
engage_data_schema_violations             table, column         rows breaking a schema check of the column
engage_data_outlier_rate                  table, column         share of values outside the contract's bounds
engage_data_freshness_hours               table                 age of the newest event time at check time
engage_data_check_passed                  table, check,         1 when the check passed, else 0
                                          severity, dimension
engage_data_quarantined_rows              table                 rows set aside by remediation
engage_data_quality_gate_passed           table                 1 unless the gate's verdict is fail
engage_data_last_check_timestamp_seconds  table                 when the table was checked (Unix time)
========================================  ====================  ==============================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from ._result import GateResult

__all__ = ["DATA_QUALITY_JOB", "data_quality_registry", "push_metrics"]

#: the Pushgateway job name of the data-quality step
DATA_QUALITY_JOB = "engage_data_quality"


def data_quality_registry(gate: GateResult) -> CollectorRegistry:
    from prometheus_client import CollectorRegistry, Gauge

    from engage.telemetry import metric

    from ._checks import outside

    registry = CollectorRegistry()
    report = gate.report
    frame = gate.validation.table.frame
    contract = gate.contract
    table = contract.contract

    def gauge(name: str) -> Gauge:
        return metric(name).create(registry)  # type: ignore[no-any-return]

    gauge("engage_data_rows").labels(table).set(report.rows)
    nulls = gauge("engage_data_null_rate")
    outliers = gauge("engage_data_outlier_rate")
    for name, col in contract.columns.items():
        nulls.labels(table, name).set(float(frame[name].isna().mean()))
        if col.type.is_numeric:
            lo, hi = contract.bounds(name)
            if lo is not None or hi is not None:
                outliers.labels(table, name).set(float(outside(frame[name], lo, hi).mean()))

    dupes = sum(r.failing_rows or 0 for r in report.results if r.kind == "unique")
    gauge("engage_data_duplicate_count").labels(table).set(dupes)

    schema = gauge("engage_data_schema_violations")
    per_column: dict[str, int] = dict.fromkeys(contract.columns, 0)
    for r in report.results:
        if r.id.startswith("schema."):
            per_column[r.id.split(".")[1]] += r.failing_rows or 0
    for name, n in per_column.items():
        schema.labels(table, name).set(n)

    fresh = [r for r in report.results if r.kind == "freshness" and r.observed is not None]
    if fresh:
        gauge("engage_data_freshness_hours").labels(table).set(fresh[0].observed or 0.0)

    passed = gauge("engage_data_check_passed")
    for r in report.results:
        passed.labels(table, r.id, r.severity.value, r.dimension.value).set(1.0 if r.passed else 0.0)
    gauge("engage_data_quarantined_rows").labels(table).set(gate.rows_quarantined)
    gauge("engage_data_quality_gate_passed").labels(table).set(0.0 if gate.verdict == "fail" else 1.0)
    gauge("engage_data_last_check_timestamp_seconds").labels(table).set(report.checked_at.timestamp())
    return registry


def push_metrics(
    registry: CollectorRegistry, gateway: str, *, job: str = DATA_QUALITY_JOB, instance: str
) -> None:
    """Replace this job/instance's group on the Pushgateway at ``gateway`` (``host:port`` or URL)."""
    from prometheus_client import push_to_gateway

    from engage.errors import ConfigError

    try:
        push_to_gateway(gateway, job=job, registry=registry, grouping_key={"instance": instance}, timeout=10)
    except OSError as e:
        raise ConfigError(f"cannot push metrics to the Pushgateway at {gateway}: {e}") from e
