"""What every Engage server's ``python -m`` entrypoint shares: flags, model files, logging, start-up.

The flags extend ``kserve.model_server.parser`` (``--http_port``, ``--grpc_port``, ``--workers`` … stay
KServe's), so the manifests pass the same flags to our images as to KServe's own servers; a test feeds
the rendered InferenceService's ``args`` to :func:`server_parser`.

A server whose model cannot be loaded or fails its SHA-256 check still starts, and stays not ready:
``/v2/health/ready``, ``/v2/models/<m>/ready`` and every inference route answer 503 with the reason,
and one ``ERROR`` log line says what is wrong. Kubernetes then never routes traffic to it, and the
reason is one ``kubectl logs`` away (KServe's own servers exit instead, which shows as a crash loop).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engage.errors import ArtifactError, EngageError

from ._http import FastRoute, HTTPLayer, Middleware, install_error_handlers
from ._settings import ServingSettings

__all__ = [
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
        status = "corrupt or changed model files" if isinstance(e, ArtifactError) else type(e).__name__
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

    version = model_version(model)
    # decided once: None (off) leaves the HTTP layer and the model without a single span call
    tracing = start_tracing(service_name(model), model=model.name, model_version=version or None)
    model.tracing = tracing
    layer = HTTPLayer(
        model.name, args.max_body_bytes, not_ready=not_ready, tracing=tracing, model_version=version
    )
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

    _Server(
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        workers=args.workers,
        enable_grpc=args.enable_grpc,
        enable_latency_logging=args.enable_latency_logging,
        access_log_format=args.access_log_format,
        event_loop=args.event_loop,
        timeout_keep_alive=args.timeout_keep_alive,
    ).start([model])


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
