"""What the CloudWatch bridge's tests and benchmark share: moto's server, a real Prometheus scraping a
tiny exporter, a throttling proxy in front of moto, and reading datums back with GetMetricData.

Every server listens on 127.0.0.1 on a free port; every wait is bounded.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.monitoring_support import free_port, wait_ok

ROOT = Path(__file__).resolve().parents[1]
ENGAGE = str(Path(sys.executable).with_name("engage"))
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",  # never ask an instance-metadata endpoint for credentials
}
#: what CloudWatch answers a throttled call (awsJson1_0 with the query-compatible error header, which is
#: how botocore's CloudWatch client talks; the body's __type alone also parses as Throttling)
THROTTLING_BODY = json.dumps({"__type": "Throttling", "message": "Rate exceeded"}).encode()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextmanager
def moto_server() -> Iterator[str]:
    """moto's server (all services, CloudWatch among them) on a free loopback port; its URL."""
    port = free_port()
    binary = Path(sys.executable).with_name("moto_server")
    cmd = [str(binary)] if binary.exists() else [sys.executable, "-m", "moto.server"]
    proc = subprocess.Popen(
        [*cmd, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ok(f"{url}/moto-api/", proc=proc)
        yield url
    finally:
        _stop(proc)


def reset_moto(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"), timeout=10).close()


class Exporter:
    """A tiny ``/metrics`` endpoint serving whatever text :attr:`text` holds (Prometheus scrapes it)."""

    def __init__(self) -> None:
        self.text = ""
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = outer.text.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def exposition(series: dict[str, list[tuple[dict[str, str], float]]]) -> str:
    """Prometheus' text format of ``{name: [(labels, value), ...]}`` (every series a gauge)."""
    lines = []
    for name, samples in series.items():
        lines.append(f"# TYPE {name} gauge")
        for labels, value in samples:
            body = ",".join(f'{k}="{v}"' for k, v in labels.items())
            lines.append(f"{name}{{{body}}} {value!r}" if body else f"{name} {value!r}")
    return "\n".join(lines) + "\n"


@contextmanager
def prometheus(tmp: Path, exporter: Exporter) -> Iterator[str]:
    """A real Prometheus scraping ``exporter`` every second; its base URL."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise RuntimeError("prometheus is not installed (apt-get install prometheus)")
    port = free_port()
    config = tmp / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: engage\n    static_configs: [{{targets: ['{exporter.address}']}}]\n",
        encoding="utf-8",
    )
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ok(f"{url}/-/ready", proc=proc)
        yield url
    finally:
        _stop(proc)


def wait_series(prometheus_url: str, query: str, count: int, timeout: float = 30.0) -> None:
    """Wait until ``query`` returns ``count`` series (the exporter has been scraped)."""
    from engage.cloudwatch import instant_query

    deadline = time.monotonic() + timeout
    while True:
        found = len(instant_query(prometheus_url, query, time.time(), 5))
        if found == count:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{query}: {found} series after {timeout:.0f} s, expected {count}")
        time.sleep(0.2)


@dataclass
class ProxyLog:
    calls: int = 0  # PutMetricData calls received
    throttled: int = 0
    unavailable: int = 0
    accepted_calls: int = 0
    accepted_datums: int = 0
    datums_per_call: list[int] = field(default_factory=list)
    bytes_per_call: list[int] = field(default_factory=list)
    max_dimensions: int = 0


class ThrottlingProxy:
    """A loopback HTTP proxy in front of moto: answers a share of PutMetricData calls with CloudWatch's
    throttling error (``throttle`` in 0..1, seeded), or every call with 503 while :attr:`down` is set;
    forwards the rest with httpx. :attr:`on_accepted` runs after moto accepted a call and before the
    answer goes back (the test kills the bridge there: the worst moment for a crash)."""

    def __init__(self, upstream: str, throttle: float = 0.0, seed: int = 7) -> None:
        import httpx

        self.upstream = upstream
        self.throttle = throttle
        self.down = False
        self.log = ProxyLog()
        self.on_accepted: Callable[[ProxyLog], None] | None = None
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._http = httpx.Client(base_url=upstream, timeout=30)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                outer._handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._http.close()

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        body = h.rfile.read(int(h.headers.get("Content-Length", 0)))
        target = h.headers.get("X-Amz-Target", "")
        put = target.endswith(".PutMetricData")
        if put and not h.headers.get("Content-Type", "").startswith("application/x-amz-json"):
            raise AssertionError(f"the proxy reads awsJson requests, got {h.headers.get('Content-Type')}")
        with self._lock:
            if put:
                # botocore gzips a PutMetricData body over 10 KB; the limits are on the payload itself
                plain = gzip.decompress(body) if h.headers.get("Content-Encoding") == "gzip" else body
                data = json.loads(plain)["MetricData"]
                self.log.calls += 1
                self.log.datums_per_call.append(len(data))
                self.log.bytes_per_call.append(len(plain))
                self.log.max_dimensions = max(
                    [self.log.max_dimensions, *(len(d.get("Dimensions", [])) for d in data)]
                )
                if self.down:
                    self.log.unavailable += 1
                    return self._answer(h, 503, b'{"__type":"ServiceUnavailable","message":"down"}', "")
                if self._random.random() < self.throttle:
                    self.log.throttled += 1
                    return self._answer(h, 400, THROTTLING_BODY, "Throttling;Sender")
        headers = {k: v for k, v in h.headers.items() if k.lower() not in ("host", "content-length")}
        upstream = self._http.post(h.path, content=body, headers=headers)
        if put and upstream.status_code == 200:
            with self._lock:
                self.log.accepted_calls += 1
                self.log.accepted_datums += self.log.datums_per_call[-1] if self.log.datums_per_call else 0
                hook = self.on_accepted
            if hook is not None:
                hook(self.log)
        content_type = upstream.headers.get("content-type", "application/x-amz-json-1.0")
        self._answer(h, upstream.status_code, upstream.content, "", content_type)
        return None

    @staticmethod
    def _answer(
        h: BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        query_error: str,
        content_type: str = "application/x-amz-json-1.0",
    ) -> None:
        try:
            h.send_response(status)
            h.send_header("Content-Type", content_type)
            h.send_header("Content-Length", str(len(body)))
            h.send_header("x-amzn-RequestId", "proxy")
            if query_error:
                h.send_header("x-amzn-query-error", query_error)
            h.end_headers()
            h.wfile.write(body)
        except OSError:  # the bridge was killed while we answered
            pass


def cloudwatch(url: str) -> Any:
    import boto3

    return boto3.client(
        "cloudwatch",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def read_back(
    url: str, namespace: str, metrics: list[tuple[str, list[tuple[str, str]]]], unit: str | None = None
) -> dict[tuple[str, tuple[tuple[str, str], ...]], tuple[float, float]]:
    """(SampleCount, Sum) of each (metric, dimensions) over the last and next hour, by GetMetricData
    (250 metrics per call: 500 queries); metrics with no data are absent."""
    client = cloudwatch(url)
    now = datetime.now(UTC)
    out: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[float, float]] = {}
    for start in range(0, len(metrics), 250):
        chunk = metrics[start : start + 250]
        queries = []
        for i, (name, dims) in enumerate(chunk):
            for stat in ("SampleCount", "Sum"):
                stat_query: dict[str, Any] = {
                    "Metric": {
                        "Namespace": namespace,
                        "MetricName": name,
                        "Dimensions": [{"Name": n, "Value": v} for n, v in dims],
                    },
                    "Period": 86400,
                    "Stat": stat,
                }
                if unit is not None:
                    stat_query["Unit"] = unit
                queries.append({"Id": f"{stat.lower()}{i}", "MetricStat": stat_query})
        answer = client.get_metric_data(
            MetricDataQueries=queries, StartTime=now - timedelta(hours=2), EndTime=now + timedelta(hours=1)
        )
        values = {r["Id"]: sum(r["Values"]) for r in answer["MetricDataResults"] if r["Values"]}
        for i, (name, dims) in enumerate(chunk):
            if f"samplecount{i}" in values:
                out[(name, tuple(dims))] = (values[f"samplecount{i}"], values.get(f"sum{i}", 0.0))
    return out


def bridge_env(**settings: object) -> dict[str, str]:
    """The environment of a bridge subprocess: test AWS credentials and ``ENGAGE_CLOUDWATCH_*``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ENGAGE_CLOUDWATCH_"))}
    env.update(AWS_ENV)
    env.update({f"ENGAGE_CLOUDWATCH_{k.upper()}": str(v) for k, v in settings.items()})
    return env


def kill_when(
    proc_holder: dict[str, subprocess.Popen[bytes]], accepted_calls: int
) -> Callable[[ProxyLog], None]:
    """A proxy hook that SIGKILLs the bridge once moto accepted ``accepted_calls`` calls, before the
    bridge hears so (it then sends that batch again after its restart: at least once)."""

    def hook(log: ProxyLog) -> None:
        proc = proc_holder.get("bridge")
        if log.accepted_calls == accepted_calls and proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    return hook
