"""A Dask client for one step: to the scheduler the settings name, or to a ``LocalCluster`` it starts.

The ``LocalCluster`` runs worker *processes* on loopback (``127.0.0.1``), one thread each by default:
xgboost and the BLAS libraries in each worker then use the thread they are given, not every core of the
machine (two processes that each use every core run ten times slower here).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from engage.errors import ConfigError

from ._settings import DaskSettings

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["dask_client"]

log = logging.getLogger("engage.distributed")


@contextlib.contextmanager
def dask_client(settings: DaskSettings | None = None) -> Iterator[Client]:
    """A connected client; a cluster it started is closed on the way out (the one it joined is not)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError(
            "the dask engine needs Dask: install engage[dask] (dask[dataframe,distributed])"
        ) from None
    settings = settings or DaskSettings()
    timeout = settings.timeout_seconds
    if settings.scheduler:
        try:
            client = Client(settings.scheduler, timeout=timeout)
        except OSError as e:
            raise ConfigError(
                f"cannot reach the Dask scheduler {settings.scheduler} (ENGAGE_DASK_SCHEDULER): {e}"
            ) from None
        try:
            log.info(
                "dask: joined %s (%d workers)",
                settings.scheduler,
                len(client.scheduler_info().get("workers", {})),
            )
            yield client
        finally:
            client.close()
        return
    with contextlib.ExitStack() as stack:
        cluster = stack.enter_context(
            LocalCluster(
                n_workers=settings.workers,
                threads_per_worker=settings.threads_per_worker,
                processes=True,
                host="127.0.0.1",
                dashboard_address=":0",  # a free port: its /metrics (Prometheus) and dashboard
                memory_limit=settings.memory_limit,
                silence_logs=logging.WARNING,
            )
        )
        client = stack.enter_context(Client(cluster, timeout=timeout))
        log.info(
            "dask: started a LocalCluster of %d worker process(es) x %d thread(s) at %s",
            settings.workers,
            settings.threads_per_worker,
            cluster.scheduler_address,
        )
        yield client
