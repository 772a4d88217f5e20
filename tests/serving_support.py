"""What the serving tests and benchmarks share: a small real model folder laid out as a registry version
(``model/`` and ``drift_reference/``), and a real Engage server process on a free loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def build_model_folder(
    root: Path, *, rows: int = 4_000, seed: int = 13, max_rounds: int = 120, snapshots: int = 1
) -> Path:
    """Generate ``rows`` customers, run the pipeline's own features / train / drift-reference steps on
    them, and lay the results out as a registry version folder: ``root/model`` (the bundle, signed as the
    registry signs a version: the servers load only signed bundles) and ``root/drift_reference``. Returns
    ``root``. ``snapshots`` > 1: monthly extracts, split by extract time as the pipeline's default table is
    (one extract is split by signup cohort, so the reference holds the earliest cohorts' tenures)."""
    from engage.contract import default_contract_path, load_contract
    from engage.synthetic import SyntheticConfig, generate_customers
    from engage.tables import write_table
    from engage.training import TrainConfig, train
    from engage_components.steps import drift_reference_step, features_step, read_features

    root.mkdir(parents=True, exist_ok=True)
    contract_path = str(default_contract_path())
    contract = load_contract(contract_path)
    as_of = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
    table = generate_customers(SyntheticConfig(rows=rows, seed=seed, snapshots=snapshots, as_of=as_of))
    data = root / "work" / "customers.parquet"
    data.parent.mkdir(parents=True)
    write_table(table.frame, data)
    features_step(data, contract_path, root / "work" / "features", seed=seed)
    features, split = read_features(root / "work" / "features")
    result = train(
        table.frame,
        contract,
        config=TrainConfig(seed=seed, max_rounds=max_rounds),
        features=features,
        split=split,
    )
    result.bundle("xgboost").save(root / "model")
    from engage.registry import RegistrySettings
    from engage.signing import sign_bundle

    # with no key configured: the development key (the tests' is the session's, tests/conftest.py)
    sign_bundle(root / "model", model=RegistrySettings().model)
    from engage.policy import default_policy_path

    policy = str(default_policy_path())
    drift_reference_step(
        data, root / "work" / "features", contract_path, policy, root / "drift_reference", seed=seed
    )
    return root


def flip_a_byte(path: Path) -> None:
    """Corrupt a model file: the byte in its middle inverted (its SHA-256 no longer matches the manifest)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A running server process: its base URL and the lines it logged so far."""

    process: subprocess.Popen[str]
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


@contextmanager
def run_server(
    module: str,
    args: list[str],
    log_path: Path,
    *,
    env: dict[str, str] | None = None,
    ready: bool = True,
    timeout: float = 120.0,
    grpc_port: int | None = None,
) -> Iterator[Server]:
    """Start ``python -m <module> <args> --http_port P`` and wait until it answers ``/`` (live) and, with
    ``ready``, ``/v2/health/ready``; stop it on exit."""
    import httpx

    port = free_port()
    command = [sys.executable, "-m", module, *args, "--http_port", str(port)]
    command += [
        "--grpc_port",
        str(grpc_port or free_port()),
        "--enable_grpc",
        "true" if grpc_port else "false",
    ]
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with log_path.open("w", encoding="utf-8") as log_file:
        process = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, text=True, env=environment
        )
    server = Server(process, f"http://127.0.0.1:{port}", log_path)
    try:
        deadline = time.monotonic() + timeout
        path = "/v2/health/ready" if ready else "/"
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{module} exited with {process.returncode}:\n{server.log()[-3000:]}")
            try:
                if httpx.get(server.url + path, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{module} not up after {timeout} s:\n{server.log()[-3000:]}")
            time.sleep(0.25)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def rows(frame: Any, n: int) -> list[dict[str, Any]]:
    """The first ``n`` rows of ``frame`` as JSON-ready objects (what a client sends)."""
    import json

    return json.loads(frame.head(n).to_json(orient="records", date_format="iso"))
