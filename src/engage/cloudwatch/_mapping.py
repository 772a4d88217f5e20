"""The mapping file: which Prometheus series become which CloudWatch metrics, with what unit and dimensions.

``monitoring/cloudwatch/bridge.yml`` spells out :func:`default_mapping`; a test holds the two equal, so
a catalogue rename shows up there. Each entry maps a CloudWatch metric name to a PromQL instant query,
a unit and the labels that become dimensions::

    exclude_labels: [job, instance]   # never dimensions when an entry says dimensions: "*"
    metrics:
      - name: NullRate                 # CloudWatch metric name; "{{label}}" is replaced by the label's value
        query: engage_data_null_rate   # PromQL, evaluated with /api/v1/query
        unit: None                     # a CloudWatch unit, or "auto" (from the series name)
        dimensions: [table, column]    # labels that become dimensions, or "*" (every label but the excluded)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engage.errors import ConfigError

__all__ = [
    "RECORDING_RULES_QUERY",
    "UNITS",
    "Mapping",
    "MetricMapping",
    "auto_unit",
    "default_mapping",
    "load_mapping",
    "mapping_yaml",
    "recording_rule_names",
]

#: every unit PutMetricData accepts
UNITS = (
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes",
    "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count", "Bytes/Second",
    "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second", "Bits/Second",
    "Kilobits/Second", "Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None",
)  # fmt: skip

Unit = Literal[
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes",
    "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count", "Bytes/Second",
    "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second", "Bits/Second",
    "Kilobits/Second", "Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None",
    "auto",
]  # fmt: skip

#: every series of the recording rules, whatever their names: the rules' authors may rename them freely
RECORDING_RULES_QUERY = '{__name__=~"engage:.+"}'

_TEMPLATE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class MetricMapping(BaseModel):
    """One CloudWatch metric (or, with a ``{{label}}`` template, one per value of that label)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=255)
    query: str = Field(min_length=1)
    unit: Unit = "None"
    dimensions: list[str] | Literal["*"] = Field(default_factory=list)
    description: str = ""

    def metric_name(self, labels: dict[str, str]) -> str:
        """The name with each ``{{label}}`` replaced by the series' value (empty when the label is absent)."""
        return _TEMPLATE.sub(lambda m: labels.get(m.group(1), ""), self.name)

    def unit_of(self, labels: dict[str, str]) -> str:
        return auto_unit(labels.get("__name__", self.query)) if self.unit == "auto" else self.unit


class Mapping(BaseModel):
    """The whole file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    exclude_labels: list[str] = Field(default_factory=lambda: ["job", "instance"])
    metrics: list[MetricMapping] = Field(min_length=1)


def auto_unit(series: str) -> str:
    """A unit from Prometheus' naming conventions: ``…_seconds…`` is Seconds, ``…_bytes…`` Bytes."""
    parts = set(re.split(r"[^a-z0-9]+", series.lower()))
    if "seconds" in parts:
        return "Seconds"
    if "bytes" in parts:
        return "Bytes"
    return "None"


#: (CloudWatch name, catalogue metric, unit): the series worth reporting from outside Prometheus. The
#: names of the data-quality figures are the issue's (NullRate, DuplicateCount, ...); dimensions are the
#: catalogue's labels.
_FROM_CATALOGUE = (
    ("NullRate", "engage_data_null_rate", "None"),
    ("DuplicateCount", "engage_data_duplicate_count", "Count"),
    ("SchemaViolations", "engage_data_schema_violations", "Count"),
    ("OutlierRate", "engage_data_outlier_rate", "None"),
    ("DataFreshnessHours", "engage_data_freshness_hours", "None"),
    ("DataQualityGatePassed", "engage_data_quality_gate_passed", "None"),
    ("ModelMetric", "engage_model_metric", "None"),
    ("ModelPromoted", "engage_model_promoted", "None"),
    ("FairnessParityRatio", "engage_fairness_parity_ratio", "None"),
    ("DriftDetected", "engage_drift_detected", "None"),
    ("PipelineRunSuccess", "engage_pipeline_run_success", "None"),
    ("PipelineRunCostUSD", "engage_pipeline_run_cost_usd", "None"),
    ("PipelineCostMonthToDateUSD", "engage_pipeline_cost_month_to_date_usd", "None"),
    ("PipelineStepSeconds", "engage_pipeline_step_seconds", "Seconds"),
    ("Customers", "engage_business_customers", "Count"),
    ("ActiveCustomers", "engage_business_active_customers", "Count"),
    ("ChurnRate", "engage_business_churn_rate", "None"),
    ("LtvMean", "engage_business_ltv_mean", "None"),
    ("EngagementScoreMean", "engage_business_engagement_score_mean", "None"),
)


def default_mapping() -> Mapping:
    """Every series of the ``engage:`` recording rules (named as in Prometheus, every label but job and
    instance a dimension), and the pushed figures a company reports on, from the metrics catalogue."""
    from engage.telemetry import CATALOGUE

    metrics = [
        MetricMapping(
            name="{{__name__}}",
            query=RECORDING_RULES_QUERY,
            unit="auto",
            dimensions="*",
            description="Every series of the engage: recording rules (SLIs, error ratios, latency quantiles)",
        )
    ]
    for name, source, unit in _FROM_CATALOGUE:
        spec = CATALOGUE[source]
        metrics.append(
            MetricMapping(
                name=name,
                query=spec.series,
                unit=unit,
                dimensions=list(spec.labels),
                description=spec.help,
            )
        )
    return Mapping(metrics=metrics)


def load_mapping(path: Path | None) -> Mapping:
    """The mapping in ``path``; ``None``: the built-in :func:`default_mapping`."""
    if path is None:
        return default_mapping()
    import yaml

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the mapping file: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None
    try:
        return Mapping.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top)"
        more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
        raise ConfigError(f"{path}: {where}: {first['msg']}{more}") from None


def mapping_yaml(mapping: Mapping) -> str:
    """The mapping as the YAML file holds it."""
    import yaml

    data = mapping.model_dump(exclude_defaults=False)
    return yaml.safe_dump(data, sort_keys=False, width=110, allow_unicode=True)


def recording_rule_names(folder: Path) -> list[str]:
    """The ``record:`` names of every ``*.rules.yml`` in ``folder`` (none when it does not exist)."""
    import yaml

    names: list[str] = []
    for file in sorted(folder.glob("*.rules.yml")) if folder.is_dir() else []:
        doc = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        for group in doc.get("groups", []):
            names.extend(rule["record"] for rule in group.get("rules", []) if "record" in rule)
    return names
