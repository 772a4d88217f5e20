"""Prometheus samples to CloudWatch datums, within PutMetricData's limits, and batches of them.

Limits (CloudWatch API reference, PutMetricData / MetricDatum / Dimension):

* at most 30 dimensions per datum: the first 30 by the mapping's order (``"*"``: by label name) are kept,
  the rest dropped and counted (``too_many_dimensions``). Series that differ only in a dropped label then
  share one CloudWatch metric;
* a dimension value is 1..1,024 characters: an empty value is dropped with its dimension and counted
  (``empty_value``; Prometheus treats an empty label as an absent one, so nothing is lost), a longer one is
  cut to 1,007 characters plus ``~`` and 16 hex digits of its SHA-256 (``long_value``: distinct values stay
  distinct);
* a value must be finite, and 0 or of magnitude within [8.515920e-109, 1.174271e+108]: NaN and infinities
  (a ratio of zero requests) are dropped and counted (``non_finite``), values beyond the range too
  (``out_of_range``), tinier ones are sent as 0;
* a metric name is 1..255 characters (``bad_name`` when a ``{{label}}`` template makes it empty or longer);
* 1,000 datums and 1 MB per call: :func:`batches` cuts on both, sizing each datum as the query protocol
  (the most verbose of CloudWatch's three) would encode it.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import quote

from ._mapping import MetricMapping

__all__ = [
    "MAX_DIMENSIONS",
    "MAX_DIMENSION_VALUE",
    "Datum",
    "batches",
    "to_datum",
]

MAX_DIMENSIONS = 30
MAX_DIMENSION_VALUE = 1024
_MIN_MAGNITUDE = 8.515920e-109
_MAX_MAGNITUDE = 1.174271e108
_HASHED_KEEP = MAX_DIMENSION_VALUE - 17  # value[:1007] + "~" + 16 hex digits = 1,024 characters


@dataclass(frozen=True)
class Datum:
    """One PutMetricData datum. ``timestamp`` is Unix seconds (the Prometheus evaluation time)."""

    metric: str
    dimensions: tuple[tuple[str, str], ...]
    timestamp: float
    value: float
    unit: str

    def size(self) -> int:
        """Bytes of this datum as ``MetricData.member.N.…`` query parameters (an upper bound for JSON/CBOR)."""
        prefix = len("&MetricData.member.1000.")
        size = prefix + len("MetricName=") + len(quote(self.metric, safe=""))
        size += prefix + len("Timestamp=2026-01-01T00%3A00%3A00.000Z")
        size += prefix + len("Value=") + len(repr(self.value))
        size += prefix + len("Unit=") + len(quote(self.unit, safe=""))
        size += prefix + len("StorageResolution=60")
        for name, value in self.dimensions:
            size += 2 * (prefix + len("Dimensions.member.30.Name=")) + len(quote(name, safe=""))
            size += len(quote(value, safe=""))
        return size

    def api(self, storage_resolution: int) -> dict[str, object]:
        """The datum as boto3 takes it."""
        from datetime import UTC, datetime

        return {
            "MetricName": self.metric,
            "Dimensions": [{"Name": n, "Value": v} for n, v in self.dimensions],
            "Timestamp": datetime.fromtimestamp(self.timestamp, UTC),
            "Value": self.value,
            "Unit": self.unit,
            "StorageResolution": storage_resolution,
        }


def _dimension_value(value: str, fixes: Counter[str]) -> str:
    if len(value) <= MAX_DIMENSION_VALUE:
        return value
    fixes["long_value"] += 1
    digest = hashlib.sha256(value.encode("utf-8")).hexdigest()[:16]
    return f"{value[:_HASHED_KEEP]}~{digest}"


def to_datum(
    entry: MetricMapping,
    labels: dict[str, str],
    timestamp: float,
    value: float,
    *,
    exclude_labels: Iterable[str],
    fixes: Counter[str],
    dropped: Counter[str],
) -> Datum | None:
    """The datum of one sample, or ``None`` (the reason counted in ``dropped``); fixes counted in ``fixes``."""
    name = entry.metric_name(labels)
    if not name or len(name) > 255:
        dropped["bad_name"] += 1
        return None
    if not math.isfinite(value):
        dropped["non_finite"] += 1
        return None
    if abs(value) > _MAX_MAGNITUDE:
        dropped["out_of_range"] += 1
        return None
    if abs(value) < _MIN_MAGNITUDE:
        value = 0.0
    if entry.dimensions == "*":
        excluded = {"__name__", *exclude_labels}
        wanted = sorted(k for k in labels if k not in excluded)
    else:
        wanted = [k for k in entry.dimensions if k != "__name__"]
    dims: list[tuple[str, str]] = []
    for key in wanted:
        raw = labels.get(key, "")
        if raw == "":  # empty or absent: CloudWatch refuses an empty value; Prometheus means "no label"
            fixes["empty_value"] += 1
            continue
        dims.append((key, _dimension_value(raw, fixes)))
    if len(dims) > MAX_DIMENSIONS:
        fixes["too_many_dimensions"] += len(dims) - MAX_DIMENSIONS
        dims = dims[:MAX_DIMENSIONS]
    return Datum(name, tuple(dims), timestamp, float(value), entry.unit_of(labels))


def batches(
    datums: Iterable[tuple[int, Datum]], max_datums: int, max_bytes: int
) -> Iterator[list[tuple[int, Datum]]]:
    """Consecutive batches of at most ``max_datums`` datums and ``max_bytes`` of estimated payload."""
    envelope = 200  # Action, Version, Namespace
    batch: list[tuple[int, Datum]] = []
    size = envelope
    for item in datums:
        item_size = item[1].size()
        if batch and (len(batch) >= max_datums or size + item_size > max_bytes):
            yield batch
            batch, size = [], envelope
        batch.append(item)
        size += item_size
    if batch:
        yield batch
