"""The CloudWatch bridge: Prometheus series to CloudWatch ``PutMetricData``, through an on-disk buffer.

``engage cloudwatch-bridge`` (see ``docs/cloudwatch.md``). boto3 is imported when a client is made,
never when this package is imported.
"""

from __future__ import annotations

from ._bridge import Bridge, Stats
from ._buffer import Buffer
from ._datum import MAX_DIMENSION_VALUE, MAX_DIMENSIONS, Datum, batches, to_datum
from ._mapping import (
    RECORDING_RULES_QUERY,
    Mapping,
    MetricMapping,
    default_mapping,
    load_mapping,
    mapping_yaml,
)
from ._prometheus import PrometheusUnreachable, instant_query
from ._publish import CredentialsError, DeliveryError, backoff, classify, make_client
from ._run import DEFAULT_MAPPING_FILE, resolve_mapping, run
from ._settings import MAX_BATCH_BYTES, MAX_BATCH_DATUMS, CloudWatchSettings

__all__ = [
    "DEFAULT_MAPPING_FILE",
    "MAX_BATCH_BYTES",
    "MAX_BATCH_DATUMS",
    "MAX_DIMENSIONS",
    "MAX_DIMENSION_VALUE",
    "RECORDING_RULES_QUERY",
    "Bridge",
    "Buffer",
    "CloudWatchSettings",
    "CredentialsError",
    "Datum",
    "DeliveryError",
    "Mapping",
    "MetricMapping",
    "PrometheusUnreachable",
    "Stats",
    "backoff",
    "batches",
    "classify",
    "default_mapping",
    "instant_query",
    "load_mapping",
    "make_client",
    "mapping_yaml",
    "resolve_mapping",
    "run",
    "to_datum",
]
