"""The CloudWatch bridge's parts without servers: the mapping, datum limits, batching, backoff, error
classes, the buffer, and the ADOT collector configuration's structure."""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from engage.cloudwatch import (
    MAX_BATCH_BYTES,
    RECORDING_RULES_QUERY,
    Buffer,
    Datum,
    MetricMapping,
    backoff,
    batches,
    classify,
    default_mapping,
    load_mapping,
    to_datum,
)
from engage.errors import ConfigError
from engage.telemetry import CATALOGUE, series_names

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "monitoring" / "cloudwatch"


def test_the_shipped_mapping_is_the_default_and_names_catalogue_series() -> None:
    shipped = load_mapping(FOLDER / "bridge.yml")
    assert shipped == default_mapping()
    catalogue = series_names()
    for entry in shipped.metrics:
        if entry.query != RECORDING_RULES_QUERY:
            assert entry.query in catalogue, entry.query
            assert entry.dimensions == list(CATALOGUE[entry.query].labels)


def test_every_recording_rule_is_bridged() -> None:
    from engage.cloudwatch._mapping import recording_rule_names

    names = recording_rule_names(ROOT / "monitoring" / "prometheus")
    if not names:
        pytest.skip("no recording rules in monitoring/prometheus yet")
    pattern = re.search(r'=~"(.+)"', RECORDING_RULES_QUERY)
    assert pattern is not None
    missed = [n for n in names if not re.fullmatch(pattern.group(1), n)]
    assert missed == [], "recording rules the bridge does not send (name them engage:...)"


def test_a_bad_mapping_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "m.yml"
    bad.write_text("metrics: [{name: X, query: up, unit: Hours}]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"m.yml: metrics.0.unit: Input should be 'Seconds'") as e:
        load_mapping(bad)
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="cannot read the mapping file"):
        load_mapping(tmp_path / "absent.yml")


def _datum(
    labels: dict[str, str], value: float = 1.0, dimensions: Any = "*"
) -> tuple[Any, Counter[str], Counter[str]]:
    fixes: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    entry = MetricMapping(name="{{__name__}}", query="q", unit="auto", dimensions=dimensions)
    d = to_datum(entry, labels, 1.0, value, exclude_labels=["job", "instance"], fixes=fixes, dropped=dropped)
    return d, fixes, dropped


def test_datum_limits() -> None:
    wide = {"__name__": "engage:x_seconds:p95", "job": "j", **{f"l{i:02d}": "v" for i in range(31)}}
    d, fixes, _ = _datum(wide)
    assert d is not None
    assert [n for n, _ in d.dimensions] == [f"l{i:02d}" for i in range(30)]
    assert d.unit == "Seconds"
    assert fixes == {"too_many_dimensions": 1}
    d, fixes, _ = _datum({"__name__": "m", "a": "", "b": "y" * 2000})
    assert d is not None
    assert [n for n, _ in d.dimensions] == ["b"]
    assert len(d.dimensions[0][1]) == 1024
    assert fixes == {"empty_value": 1, "long_value": 1}
    d2, _, _ = _datum({"__name__": "m", "b": "y" * 1999 + "z"})
    assert d2 is not None
    assert d2.dimensions != d.dimensions
    for value, reason in ((math.nan, "non_finite"), (math.inf, "non_finite"), (1e200, "out_of_range")):
        d, _, dropped = _datum({"__name__": "m"}, value)
        assert d is None
        assert dropped == {reason: 1}
    d, _, _ = _datum({"__name__": "m"}, 1e-200)
    assert d is not None
    assert d.value == 0.0
    d, _, dropped = _datum({})  # a template naming an absent label makes an empty name
    assert d is None
    assert dropped == {"bad_name": 1}


def test_batches_cut_on_count_and_size() -> None:
    small = [(i, Datum("m", (("a", "b"),), 1.0, 1.0, "None")) for i in range(2500)]
    assert [len(b) for b in batches(small, 1000, MAX_BATCH_BYTES)] == [1000, 1000, 500]
    big = Datum("m", tuple((f"d{j}", "x" * 1024) for j in range(30)), 1.0, 1.0, "None")
    cut = list(batches([(i, big) for i in range(100)], 1000, MAX_BATCH_BYTES))
    assert len(cut) > 1
    assert all(sum(d.size() for _, d in b) <= MAX_BATCH_BYTES for b in cut)
    assert sum(len(b) for b in cut) == 100


def test_backoff_is_exponential_with_full_jitter() -> None:
    top = [backoff(n, 0.2, 5.0, rand=lambda lo, hi: hi) for n in range(8)]
    assert top == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]
    assert all(backoff(n, 0.2, 5.0, rand=lambda lo, hi: lo) == 0.0 for n in range(8))
    assert all(0 <= backoff(3, 0.2, 5.0) <= 1.6 for _ in range(100))


def _client_error(code: str, status: int) -> Exception:
    from botocore.exceptions import ClientError

    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Put"
    )


def test_errors_are_classified() -> None:
    from botocore.exceptions import EndpointConnectionError, NoCredentialsError

    def verdict(e: Exception) -> str | None:
        failure = classify(e)
        return None if failure is None else failure.verdict

    assert verdict(_client_error("Throttling", 400)) == "throttled"
    assert verdict(_client_error("ThrottlingException", 400)) == "throttled"
    assert verdict(_client_error("", 429)) == "throttled"
    assert verdict(_client_error("InternalServiceError", 500)) == "retry"
    assert verdict(_client_error("ServiceUnavailable", 503)) == "retry"
    assert verdict(_client_error("InvalidParameterValue", 400)) == "invalid"
    assert verdict(_client_error("InvalidClientTokenId", 403)) == "credentials"
    assert verdict(NoCredentialsError()) == "credentials"
    assert verdict(EndpointConnectionError(endpoint_url="http://x")) == "retry"
    assert verdict(ValueError("a bug")) is None


def test_the_buffer_is_bounded_durable_and_owned_by_one_bridge(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    datums = [Datum("m", (("i", str(i)),), float(i), float(i), "Count") for i in range(10)]
    with Buffer(path, 6) as buffer:
        assert buffer.put(datums[:4], scraped_at=1.0) == (4, 0)
        assert buffer.put(datums[4:], scraped_at=2.0) == (6, 4)
        assert [d.value for _, d in buffer.oldest(100)] == [4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
        with pytest.raises(ConfigError, match="another bridge is using it"):
            Buffer(path, 6)
        ids = [i for i, _ in buffer.oldest(2)]
        buffer.delete(ids)
    with Buffer(path, 6) as again:  # a new process resumes from the file
        assert [d for _, d in again.oldest(100)] == datums[6:]
        assert again.counters() == {
            "dropped_buffer_full": 4.0,
            "enqueued": 10.0,
            "last_scrape": 2.0,
            "sent": 2.0,
        }


def test_the_adot_collector_is_wired() -> None:
    config = yaml.safe_load((FOLDER / "adot-collector.yaml").read_text(encoding="utf-8"))
    pipelines = config["service"]["pipelines"]
    assert pipelines["metrics"]["receivers"] == ["prometheus"]
    assert pipelines["metrics"]["exporters"] == ["awsemf"]
    assert pipelines["traces"]["receivers"] == ["otlp"]
    assert pipelines["traces"]["exporters"] == ["awsxray"]
    for pipeline in pipelines.values():  # everything a pipeline names is defined, and everything defined used
        for kind in ("receivers", "processors", "exporters"):
            assert set(pipeline[kind]) <= set(config[kind]), kind
    for kind in ("receivers", "processors", "exporters"):
        assert set(config[kind]) == {c for p in pipelines.values() for c in p[kind]}, kind
    assert set(config["service"]["extensions"]) == set(config["extensions"])
    scrape = config["receivers"]["prometheus"]["config"]["scrape_configs"][0]
    assert scrape["kubernetes_sd_configs"][0]["selectors"][0]["label"] == "app.kubernetes.io/part-of=engage"
    emf = config["exporters"]["awsemf"]
    assert emf["namespace"] == "Engage"
    catalogue = series_names() | set(CATALOGUE)
    for declaration in emf["metric_declarations"]:
        assert all(isinstance(d, list) and len(d) <= 30 for d in declaration["dimensions"])
        for selector in declaration["metric_name_selectors"]:  # a catalogue rename fails here
            assert any(re.search(selector, name) for name in catalogue), selector
        for dims in declaration["dimensions"]:
            for selector in declaration["metric_name_selectors"]:
                name = selector.strip("^$").removesuffix("_total")
                assert set(dims) <= set(CATALOGUE[name].labels), (selector, dims)
