"""OpenTelemetry tracing of Engage's servers and pipeline steps (``ENGAGE_TRACING_*``).

Off unless someone collects: tracing starts when an OTLP endpoint is configured (the standard
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT``, or
``ENGAGE_TRACING_ENDPOINT``) or ``ENGAGE_TRACING_ENABLED=true``; ``OTEL_SDK_DISABLED=true`` or
``ENGAGE_TRACING_ENABLED=false`` keep it off. Off, :func:`start_tracing` returns None without importing
the SDK, and the code that would make spans checks for None once, at start-up.

On, spans are recorded for every request and exported over OTLP (http/protobuf) by a
``BatchSpanProcessor`` (bounded queue, its own thread: a request never waits for the collector, and a
dead collector costs dropped spans, no latency), behind the sampling decision of
:class:`~engage.telemetry._sampling.ErrorsAndShareProcessor`: 100 % of the traces that hold an error, a
``success_sample_ratio`` share (default 10 %) of the others, by trace id. See docs/tracing.md.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer

    from ._sampling import ErrorsAndShareProcessor

__all__ = [
    "PIPELINE",
    "SERVICES",
    "Phases",
    "Tracing",
    "TracingSettings",
    "child_span",
    "process_tracing",
    "record_request_failure",
    "set_process_tracing",
    "start_tracing",
    "unspanned_failure",
    "within_ratio",
]

log = logging.getLogger("engage.tracing")

#: the service name of each kind of Engage process (``service.name`` of its spans)
SERVICES = {
    "predictor": "engage-predictor",
    "explainer": "engage-explainer",
    "drift_detector": "engage-drift-detector",
    "pipeline": "engage-pipeline",
}
PIPELINE = SERVICES["pipeline"]
#: span attributes Engage sets beside OpenTelemetry's HTTP conventions
MODEL_NAME = "engage.model.name"
MODEL_VERSION = "engage.model.version"
ROWS = "engage.request.rows"
REJECTION = "engage.rejection.reason"


#: the trace id the next root span of this context takes (0: a random one); see :meth:`Tracing.decide`
_NEXT_TRACE_ID: ContextVar[int] = ContextVar("engage_next_trace_id", default=0)
#: a request's failure recorded while it has no span (its trace was not to be exported, so no span was
#: made): the late server span made for the failure records it
_UNSPANNED_FAILURE: ContextVar[BaseException | None] = ContextVar("engage_unspanned_failure", default=None)


class TracingSettings(BaseSettings):
    """Whether and how a process exports its spans (``ENGAGE_TRACING_*``)."""

    model_config = SettingsConfigDict(env_prefix="ENGAGE_TRACING_", extra="forbid", frozen=True)

    enabled: bool | None = Field(
        default=None,
        description="Export spans; unset: on when an OTLP endpoint is configured (ENGAGE_TRACING_ENDPOINT, "
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT), else off",
    )
    endpoint: str = Field(
        default="",
        description="OTLP/HTTP collector, e.g. http://adot-collector:4318 (/v1/traces is added); empty: "
        "the OTEL_EXPORTER_OTLP_* variables, else http://localhost:4318",
    )
    success_sample_ratio: float = Field(
        default=0.10,
        ge=0.0,
        le=1.0,
        description="Share of successful traces exported, by trace id (errors: all of them)",
    )
    service_name: str = Field(
        default="", description="service.name; empty: engage-<server> or engage-pipeline"
    )
    max_queue_size: int = Field(
        default=2048, ge=1, description="Spans waiting for export; beyond, new spans are dropped"
    )
    flush_timeout_seconds: float = Field(
        default=5.0, gt=0, description="A pipeline step waits at most this long for its spans to leave"
    )

    def traces_endpoint(self) -> str | None:
        """The OTLP/HTTP traces URL configured, or None."""
        if self.endpoint:
            return _traces_url(self.endpoint)
        signal = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
        if signal:
            return signal
        base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
        return _traces_url(base) if base else None

    def active(self) -> bool:
        """On when enabled, or (unset) when an endpoint is configured; never with ``OTEL_SDK_DISABLED``."""
        if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return False
        if self.enabled is None:
            return self.traces_endpoint() is not None
        return self.enabled


def _traces_url(base: str) -> str:
    base = base.strip().rstrip("/")
    return base if base.endswith("/v1/traces") else f"{base}/v1/traces"


def within_ratio(trace_id: int, ratio: float) -> bool:
    """Whether a successful trace is exported at ``ratio``: ``TraceIdRatioBased``'s rule (the trace
    id's lower 64 bits below ``ratio * 2**64``), the same in every process."""
    from ._sampling import within_ratio as rule

    return rule(trace_id, ratio)


@dataclass
class Tracing:
    """One process's tracing: its provider, tracer and sampling processor."""

    service: str
    provider: TracerProvider
    tracer: Tracer
    sampling: ErrorsAndShareProcessor
    settings: TracingSettings
    attributes: dict[str, Any] = field(default_factory=dict)

    def child(self, name: str, attributes: Mapping[str, Any] | None = None) -> _Child:
        """A span under the current one, current while the ``with`` block runs (see :func:`child_span`)."""
        return _Child(self.tracer, name, attributes)

    def root(self, name: str, attributes: Mapping[str, Any] | None = None) -> _Child:
        """A span that starts a trace of its own (a background task, a pipeline step)."""
        return _Child(self.tracer, name, attributes, root=True)

    @staticmethod
    def annotate(attributes: Mapping[str, Any]) -> None:
        """Set attributes on the current span (the request's server span, outside any child)."""
        from opentelemetry import trace

        trace.get_current_span().set_attributes(attributes)

    @staticmethod
    def extract(headers: Mapping[str, str]) -> Any:
        """The context a caller sent (W3C ``traceparent`` / ``tracestate``, or what OTEL_PROPAGATORS says)."""
        from opentelemetry import propagate

        return propagate.extract(headers)

    @staticmethod
    def inject() -> dict[str, str]:
        """The headers that continue the current trace in another service (``traceparent`` …)."""
        from opentelemetry import propagate

        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        return carrier

    def decide(self, raw_headers: list[tuple[bytes, bytes]]) -> tuple[Any, int, bool]:
        """``(caller's context or None, trace id, export it)`` of a request, before any span is made.

        The trace id is the caller's (a W3C ``traceparent``), else a fresh random one that the request's
        span will take; a trace is exported when its id falls within the success ratio or (decided
        later) it fails. Requests that will not be exported make no span at all: for nine requests in
        ten that is the whole cost of tracing, a random number and a header scan."""
        import random

        parent = None
        trace_id = 0
        if any(name == b"traceparent" for name, _ in raw_headers):
            from opentelemetry import trace

            parent = self.extract({k.decode("latin-1"): v.decode("latin-1") for k, v in raw_headers})
            caller = trace.get_current_span(parent).get_span_context()
            trace_id = caller.trace_id if caller.is_valid else 0
        if not trace_id:
            trace_id = random.getrandbits(128) or 1  # nosec B311 # a trace id for sampling, not a secret
        return parent, trace_id, within_ratio(trace_id, self.settings.success_sample_ratio)

    def start_server_span(
        self,
        name: str,
        parent: Any,
        trace_id: int,
        attributes: Mapping[str, Any],
        *,
        start_time: int | None = None,
    ) -> Span:
        """The request's server span, under the caller's context or as the root of ``trace_id``."""
        from opentelemetry.trace import SpanKind

        token = _NEXT_TRACE_ID.set(trace_id)
        try:
            return self.tracer.start_span(
                name, context=parent, kind=SpanKind.SERVER, attributes=attributes, start_time=start_time
            )
        finally:
            _NEXT_TRACE_ID.reset(token)

    def flush(self, timeout_seconds: float | None = None) -> bool:
        """Export what is waiting, for at most ``timeout_seconds`` (default: the settings')."""
        seconds = self.settings.flush_timeout_seconds if timeout_seconds is None else timeout_seconds
        return bool(self.provider.force_flush(int(seconds * 1000)))

    def shutdown(self) -> None:
        self.provider.shutdown()


class _Child:
    """A span made current for a ``with`` block. An :class:`~engage.errors.EngageError` under 500 (a
    refused request) passes through it as it is; any other exception is recorded and sets ERROR."""

    __slots__ = ("attributes", "name", "root", "span", "token", "tracer")

    def __init__(
        self, tracer: Tracer, name: str, attributes: Mapping[str, Any] | None, *, root: bool = False
    ) -> None:
        self.tracer, self.name, self.attributes, self.root = tracer, name, attributes, root
        self.span: Span | None = None
        self.token: object = None

    def __enter__(self) -> Span:
        from opentelemetry import context, trace

        parent = context.Context() if self.root else None
        if not self.root and not trace.get_current_span().is_recording():
            # the request's trace is not exported, so it has no span: no orphan child either
            self.span = trace.INVALID_SPAN
        else:
            self.span = self.tracer.start_span(self.name, context=parent, attributes=self.attributes)
        self.token = context.attach(trace.set_span_in_context(self.span))
        return self.span

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: Any) -> None:
        from opentelemetry import context

        span = self.span
        assert span is not None
        if error is not None:
            if span.is_recording():
                record_failure(span, error)
            else:
                _UNSPANNED_FAILURE.set(error)
        context.detach(self.token)  # type: ignore[arg-type]
        span.end()


class Phases:
    """Consecutive phases of one request (the predictor's decode, predict, encode), timed for about a
    tenth of a microsecond each and made into child spans of the current span only when its trace will
    be exported: the request failed, or its trace id is within the success ratio. A child span costs
    some 25 µs to make; on a request of a few milliseconds, made for nine traces in ten that are
    dropped, that was the larger part of tracing's cost (docs/tracing.md).

    ``with phases.phase("decode"):`` … then ``phases.finish()`` (inside the server span)."""

    __slots__ = ("_attributes", "_name", "_start", "error", "marks", "tracing")

    def __init__(self, tracing: Tracing) -> None:
        self.tracing = tracing
        self.marks: list[tuple[str, int, int, Mapping[str, Any] | None]] = []
        self.error: tuple[str, int, BaseException] | None = None
        self._name = ""
        self._start = 0
        self._attributes: Mapping[str, Any] | None = None

    def phase(self, name: str, attributes: Mapping[str, Any] | None = None) -> Phases:
        self._name, self._attributes = name, attributes
        return self

    def __enter__(self) -> Phases:
        self._start = time.time_ns()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: Any) -> None:
        if error is not None:
            self.error = (self._name, self._start, error)
        else:
            self.marks.append((self._name, self._start, time.time_ns(), self._attributes))

    def finish(self) -> None:
        """Make the phases child spans of the current span, when its trace is to be exported."""
        from opentelemetry import trace

        from engage.errors import EngageError

        span = trace.get_current_span()
        if not span.is_recording():  # an unexported request: its failure is on its late error span
            if self.error is not None:
                _UNSPANNED_FAILURE.set(self.error[2])
            return
        error = self.error
        failed = error is not None and not (
            isinstance(error[2], EngageError) and getattr(error[2], "http_status", 500) < 500
        )
        if not failed and not within_ratio(
            span.get_span_context().trace_id, self.tracing.settings.success_sample_ratio
        ):
            return
        parent = trace.set_span_in_context(span)
        tracer = self.tracing.tracer
        for name, start, end, attributes in self.marks:
            tracer.start_span(name, context=parent, start_time=start, attributes=attributes).end(end)
        if error is not None:
            child = tracer.start_span(error[0], context=parent, start_time=error[1])
            record_failure(child, error[2])
            child.end()


def record_failure(span: Span, error: BaseException, *, refusals: bool = True) -> None:
    """An exception on ``span``: a refusal (with ``refusals``, an EngageError under 500: the caller's
    mistake) names its reason; anything else is recorded, and sets status ERROR."""
    from opentelemetry.trace import Status, StatusCode

    from engage.errors import EngageError

    status = getattr(error, "http_status", 500) if isinstance(error, EngageError) else 500
    if refusals and status < 500:
        reason = getattr(error, "reason", None) or type(error).__name__
        span.set_attribute(REJECTION, str(reason))
        return
    span.record_exception(error)
    span.set_attribute("error.type", type(error).__qualname__)
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"[:500]))


def unspanned_failure() -> ContextVar[BaseException | None]:
    """Where a request without a span keeps the exception its late error span will record."""
    return _UNSPANNED_FAILURE


def record_request_failure(error: BaseException) -> None:
    """The current request's failure: on its span, or (a request with no span: its trace is not to be
    exported unless it fails) kept for the error span the server layer makes when it answers 5xx."""
    from opentelemetry import trace

    span = trace.get_current_span()
    if span.is_recording():
        record_failure(span, error)
    else:
        _UNSPANNED_FAILURE.set(error)


_NO_SPAN: contextlib.nullcontext[None] = contextlib.nullcontext()


def child_span(
    tracing: Tracing | None, name: str, attributes: Mapping[str, Any] | None = None
) -> contextlib.AbstractContextManager[Any]:
    """``with child_span(self.tracing, "predict"):`` a child span when tracing is on, nothing when off."""
    return _NO_SPAN if tracing is None else tracing.child(name, attributes)


def start_tracing(
    service: str,
    *,
    model: str | None = None,
    model_version: str | None = None,
    settings: TracingSettings | None = None,
    exporter: SpanExporter | None = None,
) -> Tracing | None:
    """This process's tracing, or None when it is off (then nothing of the SDK is imported).

    ``exporter`` replaces the OTLP exporter (tests pass the SDK's in-memory one) and turns tracing on
    whatever the settings say. The provider is not made the global one: Engage's code uses the tracer
    returned here, so tests may start several."""
    settings = settings or TracingSettings()
    if exporter is None and not settings.active():
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON

    from engage import __version__

    from ._sampling import ErrorsAndShareProcessor

    attributes: dict[str, Any] = {
        "service.name": settings.service_name or service,
        "service.version": __version__,
        "service.namespace": "engage",
    }
    if model:
        attributes[MODEL_NAME] = model
    if model_version:
        attributes[MODEL_VERSION] = model_version
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=settings.traces_endpoint())
        _quiet_export_warnings()
    # ALWAYS_ON: every span is recorded (a caller's sampled flag included), the processor decides;
    # the provider shuts down at exit (shutdown_on_exit), so what is queued leaves before the process ends
    provider = TracerProvider(
        sampler=ALWAYS_ON, resource=Resource.create(attributes), id_generator=_chosen_ids()
    )
    batch = BatchSpanProcessor(exporter, max_queue_size=settings.max_queue_size)
    sampling = ErrorsAndShareProcessor(batch, settings.success_sample_ratio)
    provider.add_span_processor(sampling)
    tracer = provider.get_tracer("engage", __version__)
    tracing = Tracing(attributes["service.name"], provider, tracer, sampling, settings, attributes)
    log.info(
        "tracing on: %s to %s, %.0f %% of successful traces and every error",
        tracing.service,
        settings.traces_endpoint() or "the exporter given",
        100 * settings.success_sample_ratio,
    )
    return tracing


def _chosen_ids_class() -> type:
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class ChosenIds(RandomIdGenerator):
        """Random ids, but a root span takes the trace id :meth:`Tracing.decide` chose for it."""

        def generate_trace_id(self) -> int:
            return _NEXT_TRACE_ID.get() or super().generate_trace_id()

    return ChosenIds


def _chosen_ids() -> Any:
    """The id generator (its class is made on first use: the SDK is imported only when tracing is on)."""
    return _chosen_ids_class()()


_PROCESS: dict[str, Tracing | None] = {}
_PROCESS_LOCK = threading.Lock()


def process_tracing(service: str) -> Tracing | None:
    """The process-wide tracing of ``service`` (started on the first call, from the environment)."""
    with _PROCESS_LOCK:
        if service not in _PROCESS:
            _PROCESS[service] = start_tracing(service)
        return _PROCESS[service]


def set_process_tracing(service: str, tracing: Tracing | None) -> None:
    """Use ``tracing`` as the process-wide tracing of ``service`` (tests); None: tracing off."""
    with _PROCESS_LOCK:
        _PROCESS[service] = tracing


class _OncePerMinute(logging.Filter):
    """Let one record of each message through a minute: a dead collector would log every dropped span."""

    def __init__(self) -> None:
        super().__init__()
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        key = str(record.msg)
        if now - self._last.get(key, -3600.0) < 60.0:
            return False
        self._last[key] = now
        return True


def _quiet_export_warnings() -> None:
    once = _OncePerMinute()
    for name in (
        "opentelemetry.sdk._shared_internal",  # "Queue full, dropping spans."
        "opentelemetry.exporter.otlp.proto.http.trace_exporter",  # failed exports and retries
        "opentelemetry.exporter.otlp.common.http",
    ):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _OncePerMinute) for f in logger.filters):
            logger.addFilter(once)
