"""The HTTP layer every Engage server puts in front of KServe's FastAPI app (a plain ASGI middleware).

It does three things before KServe sees a request:

* **Size limits.** A POST whose ``content-length`` exceeds the limit gets 413 before one byte of the body
  is read; a chunked body is read up to the limit and refused at the first byte over it. Accepted bodies
  are replayed to KServe unchanged.
* **Fast routes.** A server may answer some routes itself (the predictor's ``:predict`` and ``/infer``):
  the handler gets the body bytes and returns the answer bytes. KServe's REST data plane costs about
  0.5 ms a request on these machines (measured with a model that does nothing); a fast route costs
  about 0.1 ms, and speaks the same protocol on the same paths. Anything a fast route does not take
  (other content types, CloudEvents, gRPC) goes through KServe's data plane to the same model code.
  The predictor's are behind ``--fast_routes`` / ``ENGAGE_SERVING_FAST_ROUTES`` (on by default), and
  ``tests/integration/test_fast_routes.py`` holds them to KServe's routes: the same V1, V2 and error
  requests get the same statuses and bodies both ways. KServe's pydantic validation of a V2 body is
  answered by :func:`install_error_handlers` with the fast route's refusal, not pydantic's detail.
* **Errors and metrics.** An :class:`~engage.errors.EngageError` becomes its status with a JSON body
  ``{"error", "reason", "details"}``; anything else becomes a 500 with a log line (never a traceback to
  the caller). Every request is timed into ``engage_request_duration_seconds`` and every refusal
  counted in ``engage_request_rejected_total``.
* **Draining** (after SIGTERM, :class:`Drain`, started by ``engage_serving._server``): the readiness
  routes answer 503 ``shutting_down`` (liveness stays 200), every answer carries ``connection: close``
  so keep-alive connections end after an answer rather than being closed idle under a client about to
  send on them, and requests go on being answered until the listener closes (docs/reliability.md).
* **Traces** (when :mod:`engage.telemetry.tracing` is on, decided once at start-up): one server span a
  request, fast route or KServe's, continuing the caller's W3C ``traceparent``; attributes: method,
  route, status, model name and version, rows (set by the model), the rejection reason of a 4xx; status
  ERROR on a 5xx or an exception. Health, readiness and ``/metrics`` GETs are not traced. Off, not one
  span call is made (docs/tracing.md).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from engage.errors import EngageError, RequestRejected

from ._metrics import serving_metrics

if TYPE_CHECKING:
    from engage.telemetry.tracing import Tracing

__all__ = ["Drain", "FastRoute", "HTTPLayer", "error_body", "install_error_handlers"]

log = logging.getLogger("engage_serving")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: a fast route's handler: (body, headers) -> (status, JSON body bytes); raises EngageError to refuse
Handler = Callable[[bytes, Mapping[str, str]], tuple[int, bytes]]
_JSON = [(b"content-type", b"application/json")]
#: KServe's server readiness route: it says ready whatever its models; here it follows the model
READY_PATH = "/v2/health/ready"
#: GETs of these (and of the model's readiness routes) are probes and scrapes: not traced
UNTRACED_GETS = frozenset({"/", "/metrics", "/v2", "/v2/health/live", READY_PATH})
_MODEL_SEGMENT = re.compile(r"^/(v1|v2)/models/[^/:]+")


@dataclass(frozen=True)
class FastRoute:
    """A POST route a server answers itself, when the request is plain JSON."""

    path: str
    label: str  # the ``route`` label of the metrics
    handler: Handler
    method: str = "POST"
    #: take CloudEvents (``ce-*`` headers, or ``application/cloudevents+json``) too; else they go to KServe
    cloudevents: bool = False


def error_body(error: EngageError) -> bytes:
    if isinstance(error, RequestRejected):
        return orjson.dumps(error.to_json())
    return orjson.dumps({"error": error.message, "reason": type(error).__name__})


def _reason(error: EngageError) -> str:
    if isinstance(error, RequestRejected):
        return error.reason
    return "not_ready" if isinstance(error, _NotReady) else type(error).__name__


def _route_label(path: str) -> str:
    for suffix, label in ((":predict", "predict"), ("/infer", "infer"), (":explain", "explain")):
        if path.endswith(suffix):
            return label
    if path.endswith("/ready") or path.startswith("/v1/models/"):
        return "ready"
    if path.startswith(("/v1/", "/v2/")):
        return path.split("/")[1]
    return "other"


def http_route(path: str) -> str:
    """The path with the model's name as a template (``/v1/models/{model}:predict``): few values."""
    return _MODEL_SEGMENT.sub(r"/\1/models/{model}", path, count=1)


@dataclass
class Drain:
    """A graceful stop in progress, shared by the SIGTERM handler and the middleware."""

    #: monotonic time the drain began (SIGTERM); None while the server serves normally
    since: float | None = None
    #: monotonic time the last request (other than a probe or a scrape) arrived
    last_request: float = 0.0

    @property
    def draining(self) -> bool:
        return self.since is not None


@dataclass
class HTTPLayer:
    """Configuration of the middleware; ``app.add_middleware(Middleware, layer=...)`` installs it."""

    model_name: str
    max_body_bytes: int
    #: None when the model serves, else why not (the 503 answers say it)
    not_ready: Callable[[], str | None] = lambda: None
    fast_routes: dict[str, FastRoute] = field(default_factory=dict)
    #: spans of every request when tracing is on (None: off, decided at start-up)
    tracing: Tracing | None = None
    model_version: str = ""
    drain: Drain = field(default_factory=Drain)

    def ready_paths(self) -> tuple[str, ...]:
        """The readiness routes answered here while the model is not ready (503 with the reason, rather
        than KServe's traceback-logging ModelNotReady)."""
        return (READY_PATH, f"/v2/models/{self.model_name}/ready", f"/v1/models/{self.model_name}")

    def add(self, route: FastRoute) -> None:
        self.fast_routes[f"{route.method} {route.path}"] = route


class Middleware:
    """The ASGI middleware of :class:`HTTPLayer` (one instance per app)."""

    def __init__(self, app: ASGIApp, layer: HTTPLayer) -> None:
        self.app = app
        self.layer = layer
        self.metrics = serving_metrics()
        self.tracing = layer.tracing
        self.untraced = UNTRACED_GETS | set(layer.ready_paths())
        self.readiness = frozenset(layer.ready_paths())
        self.drain = layer.drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        probe = scope["method"] == "GET" and scope["path"] in self.untraced
        if not probe:
            self.drain.last_request = time.monotonic()
        if self.drain.since is not None:
            if probe and scope["path"] in self.readiness:
                await _answer(send, 503, _SHUTTING_DOWN, close=True)
                return
            send = _closing(send)
        if self.tracing is None or (scope["method"] == "GET" and scope["path"] in self.untraced):
            await self._handle(scope, receive, send)
            return
        await self._traced(self.tracing, scope, receive, send)

    async def _traced(self, tracing: Tracing, scope: Scope, receive: Receive, send: Send) -> None:
        """:meth:`_handle` inside a server span (the caller's trace continued) when the request's trace is
        to be exported: its trace id is within the success ratio, decided before anything is made, or it
        failed (a 5xx or an exception), when a span is made afterwards with the request's start time."""
        from engage.telemetry.tracing import unspanned_failure

        parent, trace_id, export = tracing.decide(scope["headers"])
        if export:
            await self._spanned(tracing, parent, trace_id, scope, receive, send)
            return
        started = time.time_ns()
        code = 0
        failure = unspanned_failure()
        token = failure.set(None)

        async def watch(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
            await send(message)

        error: BaseException | None = None
        try:
            await self._handle(scope, receive, watch)
        except BaseException as e:
            error, code = e, code or 500
            raise
        finally:
            if code >= 500:  # a failure is always exported: its span, late, with the request's times
                self._late_error_span(tracing, parent, trace_id, scope, started, code, error or failure.get())
            failure.reset(token)

    def _attributes(self, scope: Scope) -> tuple[str, dict[str, Any]]:
        from engage.telemetry.tracing import MODEL_NAME, MODEL_VERSION

        path: str = scope["path"]
        method: str = scope["method"]
        route = http_route(path)
        return f"{method} {route}", {
            "http.request.method": method,
            "http.route": route,
            "url.path": path,
            "engage.route": _route_label(path),
            MODEL_NAME: self.layer.model_name,
            MODEL_VERSION: self.layer.model_version,
        }

    def _late_error_span(
        self,
        tracing: Tracing,
        parent: Any,
        trace_id: int,
        scope: Scope,
        started: int,
        code: int,
        error: BaseException | None,
    ) -> None:
        from opentelemetry.trace import Status, StatusCode

        from engage.telemetry.tracing import record_failure

        name, attributes = self._attributes(scope)
        span = tracing.start_server_span(name, parent, trace_id, attributes, start_time=started)
        span.set_attribute("http.response.status_code", code)
        if error is not None:
            record_failure(span, error)
        else:
            span.set_attribute("error.type", str(code))
            span.set_status(Status(StatusCode.ERROR, f"HTTP {code}"))
        span.end()

    async def _spanned(
        self, tracing: Tracing, parent: Any, trace_id: int, scope: Scope, receive: Receive, send: Send
    ) -> None:
        from opentelemetry import context, trace
        from opentelemetry.trace import Status, StatusCode

        from engage.telemetry.tracing import record_failure

        name, attributes = self._attributes(scope)
        span = tracing.start_server_span(name, parent, trace_id, attributes)
        token = context.attach(trace.set_span_in_context(span))
        code = 0
        raised = False

        async def watch(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
            await send(message)

        try:
            await self._handle(scope, receive, watch)
        except BaseException as e:
            record_failure(span, e)
            raised, code = True, code or 500  # Starlette's outer middleware answers 500 to what reaches it
            raise
        finally:
            if code:
                span.set_attribute("http.response.status_code", code)
                if code >= 500 and not raised:
                    span.set_attribute("error.type", str(code))
                    span.set_status(Status(StatusCode.ERROR, f"HTTP {code}"))
            context.detach(token)
            span.end()

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        path: str = scope["path"]
        method: str = scope["method"]
        if path.startswith("/v2/repository/"):
            # loading or unloading models over HTTP would let any caller take the model out of service
            refusal = RequestRejected(
                "the model repository API is disabled on Engage servers: a new model version is deployed, "
                "not loaded over HTTP",
                status=403,
                reason="repository_disabled",
            )
            await self._refuse(refusal, "repository", send, started)
            return
        if path.startswith("/v2/models/") and (
            "/versions/" in path or b"model_version" in scope.get("query_string", b"")
        ):
            # KServe answers 501 (a 5xx) to any model version in a request: the caller's to fix, so 400
            refusal = RequestRejected(
                "this server serves one model version (see model_version in its answers and "
                f"/v2/models/{self.layer.model_name}): send requests without a version",
                status=400,
                reason="version_not_supported",
            )
            await self._refuse(refusal, _route_label(path), send, started)
            return
        if method not in ("POST", "PUT"):
            reason = self.layer.not_ready() if path in self.layer.ready_paths() else None
            get_route = self.layer.fast_routes.get(f"{method} {path}")
            if reason is not None:
                await _answer(send, 503, _not_ready_body(self.layer.model_name, reason))
            elif get_route is not None:
                await self._fast(get_route, b"", {}, send, started)
            else:
                await self.app(scope, receive, send)
            return
        label = _route_label(path)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            body = await self._read(headers, receive)
        except RequestRejected as e:
            await self._refuse(e, label, send, started)
            return
        route = self.layer.fast_routes.get(f"{method} {path}")
        if route is not None and _takes(route, headers):
            await self._fast(route, body, headers, send, started)
            return
        if label in ("predict", "infer", "explain"):
            problem = self._precheck(body, headers)
            if problem is not None:
                await self._refuse(problem, label, send, started)
                return
        status = {"code": 500}

        async def replay() -> Message:
            nonlocal body
            chunk, body = body, b""
            return {"type": "http.request", "body": chunk, "more_body": False}

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, replay, watch)
        finally:
            self._observe(label, status["code"], started)

    def _precheck(self, body: bytes, headers: Mapping[str, str]) -> EngageError | None:
        """What KServe's data plane would refuse with a logged traceback: a model that is not ready, a
        JSON body that does not parse. Answered here, with the reason."""
        reason = self.layer.not_ready()
        if reason is not None:
            return _NotReady(f"model {self.layer.model_name} is not ready: {reason}")
        if _media_type(headers) == "application/json" and not _binary_cloudevent(headers):
            try:
                orjson.loads(body)
            except orjson.JSONDecodeError as e:
                return RequestRejected(
                    f"the body is not valid JSON: {e}", status=400, reason="malformed_json"
                )
        return None

    async def _read(self, headers: Mapping[str, str], receive: Receive) -> bytes:
        limit = self.layer.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise RequestRejected("content-length is not a number", status=400, reason="bad_header")
            if int(declared) > limit:
                raise _too_large(int(declared), limit)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _too_large(size, limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _fast(
        self, route: FastRoute, body: bytes, headers: Mapping[str, str], send: Send, started: float
    ) -> None:
        reason = self.layer.not_ready()
        if reason is not None:
            await _answer(send, 503, _not_ready_body(self.layer.model_name, reason))
            self._observe(route.label, 503, started)
            return
        try:
            status, payload = route.handler(body, headers)
        except EngageError as e:
            await self._refuse(e, route.label, send, started)
            return
        except Exception as e:
            log.exception("unexpected error answering %s", route.path)
            if self.tracing is not None:
                self._record(e)
            await _answer(send, 500, orjson.dumps({"error": "internal error: see the server log"}))
            self._observe(route.label, 500, started)
            return
        await _answer(send, status, payload)
        self._observe(route.label, status, started)

    async def _refuse(self, error: EngageError, label: str, send: Send, started: float) -> None:
        status = error.http_status
        if status < 500:
            self.metrics.rejected.labels(self.layer.model_name, label, _reason(error)).inc()
        if self.tracing is not None:
            self._record(error)
        await _answer(send, status, error_body(error))
        self._observe(label, status, started)

    @staticmethod
    def _record(error: BaseException) -> None:
        """The request's server span learns why it failed (a 4xx's reason, or the exception); a request
        without a span keeps the exception for the error span made when it answers 5xx."""
        from engage.telemetry.tracing import record_request_failure

        record_request_failure(error)

    def _observe(self, label: str, code: int, started: float) -> None:
        elapsed = time.perf_counter() - started
        self.metrics.duration.labels(self.layer.model_name, label, str(code)).observe(elapsed)


_SHUTTING_DOWN = orjson.dumps({"error": "the server is shutting down", "reason": "shutting_down"})
_CLOSE = (b"connection", b"close")


def _closing(send: Send) -> Send:
    """``send`` with ``connection: close`` added to the answer's headers: the connection ends after it."""

    async def closing(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), _CLOSE]}
        await send(message)

    return closing


def _not_ready_body(model: str, reason: str) -> bytes:
    return orjson.dumps({"error": f"model {model} is not ready: {reason}", "reason": "not_ready"})


def _too_large(size: int, limit: int) -> RequestRejected:
    return RequestRejected(
        f"request body is {size} bytes, over this server's limit of {limit} bytes "
        "(ENGAGE_SERVING_MAX_BODY_BYTES): send fewer rows per request",
        status=413,
        reason="body_too_large",
    )


class _NotReady(EngageError):
    http_status = 503


def _media_type(headers: Mapping[str, str], default: str = "") -> str:
    return headers.get("content-type", default).split(";")[0].strip()


def _binary_cloudevent(headers: Mapping[str, str]) -> bool:
    return any(k.startswith("ce-") for k in headers)


def _takes(route: FastRoute, headers: Mapping[str, str]) -> bool:
    """JSON bodies only; CloudEvents only where the route says so (else KServe's data plane decodes them)."""
    kind = _media_type(headers, "application/json")
    if route.cloudevents:
        return kind in ("application/json", "application/cloudevents+json")
    return kind == "application/json" and not _binary_cloudevent(headers)


async def _answer(send: Send, status: int, payload: bytes, *, close: bool = False) -> None:
    headers = [*_JSON, (b"content-length", str(len(payload)).encode())]
    if close:
        headers.append(_CLOSE)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def install_error_handlers(app: Any, model_name: str, *, traced: bool = False) -> None:
    """Map Engage's errors raised inside KServe's data plane (``:explain``, v2 ``/infer`` of other
    content types, CloudEvents) to their status, as the fast routes do; ``traced``: the request's
    server span records them too."""
    from fastapi.responses import Response

    metrics = serving_metrics()

    async def engage_error(request: Any, error: Exception) -> Response:
        assert isinstance(error, EngageError)
        if traced:
            Middleware._record(error)
        if error.http_status < 500:
            route = _route_label(request.url.path)
            metrics.rejected.labels(model_name, route, _reason(error)).inc()
        else:
            log.error("%s: %s", request.url.path, error.message)
        return Response(error_body(error), status_code=error.http_status, media_type="application/json")

    async def invalid_request(request: Any, error: Exception) -> Response:
        # KServe's FastAPI routes validate a V2 body with pydantic (422 and pydantic's own detail); the
        # fast route checks the same things: answer what it answers, so the two paths cannot differ
        from .protocol import v2

        path = request.url.path
        body = getattr(error, "body", None)
        refusal = v2.refusal_of(body) if path.endswith("/infer") else None
        if refusal is None:
            problems = "; ".join(
                f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg', '')}"
                for e in getattr(error, "errors", list)()
            )
            refusal = RequestRejected(
                f"the body does not follow the protocol: {problems}", status=400, reason="malformed_request"
            )
        return await engage_error(request, refusal)

    async def unknown_model(request: Any, error: Exception) -> Response:
        # KServe logs these with a traceback: any caller could flood the log with a wrong model name
        return await engage_error(request, RequestRejected(str(error), status=404, reason="unknown_model"))

    async def invalid_input(request: Any, error: Exception) -> Response:
        return await engage_error(
            request, RequestRejected(str(error), status=400, reason="malformed_request")
        )

    from fastapi.exceptions import RequestValidationError
    from kserve.errors import InvalidInput, ModelNotFound

    app.add_exception_handler(EngageError, engage_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(ModelNotFound, unknown_model)
    app.add_exception_handler(InvalidInput, invalid_input)
