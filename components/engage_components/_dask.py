"""The Dask cluster of one pipeline step: started through the Dask Kubernetes operator on EKS, else none.

The chart (``charts/engage``, ``dask.enabled``) ships a ``DaskCluster`` manifest in the ConfigMap
``engage-dask-cluster``; the step's pod mounts it and names the file in ``ENGAGE_DASK_CLUSTER_SPEC``.
:func:`engine_cluster` then creates a ``DaskCluster`` of that spec under a name of its own (one per run),
waits for its scheduler and every worker, yields the :class:`~engage.distributed.DaskSettings` that join
it, and deletes it on the way out, also when the step fails. Without the variable it yields the settings
as they are: a ``LocalCluster`` beside the step, or the scheduler ``ENGAGE_DASK_SCHEDULER`` names.

``dask_kubernetes.operator.KubeCluster`` does the work; it runs here on an event loop of its own thread,
so that its start gets one deadline (``ENGAGE_DASK_TIMEOUT_SECONDS``): its own waits for the scheduler's
pod have none, and a pod that cannot be scheduled would hold the step forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import os
import threading
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import yaml

from engage.distributed import DaskSettings
from engage.errors import ConfigError

__all__ = ["CLUSTER_SPEC_ENV", "NAMESPACE_ENV", "engine_cluster", "load_cluster_spec", "named_cluster_spec"]

log = logging.getLogger("engage_components.dask")

#: the DaskCluster manifest the step starts (the chart's ConfigMap engage-dask-cluster, mounted)
CLUSTER_SPEC_ENV = "ENGAGE_DASK_CLUSTER_SPEC"
#: where the DaskCluster is created; unset: the namespace of the pod's service account
NAMESPACE_ENV = "ENGAGE_DASK_NAMESPACE"
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
API_VERSION = "kubernetes.dask.org/v1"
OPERATOR_INSTALL = (
    "install the Dask Kubernetes operator: helm install dask-operator dask-kubernetes-operator "
    "--repo https://helm.dask.org --namespace dask-operator --create-namespace (docs/deploy.md, Dask on EKS)"
)
#: a DaskCluster's name is a DNS label of at most this many characters (dask_kubernetes' own limit)
_MAX_NAME = 32
#: how long deleting the DaskCluster may take on the way out (the operator removes its pods)
_CLOSE_SECONDS = 120.0

T = TypeVar("T")


def load_cluster_spec(path: Path) -> dict[str, Any]:
    """The ``DaskCluster`` manifest in ``path``; :class:`ConfigError` naming the file when it is unreadable,
    not YAML, or not a ``DaskCluster`` with a scheduler (pod spec and Service) and a worker pod spec."""
    where = f"{CLUSTER_SPEC_ENV}={path}"
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"{where}: cannot read the DaskCluster manifest: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: the DaskCluster manifest is not YAML: {e}") from None
    if not isinstance(doc, dict) or (doc.get("apiVersion"), doc.get("kind")) != (API_VERSION, "DaskCluster"):
        found = (doc.get("apiVersion"), doc.get("kind")) if isinstance(doc, dict) else type(doc).__name__
        raise ConfigError(
            f"{where}: not a DaskCluster manifest (apiVersion {API_VERSION}, kind DaskCluster): found {found}; "
            "mount the chart's ConfigMap engage-dask-cluster (dask.enabled) there"
        )
    spec: dict[str, Any] = doc["spec"] if isinstance(doc.get("spec"), dict) else {}
    worker, scheduler = spec.get("worker") or {}, spec.get("scheduler") or {}
    missing = [
        field
        for field, present in (
            ("spec.worker.spec.containers", (worker.get("spec") or {}).get("containers")),
            ("spec.scheduler.spec.containers", (scheduler.get("spec") or {}).get("containers")),
            ("spec.scheduler.service", scheduler.get("service")),
        )
        if not present
    ]
    if missing:
        raise ConfigError(f"{where}: the DaskCluster has no {', '.join(missing)}")
    return doc


def named_cluster_spec(manifest: dict[str, Any], name: str) -> dict[str, Any]:
    """A copy of ``manifest`` for the cluster ``name``: its name, and the scheduler Service's selector,
    which must pick that cluster's scheduler pod (the operator labels it ``dask.org/cluster-name``)."""
    named = copy.deepcopy(manifest)
    named.setdefault("metadata", {})["name"] = name
    service = named["spec"]["scheduler"]["service"]
    service["selector"] = {
        **(service.get("selector") or {}),
        "dask.org/cluster-name": name,
        "dask.org/component": "scheduler",
    }
    return named


def _unique_name(manifest: dict[str, Any]) -> str:
    base = str((manifest.get("metadata") or {}).get("name") or "engage-dask")
    return f"{base[: _MAX_NAME - 9].rstrip('-')}-{uuid.uuid4().hex[:8]}"


def _namespace() -> str:
    namespace = os.environ.get(NAMESPACE_ENV, "").strip()
    if namespace:
        return namespace
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text(encoding="utf-8").strip()
    except OSError:
        raise ConfigError(
            f"{CLUSTER_SPEC_ENV} is set but the step's namespace is unknown: set {NAMESPACE_ENV} (the "
            f"namespace of the chart's dask objects) or run in a pod with a service account token "
            f"({SERVICE_ACCOUNT_NAMESPACE})"
        ) from None


class _Loop:
    """An asyncio event loop on a daemon thread: each call has a deadline, and a call that misses it is
    cancelled (the thread never keeps the step's process alive)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="engage-dask-operator", daemon=True
        )
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.call(_close_kubernetes_clients(), 10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self.loop.close()


async def _close_kubernetes_clients() -> None:
    """Close the HTTP clients kr8s cached for this loop: it keeps one per thread, loop and settings, and
    never closes them (their sockets would outlive the loop)."""
    from kr8s._api import Api

    key = f"{threading.get_ident()}.{id(asyncio.get_running_loop())}"
    for api in list(Api._instances.pop(key, {}).values()):
        if api._session is not None:
            await api._session.aclose()


def _api_problem(e: Exception, namespace: str) -> ConfigError | None:
    """What a Kubernetes API error means for the step, or None for an error of another kind."""
    import httpx
    import kr8s

    if isinstance(e, kr8s.ServerError):
        code = e.response.status_code if e.response is not None else None
        if code == 404:
            return ConfigError(
                f"the Kubernetes API has no daskclusters resource ({API_VERSION}): {OPERATOR_INSTALL}"
            )
        if code in (401, 403):
            return ConfigError(
                f"the step's service account may not manage DaskClusters in namespace {namespace} ({e}): "
                "enable the chart's dask section (Role and RoleBinding engage-dask) with dask.namespace and "
                "dask.serviceAccount naming the step's namespace and service account"
            )
        return ConfigError(f"the Kubernetes API refused the DaskCluster in namespace {namespace}: {e}")
    if isinstance(e, httpx.HTTPError | OSError):
        return ConfigError(f"cannot reach the Kubernetes API to start the Dask cluster: {e}")
    return None


async def _check_operator(namespace: str) -> None:
    """The API serves daskclusters (the operator's CRDs are installed), else :class:`ConfigError`."""
    import kr8s

    try:
        api = await kr8s.asyncio.api(namespace=namespace)
    except ValueError as e:  # kr8s: "Unable to find valid credentials"
        raise ConfigError(
            f"no Kubernetes credentials to start the Dask cluster ({e}): in a pod, mount the service "
            "account's token (automountServiceAccountToken); elsewhere, set KUBECONFIG"
        ) from None
    async with api.call_api("GET", version="", base="/apis", url=API_VERSION, raise_for_status=False) as r:
        found = r.status_code == 200 and "daskclusters" in {res["name"] for res in r.json()["resources"]}
    if not found:
        raise ConfigError(
            f"the Kubernetes API has no daskclusters resource ({API_VERSION}): {OPERATOR_INSTALL}"
        )


async def _start(manifest: dict[str, Any], namespace: str, made: list[Any]) -> None:
    from dask_kubernetes.operator import KubeCluster
    from dask_kubernetes.operator.kubecluster.kubecluster import CreateMode

    await _check_operator(namespace)
    cluster = KubeCluster(
        custom_cluster_spec=manifest,
        namespace=namespace,
        shutdown_on_close=True,
        create_mode=CreateMode.CREATE_ONLY,
        asynchronous=True,
        quiet=True,
    )
    made.append(cluster)
    await cluster
    await cluster.wait_for_workers(int(manifest["spec"]["worker"].get("replicas", 1)))


def _joined(cluster: Any, base: DaskSettings) -> DaskSettings:
    """Settings that join the started cluster: its scheduler, and its workers' shape."""
    workers = list((cluster.scheduler_info.get("workers") or {}).values())
    fields = base.model_dump()
    fields["scheduler"] = cluster.scheduler_address
    if workers:
        fields["workers"] = len(workers)
        fields["threads_per_worker"] = int(workers[0].get("nthreads") or base.threads_per_worker)
        fields["memory_limit"] = str(workers[0].get("memory_limit") or base.memory_limit)
    return DaskSettings(**fields)


@contextlib.contextmanager
def engine_cluster(settings: DaskSettings | None = None) -> Iterator[DaskSettings]:
    """The Dask settings of one step; with ``ENGAGE_DASK_CLUSTER_SPEC``, a ``DaskCluster`` started through
    the operator for the step and deleted after it (see the module's doc)."""
    base = settings or DaskSettings()
    spec_file = os.environ.get(CLUSTER_SPEC_ENV, "").strip()
    if not spec_file:
        yield base
        return
    template = load_cluster_spec(Path(spec_file))
    namespace = _namespace()
    try:
        import dask_kubernetes.operator  # noqa: F401
        import kr8s  # noqa: F401  (dask_kubernetes' Kubernetes client)
    except ImportError:
        raise ConfigError(
            f"{CLUSTER_SPEC_ENV} needs the Dask Kubernetes operator's client: install engage[dask]"
        ) from None
    name = _unique_name(template)
    manifest = named_cluster_spec(template, name)
    loop = _Loop()
    made: list[Any] = []
    try:
        log.info("dask: starting DaskCluster %s in namespace %s", name, namespace)
        try:
            loop.call(_start(manifest, namespace, made), base.timeout_seconds)
        except TimeoutError:
            raise ConfigError(
                f"the DaskCluster {name} in namespace {namespace} was not up with "
                f"{manifest['spec']['worker'].get('replicas', 1)} worker(s) within {base.timeout_seconds:g} s "
                "(ENGAGE_DASK_TIMEOUT_SECONDS): is the operator running, can its pods be scheduled and pull "
                f"their image? kubectl -n {namespace} describe daskcluster {name}"
            ) from None
        except ConfigError:
            raise
        except Exception as e:
            problem = _api_problem(e, namespace)
            if problem is None:
                raise
            raise problem from None
        settings_out = _joined(made[0], base)
        log.info("dask: DaskCluster %s ready at %s", name, settings_out.scheduler)
        yield settings_out
    finally:
        if made:
            try:
                loop.call(made[0].close(timeout=_CLOSE_SECONDS), _CLOSE_SECONDS + 10)
                log.info("dask: DaskCluster %s deleted", name)
            except Exception as e:  # the step's own outcome stands; the object's idleTimeout reaps it
                log.warning("dask: could not delete DaskCluster %s in %s: %s", name, namespace, e)
        loop.stop()
