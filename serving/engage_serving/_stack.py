"""``engage serve``: the predictor, explainer and drift detector of one registry version on this machine,
plus Prometheus scraping them when it is installed.

The version's files are fetched (and verified) once into a local folder, and each server is started
on them as its own ``python -m`` process, as the images run them. The predictor is given
``--logger_url`` pointing at the drift detector, standing in for the InferenceService logger of a
cluster. Logs go to ``<out>/logs/<server>.log``; Prometheus's configuration and data to
``<out>/prometheus``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess  # nosec B404 # argv lists of our own servers, never a shell
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from engage.errors import ConfigError, EngageError

__all__ = ["SERVERS", "Stack", "StackPorts", "prepare_version", "run_stack"]

#: server name -> module of its ``python -m`` entrypoint
SERVERS = {
    "predictor": "engage_serving.predictor",
    "explainer": "engage_serving.explainer",
    "drift_detector": "engage_serving.drift_detector",
}


@dataclass(frozen=True)
class StackPorts:
    predictor: int = 8080
    explainer: int = 8082
    drift_detector: int = 8084
    prometheus: int = 9090

    def http(self, server: str) -> int:
        port: int = getattr(self, server)
        return port


@dataclass
class Stack:
    """The running processes and where they answer."""

    urls: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)
    version: str = ""

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def prepare_version(registry_uri: str, ref: str, out: Path) -> tuple[Path, Path | None, str]:
    """Fetch the version's model and drift reference into ``out/<short id>/`` (reused when present)."""
    from engage.registry import Registry

    registry = Registry(registry_uri)
    version = registry.get(ref)
    folder = out / version.short_id
    model = folder / "model"
    if not (model / "manifest.json").is_file():
        registry.fetch(version.id, model)
    reference: Path | None = folder / "drift_reference"
    if reference is not None and not reference.is_dir():
        if "drift_reference" in version.attachments:
            registry.fetch_attachment(version.id, "drift_reference", reference)
        else:
            reference = None
    return model, reference, version.id


@contextmanager
def run_stack(
    model_dir: Path,
    reference_dir: Path | None,
    out: Path,
    *,
    ports: StackPorts = StackPorts(),
    model_name: str = "engage",
    prometheus: bool = True,
    timeout: float = 240.0,
    extra_env: dict[str, str] | None = None,
    rule_files: Sequence[Path] = (),
    pushgateway: str | None = None,
    review_db: str | None = None,
    event_store: str | None = None,
    say: Callable[[str], None] = print,
) -> Iterator[Stack]:
    """Start the three servers (and Prometheus), wait until each is ready, yield, then stop them all.

    Prometheus scrapes the three servers (and ``pushgateway``, ``host:port``, where the pipeline pushes)
    every 5 s and evaluates ``rule_files`` (``monitoring/prometheus/*.rules.yml``: the recording rules
    and alerts), so its ``/alerts`` page shows what would page. ``review_db``: the predictor routes edge
    cases to that governance database's review queue (``--review true``). ``event_store``: the drift
    detector keeps the logged traffic there (``--event_store``, what ``engage feedback`` reads)."""
    if reference_dir is None:
        raise ConfigError(
            f"{model_dir}: no drift reference beside the model: the explainer and the drift detector need "
            "the version's drift_reference (published by the pipeline)"
        )
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stack = Stack()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    common = ["--model_name", model_name, "--model_dir", str(model_dir), "--reference_dir", str(reference_dir),
              "--enable_grpc", "false"]  # fmt: skip
    try:
        for server, module in SERVERS.items():
            port = ports.http(server)
            args = [sys.executable, "-m", module, *common, "--http_port", str(port)]
            if server == "predictor":
                args += ["--logger_url", f"http://127.0.0.1:{ports.drift_detector}/"]
                if review_db:
                    args += ["--review", "true", "--governance_db", review_db]
            elif server == "drift_detector" and event_store:
                args += ["--event_store", event_store]
            stack.logs[server] = logs / f"{server}.log"
            with stack.logs[server].open("wb") as log:
                stack.processes[server] = subprocess.Popen(  # nosec B603 # sys.executable -m <server>
                    args, stdout=log, stderr=subprocess.STDOUT, env=env
                )
            stack.urls[server] = f"http://127.0.0.1:{port}"
        if prometheus:  # started with the servers: its start-up overlaps theirs, it scrapes them once up
            _start_prometheus(stack, out / "prometheus", ports, say, rule_files, pushgateway)
        _wait_ready(stack, timeout)
        yield stack
    finally:
        stack.stop()


def _wait_ready(stack: Stack, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    waiting = {server: stack.urls[server] for server in SERVERS}
    while waiting:
        for server, url in list(waiting.items()):
            process = stack.processes[server]
            if process.poll() is not None:
                raise EngageError(f"{server} exited with code {process.returncode}: see {stack.logs[server]}")
            try:
                answer = httpx.get(url + "/v2/health/ready", timeout=2)
            except httpx.TransportError:
                continue
            if answer.status_code == 200:
                del waiting[server]
            elif answer.status_code == 503 and "not ready" in answer.text:
                raise EngageError(
                    f"{server} is not ready: {answer.json().get('error')} (log: {stack.logs[server]})"
                )
        if waiting and time.monotonic() > deadline:
            raise EngageError(
                f"not ready after {timeout:.0f} s: {', '.join(waiting)} (logs in {stack.logs[next(iter(waiting))].parent})"
            )
        time.sleep(0.5)


def prometheus_config(
    ports: StackPorts, rule_files: Sequence[Path] = (), pushgateway: str | None = None
) -> str:
    """The local Prometheus' configuration: the three servers, the Pushgateway (its pushed ``job`` and
    ``instance`` labels kept: ``honor_labels``), the rule files."""
    import yaml

    scrape: list[dict[str, object]] = [
        {
            "job_name": "engage",
            "metrics_path": "/metrics",
            "static_configs": [{"targets": [f"127.0.0.1:{ports.http(s)}" for s in SERVERS]}],
        }
    ]
    if pushgateway:
        scrape.append(
            {"job_name": "pushgateway", "honor_labels": True, "static_configs": [{"targets": [pushgateway]}]}
        )
    config: dict[str, object] = {
        "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
        "scrape_configs": scrape,
    }
    if rule_files:
        config["rule_files"] = [str(Path(p).resolve()) for p in rule_files]
    return yaml.safe_dump(config, sort_keys=False)


def _start_prometheus(
    stack: Stack,
    folder: Path,
    ports: StackPorts,
    say: Callable[[str], None],
    rule_files: Sequence[Path] = (),
    pushgateway: str | None = None,
) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        say(
            "Prometheus is not installed (apt-get install prometheus): the servers' /metrics are still served"
        )
        return
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "prometheus.yml"
    config.write_text(prometheus_config(ports, rule_files, pushgateway), encoding="utf-8")
    address = f"127.0.0.1:{ports.prometheus}"
    stack.logs["prometheus"] = folder / "prometheus.log"
    with stack.logs["prometheus"].open("wb") as log:
        stack.processes["prometheus"] = subprocess.Popen(  # nosec B603 # the prometheus binary found on PATH
            [binary, f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}",
             f"--web.listen-address={address}"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    stack.urls["prometheus"] = f"http://{address}"
