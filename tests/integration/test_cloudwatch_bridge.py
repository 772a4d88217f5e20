"""The CloudWatch bridge against real servers on loopback: a real Prometheus scraping a tiny exporter,
moto's server standing in for CloudWatch (not AWS), and a throttling proxy between the bridge and moto.
Datums are read back with GetMetricData."""

from __future__ import annotations

import json
import logging
import math
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from engage.cloudwatch import Bridge, Buffer, CloudWatchSettings, load_mapping, make_client
from tests.cloudwatch_support import (
    AWS_ENV,
    ENGAGE,
    ROOT,
    Exporter,
    ThrottlingProxy,
    bridge_env,
    exposition,
    free_port,
    kill_when,
    moto_server,
    prometheus,
    read_back,
    reset_moto,
    wait_series,
)

pytestmark = pytest.mark.slow  # a Prometheus, moto's server and bridge processes


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture(scope="module")
def exporter() -> Iterator[Exporter]:
    e = Exporter()
    try:
        yield e
    finally:
        e.close()


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory, exporter: Exporter) -> Iterator[str]:
    with prometheus(tmp_path_factory.mktemp("prometheus"), exporter) as url:
        yield url


@pytest.fixture
def proxy(moto: str) -> Iterator[ThrottlingProxy]:
    reset_moto(moto)
    p = ThrottlingProxy(moto)
    try:
        yield p
    finally:
        p.close()


def _serve(exporter: Exporter, prom: str, series: dict[str, list[tuple[dict[str, str], float]]]) -> None:
    """Serve ``series`` (and nothing else) and wait until Prometheus holds exactly them."""
    exporter.text = exposition(series)
    for name, samples in series.items():
        wait_series(prom, name if ":" not in name else f'{{__name__="{name}"}}', len(samples))
    total = sum(len(s) for s in series.values())
    wait_series(prom, '{job="engage"}', total + 5)  # + up, scrape_duration_seconds, ... of the job


def _bridge(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ENGAGE, "cloudwatch-bridge", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _summary(stdout: str) -> dict[str, Any]:
    return dict(json.loads(stdout.strip().splitlines()[-1]))


def _series(name: str, n: int, **extra: str) -> list[tuple[dict[str, str], float]]:
    return [({"series": f"s{i:04d}", **extra}, float(i + 1)) for i in range(n)]


def test_once_publishes_values_dimensions_and_units(
    exporter: Exporter, prom: str, proxy: ThrottlingProxy, tmp_path: Path, moto: str
) -> None:
    """The real CLI with the shipped mapping (monitoring/cloudwatch/bridge.yml): a recording-rule series
    and two catalogue series arrive with their values, dimensions and units."""
    _serve(
        exporter,
        prom,
        {
            "engage:request_latency_p95_seconds:rate5m": [
                ({"model": "customers", "route": "predict"}, 0.123)
            ],
            "engage:request_error_ratio:rate5m": [({"model": "customers"}, 0.004)],
            "engage_data_null_rate": [({"table": "customers", "column": "email"}, 0.02)],
            "engage_data_duplicate_count": [({"table": "customers"}, 40.0)],
        },
    )
    proc = _bridge(
        "--once", env=bridge_env(prometheus_url=prom, endpoint_url=proxy.url, buffer_path=tmp_path / "b.db")
    )
    assert proc.returncode == 0, proc.stderr
    summary = _summary(proc.stdout)
    assert summary["sent"] == 4
    assert summary["buffered"] == 0
    latency = ("engage:request_latency_p95_seconds:rate5m", [("model", "customers"), ("route", "predict")])
    errors = ("engage:request_error_ratio:rate5m", [("model", "customers")])
    nulls = ("NullRate", [("table", "customers"), ("column", "email")])
    dupes = ("DuplicateCount", [("table", "customers")])
    for (metric, dims), unit, value in (
        (latency, "Seconds", 0.123),
        (errors, "None", 0.004),
        (nulls, "None", 0.02),
        (dupes, "Count", 40.0),
    ):
        got = read_back(moto, "Engage", [(metric, dims)], unit=unit)
        assert got == {(metric, tuple(dims)): (1.0, pytest.approx(value))}, metric
        wrong = "Count" if unit != "Count" else "Seconds"
        assert read_back(moto, "Engage", [(metric, dims)], unit=wrong) == {}, f"{metric} is not in {wrong}"
    # job and instance are not dimensions ("*" excludes them): the series is found under its own labels only
    listed = proxy_list(moto)
    assert {tuple(sorted(d.items())) for d in listed[latency[0]]} == {
        (("model", "customers"), ("route", "predict"))
    }


def proxy_list(moto: str) -> dict[str, list[dict[str, str]]]:
    from tests.cloudwatch_support import cloudwatch

    out: dict[str, list[dict[str, str]]] = {}
    for page in cloudwatch(moto).get_paginator("list_metrics").paginate(Namespace="Engage"):
        for m in page["Metrics"]:
            out.setdefault(m["MetricName"], []).append({d["Name"]: d["Value"] for d in m["Dimensions"]})
    return out


def test_throttled_calls_are_retried_and_nothing_is_lost(
    exporter: Exporter, prom: str, proxy: ThrottlingProxy, tmp_path: Path, moto: str
) -> None:
    n = 300
    _serve(exporter, prom, {"engage:throttle_test:value": _series("engage:throttle_test:value", n)})
    proxy.throttle = 0.4
    env = bridge_env(
        prometheus_url=prom,
        endpoint_url=proxy.url,
        buffer_path=tmp_path / "b.db",
        batch_size=10,
        backoff_base_seconds=0.01,
        backoff_cap_seconds=0.1,
        max_retries=20,
    )
    proc = _bridge("--once", env=env)
    assert proc.returncode == 0, proc.stderr
    summary = _summary(proc.stdout)
    assert proxy.log.throttled > 0
    assert summary["throttled"] == proxy.log.throttled
    assert summary["retries"] == proxy.log.throttled  # every throttled call was retried
    assert summary["calls"] == proxy.log.calls == proxy.log.accepted_calls + proxy.log.throttled
    assert summary["sent"] == proxy.log.accepted_datums == n
    got = read_back(
        moto, "Engage", [("engage:throttle_test:value", [("series", f"s{i:04d}")]) for i in range(n)]
    )
    assert len(got) == n
    assert all(got[k] == (1.0, float(i + 1)) for i, k in enumerate(sorted(got)))


@pytest.mark.long  # a bridge killed and restarted mid-stream against moto: about 15 s (make test keeps the bridge tests without a restart)
def test_a_restart_mid_stream_loses_nothing(
    exporter: Exporter, prom: str, proxy: ThrottlingProxy, tmp_path: Path, moto: str
) -> None:
    """An outage fills the buffer; the bridge is SIGKILLed after moto accepted its 10th call and before it
    heard so; the restarted bridge sends everything, that one batch twice (at least once)."""
    n, fills, batch = 1000, 3, 100
    name = "engage:restart_test:value"
    _serve(exporter, prom, {name: _series(name, n)})
    settings = {
        "prometheus_url": prom,
        "endpoint_url": proxy.url,
        "buffer_path": tmp_path / "b.db",
        "batch_size": batch,
        "backoff_base_seconds": 0.01,
        "backoff_cap_seconds": 0.1,
    }
    proxy.down = True
    for _ in range(fills):
        proc = _bridge("--once", env=bridge_env(**settings, max_retries=0))
        assert proc.returncode == 2, proc.stderr
        assert (
            proc.stderr.strip()
            .splitlines()[-1]
            .startswith("engage: error: CloudWatch did not accept every datum (ServiceUnavailable: down)")
        )
    assert proxy.log.accepted_calls == 0
    proxy.down = False
    proxy.throttle = 0.2
    running: dict[str, subprocess.Popen[bytes]] = {}
    proxy.on_accepted = kill_when(running, accepted_calls=10)
    env = bridge_env(**settings, max_retries=20)
    running["bridge"] = subprocess.Popen(
        [ENGAGE, "cloudwatch-bridge", "--once"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert running["bridge"].wait(timeout=120) == -signal.SIGKILL
    proxy.on_accepted = None
    with Buffer(tmp_path / "b.db", 10**6) as buffer:
        left = len(buffer)
    assert (fills + 1) * n - 10 * batch < left <= (fills + 1) * n - 9 * batch  # the 10th batch is still there
    proc = _bridge("--once", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "resuming:" in proc.stderr
    assert _summary(proc.stdout)["buffered"] == 0
    got = read_back(moto, "Engage", [(name, [("series", f"s{i:04d}")]) for i in range(n)])
    expected = fills + 2  # the outage's scrapes, the killed run's, the restart's
    assert len(got) == n
    counts = {k: c for k, (c, _) in got.items()}
    assert all(c >= expected for c in counts.values()), "a datum was lost"
    assert all(s == pytest.approx(c * (int(k[1][0][1][1:]) + 1)) for k, (c, s) in got.items())
    duplicates = sum(counts.values()) - expected * n
    assert duplicates == batch  # exactly the batch moto accepted just before the kill
    assert proxy.log.accepted_datums == expected * n + batch


def test_the_buffer_keeps_the_newest_and_counts_what_it_dropped(
    exporter: Exporter,
    prom: str,
    proxy: ThrottlingProxy,
    tmp_path: Path,
    moto: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    n, bound = 20, 50
    name = "engage:bound_test:value"
    _serve(exporter, prom, {name: _series(name, n)})
    mapping = tmp_path / "map.yml"
    mapping.write_text(
        f"metrics: [{{name: Bound, query: '{name}', dimensions: [series]}}]\n", encoding="utf-8"
    )
    settings = CloudWatchSettings(
        prometheus_url=prom,
        endpoint_url=proxy.url,
        region="us-east-1",
        buffer_path=tmp_path / "b.db",
        buffer_max_datums=bound,
        max_retries=0,
    )
    proxy.down = True
    with pytest.MonkeyPatch.context() as mp:
        for k, v in AWS_ENV.items():
            mp.setenv(k, v)
        client = make_client(settings)
    with Buffer(settings.buffer_path, bound) as buffer, caplog.at_level(logging.WARNING):
        bridge = Bridge(settings, load_mapping(mapping), buffer, client)
        for _ in range(4):
            bridge.scrape()
            assert bridge.flush() is False
            time.sleep(0.01)
        assert len(buffer) == bound
        assert buffer.get("dropped_buffer_full") == 4 * n - bound
        assert bridge.stats.dropped["buffer_full"] == 4 * n - bound
        value = bridge.registry.get_sample_value(
            "engage_cloudwatch_datums_dropped_total", {"reason": "buffer_full"}
        )
        assert value == 4 * n - bound
        assert any("buffer full (50 datums): dropped the 10 oldest" in r.message for r in caplog.records)
        proxy.down = False
        assert bridge.flush() is True
    got = read_back(moto, "Engage", [("Bound", [("series", f"s{i:04d}")]) for i in range(n)])
    assert sum(c for c, _ in got.values()) == bound
    assert sorted({c for c, _ in got.values()}) == [2.0, 3.0]  # the first scrape and half the second dropped


def test_batches_stay_within_1000_datums_and_1_mb(
    exporter: Exporter, prom: str, proxy: ThrottlingProxy, tmp_path: Path, moto: str
) -> None:
    small, wide = 2500, 400
    long = {f"d{j}": chr(ord("a") + j) * 1000 for j in range(6)}  # six 1,000-character dimension values
    _serve(
        exporter,
        prom,
        {
            "engage_batch_small": _series("engage_batch_small", small),
            "engage_batch_wide": _series("engage_batch_wide", wide, **long),
        },
    )
    mapping = tmp_path / "map.yml"
    mapping.write_text(
        "metrics:\n"
        "  - {name: Small, query: engage_batch_small, dimensions: [series]}\n"
        "  - {name: Wide, query: engage_batch_wide, dimensions: '*'}\n",
        encoding="utf-8",
    )
    env = bridge_env(
        prometheus_url=prom, endpoint_url=proxy.url, buffer_path=tmp_path / "b.db", mapping=mapping
    )
    proc = _bridge("--once", env=env)
    assert proc.returncode == 0, proc.stderr
    assert _summary(proc.stdout)["sent"] == small + wide
    assert max(proxy.log.datums_per_call) == 1000
    assert max(proxy.log.bytes_per_call) < 1_048_576
    assert sum(proxy.log.datums_per_call) == small + wide
    # the small datums fill calls of 1,000; the wide ones (~6 KB each) are cut by size, not count
    assert proxy.log.calls >= 2 + math.ceil(wide * 6000 / 1_048_576)
    wide_dims = [(k, long[k]) for k in sorted(long)]
    got = read_back(moto, "Engage", [("Wide", [*wide_dims, ("series", "s0007")])])
    assert list(got.values()) == [(1.0, 8.0)]


def test_too_many_labels_empty_and_long_values(
    exporter: Exporter, prom: str, proxy: ThrottlingProxy, tmp_path: Path, moto: str
) -> None:
    """31 labels: the first 30 by name are dimensions; a mapped label the series lacks (Prometheus has no
    empty labels) is left out; a 1,500-character value is cut to 1,024 with a hash; NaN is dropped."""
    wide = {f"l{j:02d}": f"v{j}" for j in range(31)}
    long_value = "x" * 1500
    _serve(
        exporter,
        prom,
        {
            "engage_limits_wide": [(wide, 1.0)],
            "engage_limits_partial": [({"table": "customers"}, 2.0)],
            "engage_limits_long": [({"key": long_value}, 3.0)],
            "engage_limits_nan": [({"table": "customers"}, math.nan)],
        },
    )
    mapping = tmp_path / "map.yml"
    mapping.write_text(
        "metrics:\n"
        "  - {name: Wide, query: engage_limits_wide, dimensions: '*'}\n"
        "  - {name: Partial, query: engage_limits_partial, dimensions: [table, column]}\n"
        "  - {name: Long, query: engage_limits_long, dimensions: [key]}\n"
        "  - {name: NotANumber, query: engage_limits_nan, dimensions: [table]}\n",
        encoding="utf-8",
    )
    env = bridge_env(
        prometheus_url=prom, endpoint_url=proxy.url, buffer_path=tmp_path / "b.db", mapping=mapping
    )
    proc = _bridge("--once", env=env)
    assert proc.returncode == 0, proc.stderr
    summary = _summary(proc.stdout)
    assert summary["sent"] == 3
    assert summary["dropped"] == {"non_finite": 1}
    assert summary["dimensions_fixed"] == {"too_many_dimensions": 1, "empty_value": 1, "long_value": 1}
    assert proxy.log.max_dimensions == 30
    listed = proxy_list(moto)
    assert listed["Wide"] == [{f"l{j:02d}": f"v{j}" for j in range(30)}]
    assert listed["Partial"] == [{"table": "customers"}]
    (long_dims,) = listed["Long"]
    assert len(long_dims["key"]) == 1024
    assert long_dims["key"].startswith("x" * 1007 + "~")
    assert "NotANumber" not in listed


@pytest.mark.parametrize("case", ["prometheus", "region", "credentials"])
def test_errors_are_one_line_and_exit_2(case: str, tmp_path: Path) -> None:
    env = bridge_env(
        prometheus_url=f"http://127.0.0.1:{free_port()}",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        buffer_path=tmp_path / "b.db",
    )
    env["HOME"] = str(tmp_path)
    env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = str(tmp_path / "none")
    expected = {
        "prometheus": "engage: error: Prometheus at http://127.0.0.1:",
        "region": "engage: error: no AWS region: set ENGAGE_CLOUDWATCH_REGION (or AWS_REGION)",
        "credentials": "engage: error: no AWS credentials found",
    }[case]
    if case == "region":
        del env["AWS_DEFAULT_REGION"]
    if case == "credentials":
        del env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
    proc = _bridge("--once", env=env, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith(expected), proc.stderr
    assert "Traceback" not in proc.stderr
    if case == "prometheus":
        assert "is unreachable" in lines[-1]


def test_sigterm_stops_the_loop_and_keeps_the_rest_for_the_next_run(
    exporter: Exporter, prom: str, proxy: ThrottlingProxy, tmp_path: Path, moto: str
) -> None:
    n = 50
    name = "engage:sigterm_test:value"
    _serve(exporter, prom, {name: _series(name, n)})
    env = bridge_env(
        prometheus_url=prom,
        endpoint_url=proxy.url,
        buffer_path=tmp_path / "b.db",
        interval_seconds=0.3,
        backoff_base_seconds=0.05,
        backoff_cap_seconds=0.2,
        stop_flush_seconds=1,
    )
    proxy.down = True
    proc = subprocess.Popen(
        [ENGAGE, "cloudwatch-bridge"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while proxy.log.calls < 4 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert proxy.log.calls >= 4
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, err
    first = _summary(out)
    assert first["sent"] == 0
    assert first["buffered"] == first["enqueued"] >= n
    assert "SIGTERM: stopping" in err
    proxy.down = False
    again = _bridge("--once", env=env)
    assert again.returncode == 0, again.stderr
    assert _summary(again.stdout)["sent"] == first["buffered"] + n
    got = read_back(moto, "Engage", [(name, [("series", f"s{i:04d}")]) for i in range(n)])
    scrapes = first["scrapes"] + 1
    assert got == {k: (float(scrapes), pytest.approx(scrapes * (i + 1))) for i, k in enumerate(sorted(got))}


def test_importing_the_bridge_loads_no_boto3() -> None:
    code = "import sys, engage.cloudwatch, engage.cli; print('boto3' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == ["False", "False"]


def test_the_kubernetes_objects_build_with_irsa() -> None:
    kubectl = ROOT / ".tools" / "bin" / "kubectl"
    if not kubectl.exists() and shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed (make fetches it)")
    out = subprocess.run(
        [
            str(kubectl) if kubectl.exists() else "kubectl",
            "kustomize",
            str(ROOT / "monitoring" / "cloudwatch"),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    objects = {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(out.stdout)}
    for name in ("engage-adot-collector", "engage-cloudwatch-bridge"):
        account = objects[("ServiceAccount", name)]
        assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].endswith(f":role/{name}")
        deployment = objects[("Deployment", name)]
        spec = deployment["spec"]["template"]["spec"]
        assert spec["serviceAccountName"] == name
        assert deployment["metadata"]["namespace"] == "monitoring"
    bridge = objects[("Deployment", "engage-cloudwatch-bridge")]["spec"]
    assert bridge["replicas"] == 1
    assert bridge["strategy"]["type"] == "Recreate"
    env = {e["name"]: e["value"] for e in bridge["template"]["spec"]["containers"][0]["env"]}
    from engage.cloudwatch import CloudWatchSettings

    settings = {
        k.removeprefix("ENGAGE_CLOUDWATCH_").lower() for k in env if k.startswith("ENGAGE_CLOUDWATCH_")
    }
    assert settings <= set(CloudWatchSettings.model_fields), "a setting the bridge does not have"
    mapped = [c for (kind, _), c in objects.items() if kind == "ConfigMap"]
    assert any("bridge.yml" in c["data"] for c in mapped)
    assert any("config.yaml" in c["data"] for c in mapped)
