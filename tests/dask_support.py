"""A real Dask cluster on loopback for the distributed tests: one scheduler and two worker processes.

Started from the venv's own ``dask`` command (``dask scheduler`` and ``dask worker``), one thread each
and ``OMP_NUM_THREADS=1``, each in its own process group so that teardown kills every process it started
(the nanny's worker child too), even when the test failed. Use :func:`real_dask_cluster` as a context
manager, or the module-scoped ``dask_cluster`` fixture from a test module::

    from tests.dask_support import dask_cluster  # noqa: F401  (a fixture, used by name)

    def test_x(dask_cluster: RealDaskCluster) -> None:
        with distributed.Client(dask_cluster.address) as client: ...

Each ``dask worker`` runs a nanny (Dask's default) that starts the worker process itself:
``kill_worker(i)`` SIGKILLs that worker process (the scheduler reschedules its tasks and the nanny starts
a new worker: Dask's own retry), ``kill_worker(i, permanently=True)`` SIGKILLs the nanny too (the worker
is gone for good; the job must finish on the other one or fail).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

__all__ = ["RealDaskCluster", "dask_cluster", "real_dask_cluster"]

ROOT = Path(__file__).resolve().parents[1]
DASK = Path(sys.executable).parent / "dask"
#: how long the scheduler and the two workers may take to start on a busy 2-core machine
START_TIMEOUT = 90.0


@dataclass
class RealDaskCluster:
    """A running scheduler (``address``, tcp://127.0.0.1:port) and its worker processes."""

    address: str
    scheduler_file: Path
    #: the PIDs of the worker processes (the ones running tasks), in the order of ``dask worker`` calls
    worker_pids: list[int]
    _workers: list[subprocess.Popen[bytes]] = field(repr=False)
    _worker_addresses: list[str] = field(repr=False)

    def kill_worker(self, i: int, *, permanently: bool = False) -> int:
        """SIGKILL worker ``i``'s process and return its PID; ``permanently``: its nanny too."""
        pid = self.worker_pids[i]
        if permanently:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._workers[i].pid, signal.SIGKILL)
            self._workers[i].wait(timeout=30)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return pid

    def n_workers(self) -> int:
        """How many workers the scheduler knows now (asks it)."""
        from distributed import Client

        with Client(self.address, timeout=30) as client:
            return len(client.scheduler_info(n_workers=-1)["workers"])


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", ENGAGE_THREADS="1")
    # the tests' own modules (cloudpickled functions of tests/) import on the workers too
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _start(argv: list[str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            argv,
            cwd=cwd,
            env=_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a process group of its own: killpg reaches its children
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, SIGKILL what is left after 10 s; reap the leader."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)  # any process of the group still alive?
            except ProcessLookupError:
                break
            proc.poll()
            time.sleep(0.1)
        else:
            continue
        break
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-3000:]
    except OSError:
        return ""


def _scheduler_address(scheduler_file: Path, proc: subprocess.Popen[bytes], log: Path) -> str:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dask scheduler exited with {proc.returncode}:\n{_tail(log)}")
        with contextlib.suppress(OSError, ValueError, KeyError):
            return str(json.loads(scheduler_file.read_text())["address"])
        time.sleep(0.1)
    raise RuntimeError(f"dask scheduler did not write {scheduler_file} in {START_TIMEOUT:.0f} s")


@contextlib.contextmanager
def real_dask_cluster(workdir: Path | str, *, workers: int = 2) -> Iterator[RealDaskCluster]:
    """Start ``dask scheduler`` and ``workers`` ``dask worker`` processes (1 thread each) on loopback,
    wait until every worker is registered, yield the cluster, then stop every process it started."""
    from distributed import Client

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    scheduler_file = workdir / "scheduler.json"
    scheduler_file.unlink(missing_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        scheduler_log = workdir / "scheduler.log"
        scheduler = _start(
            [
                str(DASK),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(scheduler_file),
            ],
            scheduler_log,
            workdir,
        )
        procs.append(scheduler)
        address = _scheduler_address(scheduler_file, scheduler, scheduler_log)
        worker_procs: list[subprocess.Popen[bytes]] = []
        for i in range(workers):
            local = workdir / f"worker-{i}"
            local.mkdir(exist_ok=True)
            proc = _start(
                [
                    str(DASK),
                    "worker",
                    address,
                    "--nthreads",
                    "1",
                    "--nworkers",
                    "1",
                    "--no-dashboard",
                    "--host",
                    "127.0.0.1",
                    "--name",
                    f"engage-test-{i}",
                    "--local-directory",
                    str(local),
                    "--death-timeout",
                    "60",
                ],
                workdir / f"worker-{i}.log",
                workdir,
            )
            procs.append(proc)
            worker_procs.append(proc)
        with Client(address, timeout=START_TIMEOUT) as client:
            try:
                client.wait_for_workers(workers, timeout=START_TIMEOUT)
            except TimeoutError:
                logs = "\n".join(_tail(workdir / f"worker-{i}.log") for i in range(workers))
                raise RuntimeError(f"{workers} dask workers did not register:\n{logs}") from None
            info = client.scheduler_info(n_workers=-1)["workers"]
            by_name = {str(w["name"]): addr for addr, w in info.items()}
            addresses = [by_name[f"engage-test-{i}"] for i in range(workers)]
            pids = client.run(os.getpid, workers=addresses)
        yield RealDaskCluster(
            address=address,
            scheduler_file=scheduler_file,
            worker_pids=[int(pids[a]) for a in addresses],
            _workers=worker_procs,
            _worker_addresses=addresses,
        )
    finally:
        for proc in reversed(procs):  # workers first, the scheduler last
            _stop(proc)


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealDaskCluster]:
    """One real scheduler + two worker processes for the whole test module."""
    with real_dask_cluster(tmp_path_factory.mktemp("dask-cluster")) as cluster:
        yield cluster
