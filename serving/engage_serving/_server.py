"""What every Engage server's ``python -m`` entrypoint shares: flags, model files, logging, start-up.

The flags extend ``kserve.model_server.parser`` (``--http_port``, ``--grpc_port``, ``--workers`` … stay
KServe's), so the manifests pass the same flags to our images as to KServe's own servers; a test feeds
the rendered InferenceService's ``args`` to :func:`server_parser`.

A server whose model cannot be loaded or fails its SHA-256 check still starts, and stays not ready:
``/v2/health/ready``, ``/v2/models/<m>/ready`` and every inference route answer 503 with the reason,
and one ``ERROR`` log line says what is wrong. Kubernetes then never routes traffic to it, and the
reason is one ``kubectl logs`` away (KServe's own servers exit instead, which shows as a crash loop).

SIGTERM drains before it stops (:class:`GracefulStop`). KServe's ModelServer leaves SIGTERM to uvicorn,
which stops listening and closes every idle keep-alive connection within 0.1 s: a client that had just
sent a request on one (a load balancer that has not yet seen the pod go) gets the connection reset, no
answer. Here SIGTERM first makes readiness answer 503 and every answer close its connection, goes on
answering until no request has come for ``ENGAGE_SERVING_DRAIN_QUIET_SECONDS`` (at most
``ENGAGE_SERVING_DRAIN_SECONDS``), and only then hands over to uvicorn's graceful stop, which waits up
to ``ENGAGE_SERVING_SHUTDOWN_TIMEOUT_SECONDS`` for the requests in flight (docs/reliability.md).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from engage.errors import ArtifactError, EngageError

from ._http import Drain, FastRoute, HTTPLayer, Middleware, install_error_handlers
from ._settings import ServingSettings

__all__ = [
    "GracefulStop",
    "ModelFiles",
    "flag",
    "load_or_explain",
    "model_version",
    "resolve_model_files",
    "serve",
    "server_parser",
    "service_name",
]

log = logging.getLogger("engage_serving")

#: where KServe's storage initializer puts the files of ``STORAGE_URI``
MODEL_DIR = "/mnt/models"
REFERENCE_ATTACHMENT = "drift_reference"


def server_parser(
    prog: str, description: str, settings: ServingSettings | None = None
) -> argparse.ArgumentParser:
    """KServe's model-server parser plus the flags every Engage server takes."""
    from kserve import model_server

    settings = settings or ServingSettings()
    parser = argparse.ArgumentParser(prog=prog, description=description, parents=[model_server.parser])
    parser.set_defaults(model_name="engage")
    parser.add_argument(
        "--model_dir", default=MODEL_DIR, help="folder of the model bundle (its manifest.json)"
    )
    parser.add_argument(
        "--registry", default=None, help="serve a registry version instead of --model_dir: the registry URI"
    )
    parser.add_argument(
        "--ref", default="production", help="with --registry: the alias or version id to serve"
    )
    parser.add_argument(
        "--reference_dir",
        default=None,
        help="the training reference (reference.parquet, summary.json); default: drift_reference beside "
        "--model_dir, or the version's drift_reference attachment with --registry",
    )
    parser.add_argument("--contract", default=None, help="data contract the inputs are checked against")
    parser.add_argument("--max_body_bytes", type=int, default=settings.max_body_bytes)
    parser.add_argument("--max_rows", type=int, default=settings.max_rows)
    parser.add_argument("--log_format", choices=["json", "text"], default=settings.log_format)
    parser.add_argument("--log_level", default=settings.log_level)
    return parser


def flag(value: str) -> bool:
    """A boolean flag's value, read as KServe reads its own (``true``/``false``, ``1``/``0``, ``yes``/``no``)."""
    from kserve.utils.utils import strtobool

    return bool(strtobool(value))


@dataclass(frozen=True)
class ModelFiles:
    """Where a server's model bundle and training reference are on local disk."""

    model_dir: Path
    reference_dir: Path | None
    source: str  # a registry ref, or the folder it was given


def resolve_model_files(args: argparse.Namespace, *, need_reference: bool = False) -> ModelFiles:
    """The local files named by the flags: ``--model_dir`` as given, or a registry version fetched (and
    verified) into a fresh temporary folder. Raises :class:`EngageError` when they cannot be had."""
    if args.registry:
        from engage.registry import Registry

        registry = Registry(args.registry)
        version = registry.get(args.ref)
        cache = Path(tempfile.mkdtemp(prefix="engage-model-"))
        model_dir = registry.fetch(version.id, cache / "model")
        reference = Path(args.reference_dir) if args.reference_dir else None
        if reference is None and need_reference:
            reference = registry.fetch_attachment(
                version.id, REFERENCE_ATTACHMENT, cache / REFERENCE_ATTACHMENT
            )
        return ModelFiles(model_dir, reference, f"{args.registry} {args.ref} ({version.id})")
    model_dir = Path(args.model_dir)
    reference = Path(args.reference_dir) if args.reference_dir else model_dir.parent / REFERENCE_ATTACHMENT
    return ModelFiles(model_dir, reference if reference.is_dir() else None, str(model_dir))


def load_or_explain(name: str, load: Callable[[], Any]) -> str | None:
    """Run ``load``; on an Engage error log one line and return why the model is not ready."""
    try:
        load()
    except EngageError as e:
        if type(e).__name__ == "SignatureError":  # engage.signing stays unimported until a load needs it
            status = "unsigned or untrusted model"
        elif isinstance(e, ArtifactError):
            status = "corrupt or changed model files"
        else:
            status = type(e).__name__
        log.error("model %s is NOT READY (%s): %s", name, status, e.message)
        return e.message
    except (
        Exception
    ) as e:  # a library failing on a file we could not check: still not ready, not a crash loop
        log.exception("model %s is NOT READY: loading failed: %s", name, e)
        return f"loading failed: {type(e).__name__}: {e}"
    return None


def serve(
    model: Any,
    args: argparse.Namespace,
    *,
    routes: Iterable[FastRoute] = (),
    not_ready: Callable[[], str | None] = lambda: None,
) -> None:
    """Serve ``model`` (a ``kserve.Model``) with KServe's ModelServer behind Engage's HTTP layer, ready
    or not (a model that is not ready answers 503 with the reason instead of exiting)."""
    from kserve import ModelServer
    from kserve import model_server as ks

    from engage.telemetry.tracing import start_tracing

    settings = ServingSettings()
    version = model_version(model)
    # decided once: None (off) leaves the HTTP layer and the model without a single span call
    tracing = start_tracing(service_name(model), model=model.name, model_version=version or None)
    model.tracing = tracing
    layer = HTTPLayer(
        model.name, args.max_body_bytes, not_ready=not_ready, tracing=tracing, model_version=version
    )
    graceful = GracefulStop(layer.drain, settings.drain_seconds, settings.drain_quiet_seconds)
    for route in routes:
        layer.add(route)
    ks.app.add_middleware(Middleware, layer=layer)
    install_error_handlers(ks.app, model.name, traced=tracing is not None)

    class _Server(ModelServer):  # type: ignore[misc]
        def _register_and_check_atleast_one_model_is_ready(self, models: Sequence[Any]) -> None:
            for m in models:  # registered ready or not: not ready answers 503 rather than exiting
                self.register_model(m)
                m.enable_latency_logging = self.enable_latency_logging
                if m.ready:  # kserve's Model.start() sets ready: only for a model that loaded
                    m.start()

        async def _serve(self) -> None:
            rest_server = getattr(self, "_rest_server", None)
            if rest_server is not None:
                # KServe adds its exception handlers when the server starts (they log a 404 for an
                # unknown model or a 400 with a traceback): ours go on top of them, then
                build = rest_server.create_application

                def create_application() -> None:
                    build()
                    install_error_handlers(ks.app, model.name, traced=tracing is not None)

                rest_server.create_application = create_application
            servers = [asyncio.ensure_future(s) for s in self.servers]
            rest = getattr(rest_server, "_server", None)  # uvicorn.Server
            if rest is not None:
                await graceful.install(rest.handle_exit)
            else:  # --workers > 1: KServe's multi-process server stops the workers itself
                log.warning("SIGTERM is not drained with --workers > 1: uvicorn's own graceful stop")
            await asyncio.gather(*servers)

    _Server(
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        workers=args.workers,
        enable_grpc=args.enable_grpc,
        enable_latency_logging=args.enable_latency_logging,
        access_log_format=args.access_log_format,
        event_loop=args.event_loop,
        timeout_keep_alive=args.timeout_keep_alive,
        grace_period=settings.shutdown_timeout_seconds,
    ).start([model])


class GracefulStop:
    """SIGTERM: drain (:class:`~engage_serving._http.Drain`), then uvicorn's graceful stop.

    While draining, readiness answers 503 and every answer carries ``connection: close``; requests go on
    being answered. The drain ends when no request has arrived for ``quiet`` seconds, or after
    ``seconds`` at most; then ``stop`` (uvicorn's own signal handler) closes the listener and waits for the
    requests in flight. A second SIGTERM, or SIGINT, stops at once.
    """

    def __init__(self, drain: Drain, seconds: float, quiet: float) -> None:
        self.drain = drain
        self.seconds = seconds
        self.quiet = quiet
        self._stop: Callable[[int, FrameType | None], None] = lambda sig, frame: None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    async def install(self, stop: Callable[[int, FrameType | None], None]) -> None:
        """Take SIGTERM over from ``stop`` (uvicorn's handler), once uvicorn has installed it: uvicorn
        captures the signals in the first step of its ``serve()``, which the caller has just scheduled."""
        self._stop = stop
        self._loop = asyncio.get_running_loop()
        if self.seconds <= 0:
            return  # no drain: uvicorn's handler stays
        for _ in range(500):  # 5 s at most; in practice the first turn of the loop
            if signal.getsignal(signal.SIGTERM) == stop:
                break
            await asyncio.sleep(0.01)
        else:
            log.warning("uvicorn did not take SIGTERM over: draining anyway, then stopping it")
        signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, sig: int, frame: FrameType | None) -> None:
        if self.drain.since is not None or self._loop is None:
            self._stop(sig, frame)  # a second SIGTERM: stop now
            return
        self.drain.since = time.monotonic()
        log.info(
            "SIGTERM: draining (readiness 503, connections closed after each answer) until no request has "
            "come for %.1f s, at most %.1f s; then in-flight requests are finished and the server stops",
            self.quiet, self.seconds,
        )  # fmt: skip
        self._loop.call_soon_threadsafe(self._start, sig)

    def _start(self, sig: int) -> None:
        self._task = asyncio.ensure_future(self._wait_then_stop(sig))

    async def _wait_then_stop(self, sig: int) -> None:
        since = self.drain.since or time.monotonic()
        while True:
            now = time.monotonic()
            # quiet counts from the last request: a server idle that long already stops at once
            if now - since >= self.seconds or now - self.drain.last_request >= self.quiet:
                break
            await asyncio.sleep(0.05)
        log.info("drained after %.1f s: closing the listener, finishing requests in flight", now - since)
        self._stop(sig, None)


def service_name(model: Any) -> str:
    """``engage-predictor``, ``engage-explainer`` or ``engage-drift-detector``: the package of the
    model's class (``engage_serving.<server>._model``)."""
    from engage.telemetry.tracing import SERVICES

    parts = type(model).__module__.split(".")
    server = parts[1] if len(parts) > 1 and parts[0] == "engage_serving" else ""
    return SERVICES.get(server, "engage-serving")


def model_version(model: Any) -> str:
    """The served bundle's version (``sha256:…``) where the model knows it, else empty."""
    for holder in (
        model,
        getattr(model, "bundle", None),
        getattr(getattr(model, "explainer", None), "bundle", None),
    ):
        version = getattr(holder, "version", None)
        if isinstance(version, str) and version:
            return version
    return ""


def setup_logging(args: argparse.Namespace, contract: Any | None) -> None:
    from ._logging import configure_logging

    pii = [n for n, c in contract.columns.items() if c.role.value == "pii"] if contract is not None else []
    ids = [n for n, c in contract.columns.items() if c.role.value == "id"] if contract is not None else []
    configure_logging(fmt=args.log_format, level=str(args.log_level).upper(), pii_fields=pii, id_fields=ids)
    if not ServingSettings().access_log:
        logging.getLogger("uvicorn.access").disabled = True
