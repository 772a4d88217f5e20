"""Tracing (engage.telemetry.tracing): when it is on, the export decision (every error, a share of
successes by trace id), the HTTP layer's server spans and a pipeline step's span, read back from the
SDK's in-memory exporter."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from engage.errors import RequestRejected
from engage.telemetry.tracing import (
    PIPELINE,
    Tracing,
    TracingSettings,
    set_process_tracing,
    start_tracing,
    within_ratio,
)

ENDPOINT_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_SDK_DISABLED",
    "ENGAGE_TRACING_ENABLED",
    "ENGAGE_TRACING_ENDPOINT",
    "ENGAGE_TRACING_SUCCESS_SAMPLE_RATIO",
)
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENDPOINT_VARIABLES:
        monkeypatch.delenv(name, raising=False)


Traced = tuple[Tracing, InMemorySpanExporter]


@pytest.fixture
def traced() -> Iterator[Callable[..., Traced]]:
    """Tracing of a service into an in-memory exporter, at a given success ratio; shut down after."""
    made: list[Tracing] = []

    def make(ratio: float = 1.0, service: str = "engage-predictor") -> Traced:
        exporter = InMemorySpanExporter()
        tracing = start_tracing(
            service,
            model="engage",
            model_version="sha256:abc",
            settings=TracingSettings(success_sample_ratio=ratio),
            exporter=exporter,
        )
        assert tracing is not None
        made.append(tracing)
        return tracing, exporter

    yield make
    for tracing in made:
        tracing.shutdown()


def exported(tracing: Tracing, exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    assert tracing.flush(5)
    return list(exporter.get_finished_spans())


# ---- settings -------------------------------------------------------------------------------------------


def test_off_unless_an_endpoint_is_configured_or_it_is_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not TracingSettings().active()
    assert start_tracing("engage-predictor") is None
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")
    assert TracingSettings().active()
    assert TracingSettings().traces_endpoint() == "http://collector:4318/v1/traces"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://other:4318/custom/traces")
    assert TracingSettings().traces_endpoint() == "http://other:4318/custom/traces"  # the signal's, as is
    monkeypatch.setenv("ENGAGE_TRACING_ENDPOINT", "http://adot:4318")
    assert TracingSettings().traces_endpoint() == "http://adot:4318/v1/traces"
    monkeypatch.setenv("ENGAGE_TRACING_ENABLED", "false")
    assert not TracingSettings().active()
    monkeypatch.delenv("ENGAGE_TRACING_ENABLED")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert not TracingSettings().active()


def test_enabled_without_an_endpoint_uses_the_otlp_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENGAGE_TRACING_ENABLED", "true")
    settings = TracingSettings()
    assert settings.active()
    assert settings.traces_endpoint() is None  # the exporter's own default: http://localhost:4318
    assert settings.success_sample_ratio == pytest.approx(0.10)


def test_the_ratio_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    monkeypatch.setenv("ENGAGE_TRACING_SUCCESS_SAMPLE_RATIO", "1.5")
    with pytest.raises(ValidationError):
        TracingSettings()


def test_off_imports_nothing_of_the_sdk() -> None:
    code = (
        "import sys; from engage.telemetry.tracing import start_tracing; "
        "assert start_tracing('engage-predictor') is None; "
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k not in ENDPOINT_VARIABLES}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert json.loads(done.stdout.replace("'", '"')) == []


# ---- the decision ---------------------------------------------------------------------------------------


def test_the_ratio_rule_is_opentelemetrys_trace_id_ratio() -> None:
    from opentelemetry.sdk.trace.sampling import Decision, TraceIdRatioBased

    rng = random.Random(7)
    ids = [rng.getrandbits(128) for _ in range(20_000)]
    for ratio in (0.0, 0.1, 0.5, 1.0):
        sampler = TraceIdRatioBased(ratio)
        ours = [within_ratio(t, ratio) for t in ids]
        theirs = [sampler.should_sample(None, t, "x").decision is Decision.RECORD_AND_SAMPLE for t in ids]
        assert ours == theirs
    kept = sum(within_ratio(t, 0.1) for t in ids) / len(ids)
    assert 0.09 < kept < 0.11
    assert not any(within_ratio(t, 0.0) for t in ids)
    assert all(within_ratio(t, 1.0) for t in ids)


def test_successes_follow_the_ratio_and_a_trace_is_kept_or_dropped_whole(
    traced: Callable[..., Traced],
) -> None:
    tracing, exporter = traced(0.1)
    expected: set[int] = set()
    for _ in range(400):
        with tracing.root("request") as root:
            with tracing.child("decode"):
                pass
            with tracing.child("predict"):
                pass
        trace_id = root.get_span_context().trace_id
        if within_ratio(trace_id, 0.1):
            expected.add(trace_id)
    spans = exported(tracing, exporter)
    assert {s.context.trace_id for s in spans} == expected
    assert 10 < len(expected) < 80  # about 40 of 400
    for trace_id in expected:  # whole: the root and both children
        assert sorted(s.name for s in spans if s.context.trace_id == trace_id) == [
            "decode",
            "predict",
            "request",
        ]


@pytest.mark.parametrize("ratio", [0.0, 1.0])
def test_every_error_is_exported_whatever_the_ratio(traced: Callable[..., Traced], ratio: float) -> None:
    tracing, exporter = traced(ratio)
    failed: list[int] = []
    succeeded: list[int] = []
    for i in range(20):
        try:
            with tracing.root("request") as root:
                with tracing.child("decode"):
                    pass
                if i % 2:
                    with tracing.child("predict"):
                        raise RuntimeError("the model broke")
        except RuntimeError:
            failed.append(root.get_span_context().trace_id)
        else:
            succeeded.append(root.get_span_context().trace_id)
    spans = exported(tracing, exporter)
    traces = {s.context.trace_id for s in spans}
    assert set(failed) <= traces
    assert traces & set(succeeded) == (set(succeeded) if ratio == 1.0 else set())
    broken = [s for s in spans if s.name == "predict"]
    assert len(broken) == 10
    for span in broken:
        assert span.status.status_code is StatusCode.ERROR
        assert span.events[0].name == "exception"
        assert span.attributes is not None
        assert span.attributes["error.type"] == "RuntimeError"
    # the root that carried the exception out is an error too, and its sibling was kept with it
    assert sum(1 for s in spans if s.name == "decode" and s.context.trace_id in failed) == 10


def test_an_http_5xx_is_an_error_a_4xx_a_refusal(traced: Callable[..., Traced]) -> None:
    tracing, exporter = traced(0.0)
    with tracing.root("GET 503") as server:
        server.set_attribute("http.response.status_code", 503)
    with tracing.root("POST 422"), pytest.raises(RequestRejected), tracing.child("decode"):
        raise RequestRejected("row 0: tenure is not a number", status=422, reason="schema")
    spans = exported(tracing, exporter)
    assert [s.name for s in spans] == ["GET 503"]  # the refusal was a success at ratio 0


def test_a_refusal_names_its_reason_without_an_error(traced: Callable[..., Traced]) -> None:
    tracing, exporter = traced(1.0)
    with tracing.root("POST"), pytest.raises(RequestRejected), tracing.child("decode"):
        raise RequestRejected("too big", status=413, reason="body_too_large")
    decode = next(s for s in exported(tracing, exporter) if s.name == "decode")
    assert decode.status.status_code is not StatusCode.ERROR
    assert decode.attributes is not None
    assert decode.attributes["engage.rejection.reason"] == "body_too_large"
    assert not decode.events


def test_a_child_that_ends_after_its_root_follows_the_roots_decision(traced: Callable[..., Traced]) -> None:
    from opentelemetry import trace

    tracing, exporter = traced(1.0)
    root = tracing.tracer.start_span("request")
    late = tracing.tracer.start_span("late", context=trace.set_span_in_context(root))
    root.end()
    late.end()
    assert sorted(s.name for s in exported(tracing, exporter)) == ["late", "request"]


def test_children_waiting_for_a_root_are_bounded() -> None:
    from opentelemetry import trace

    from engage.telemetry._sampling import ErrorsAndShareProcessor

    exporter = InMemorySpanExporter()
    tracing = start_tracing("x", settings=TracingSettings(success_sample_ratio=1.0), exporter=exporter)
    assert tracing is not None
    tracing.sampling.max_pending = 5
    assert isinstance(tracing.sampling, ErrorsAndShareProcessor)
    roots = [tracing.tracer.start_span(f"root {i}") for i in range(8)]
    for root in roots:  # one child each ends; the roots never do (a leak)
        tracing.tracer.start_span("child", context=trace.set_span_in_context(root)).end()
    assert tracing.sampling.evicted == 3
    tracing.shutdown()


def test_a_remote_parent_is_continued_and_its_sampled_flag_not_obeyed(traced: Callable[..., Traced]) -> None:
    tracing, exporter = traced(1.0)
    parent = tracing.extract({"traceparent": f"00-{TRACE}-00f067aa0ba902b7-00"})  # caller: not sampled
    span = tracing.tracer.start_span("POST", context=parent, kind=SpanKind.SERVER)
    span.end()
    (got,) = exported(tracing, exporter)
    assert f"{got.context.trace_id:032x}" == TRACE
    assert got.parent is not None
    assert got.parent.span_id == 0x00F067AA0BA902B7
    assert got.parent.is_remote
    assert got.resource.attributes["service.name"] == "engage-predictor"
    assert got.resource.attributes["engage.model.version"] == "sha256:abc"
    import engage

    assert got.resource.attributes["service.version"] == engage.__version__


# ---- the HTTP layer -------------------------------------------------------------------------------------


def call(app: Any, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> int:
    """One ASGI request; the answer's status."""
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": b"",
        "headers": [(k.encode(), v.encode()) for k, v in (headers or {}).items()],
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return int(next(m["status"] for m in sent if m["type"] == "http.response.start"))


def layered(tracing: Tracing | None) -> Any:
    from engage_serving._http import FastRoute, HTTPLayer, Middleware

    def predict(body: bytes, headers: Any) -> tuple[int, bytes]:
        if body == b"boom":
            raise ZeroDivisionError("a bug")
        if body == b"bad":
            raise RequestRejected("row 0: bad", status=422, reason="schema")
        if tracing is not None:
            tracing.annotate({"engage.request.rows": 1})  # the server span (the current one)
            with tracing.child("predict"):
                pass
        return 200, b"{}"

    async def kserve(scope: Any, receive: Any, send: Any) -> None:  # what passes through: KServe
        status = 503 if scope["path"].endswith(":explain") else 200
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    layer = HTTPLayer("engage", 10_000, tracing=tracing, model_version="sha256:abc")
    layer.add(FastRoute("/v1/models/engage:predict", "predict", predict))
    return Middleware(kserve, layer)


def test_the_http_layer_makes_one_server_span_a_request(traced: Callable[..., Traced]) -> None:
    tracing, exporter = traced(1.0)
    app = layered(tracing)
    caller = {"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01", "content-type": "application/json"}
    assert call(app, "POST", "/v1/models/engage:predict", b"{}", caller) == 200
    assert call(app, "POST", "/v1/models/engage:predict", b"bad") == 422
    assert call(app, "POST", "/v1/models/engage:predict", b"boom") == 500
    assert call(app, "POST", "/v1/models/engage:explain", b"{}") == 503  # passed through to KServe
    assert call(app, "GET", "/v2/health/ready") == 200  # a probe: not traced
    assert call(app, "GET", "/metrics") == 200
    spans = exported(tracing, exporter)
    servers = [s for s in spans if s.kind is SpanKind.SERVER]
    assert [s.name for s in servers] == [
        "POST /v1/models/{model}:predict",
        "POST /v1/models/{model}:predict",
        "POST /v1/models/{model}:predict",
        "POST /v1/models/{model}:explain",
    ]
    ok, refused, bug, passed = (dict(s.attributes or {}) for s in servers)
    assert f"{servers[0].context.trace_id:032x}" == TRACE  # the caller's trace continued
    assert ok["http.response.status_code"] == 200
    assert ok["http.request.method"] == "POST"
    assert ok["http.route"] == "/v1/models/{model}:predict"
    assert ok["engage.model.name"] == "engage"
    assert ok["engage.model.version"] == "sha256:abc"
    assert ok["engage.request.rows"] == 1
    (child,) = (s for s in spans if s.name == "predict")
    assert child.parent is not None
    assert child.parent.span_id == servers[0].context.span_id
    assert refused["http.response.status_code"] == 422
    assert refused["engage.rejection.reason"] == "schema"
    assert servers[1].status.status_code is not StatusCode.ERROR
    assert bug["http.response.status_code"] == 500
    assert servers[2].status.status_code is StatusCode.ERROR
    assert servers[2].events[0].attributes is not None
    assert servers[2].events[0].attributes["exception.type"] == "ZeroDivisionError"
    assert passed["http.response.status_code"] == 503
    assert servers[3].status.status_code is StatusCode.ERROR


def test_the_http_layer_without_tracing_answers_the_same() -> None:
    app = layered(None)
    assert call(app, "POST", "/v1/models/engage:predict", b"{}") == 200
    assert call(app, "POST", "/v1/models/engage:predict", b"bad") == 422
    assert call(app, "POST", "/v1/models/engage:predict", b"boom") == 500


def test_routes_are_templated() -> None:
    from engage_serving._http import http_route

    assert http_route("/v1/models/churn-v2:predict") == "/v1/models/{model}:predict"
    assert http_route("/v2/models/engage/infer") == "/v2/models/{model}/infer"
    assert http_route("/events") == "/events"


# ---- pipeline steps -------------------------------------------------------------------------------------


@pytest.fixture
def pipeline_tracing(traced: Callable[..., Traced]) -> Iterator[Callable[[float], Traced]]:
    def use(ratio: float) -> Traced:
        pair = traced(ratio, PIPELINE)
        set_process_tracing(PIPELINE, pair[0])
        return pair

    yield use
    set_process_tracing(PIPELINE, None)


def test_a_pipeline_step_is_one_span_with_its_run_and_status(
    pipeline_tracing: Callable[[float], Traced], tmp_path: Path
) -> None:
    from engage_components import timed

    _tracing, exporter = pipeline_tracing(1.0)
    record_path = tmp_path / "engage-pipeline-20260301" / "features" / "step"
    with timed("features", str(record_path)) as record:
        record["rows"] = 10
    (span,) = exporter.get_finished_spans()  # flushed by timed itself: each task is its own process
    assert span.name == "features"
    assert span.resource.attributes["service.name"] == "engage-pipeline"
    assert span.attributes is not None
    assert span.attributes["engage.run.id"] == "engage-pipeline-20260301"
    assert span.attributes["engage.step.status"] == "succeeded"
    assert span.parent is None
    assert json.loads(record_path.read_text())["status"] == "succeeded"


def test_a_failed_step_is_exported_at_ratio_zero(
    pipeline_tracing: Callable[[float], Traced], tmp_path: Path
) -> None:
    from engage.errors import SchemaError
    from engage_components import timed

    _tracing, exporter = pipeline_tracing(0.0)
    with timed("load-data", str(tmp_path / "run" / "load-data" / "step")):
        pass
    with (
        pytest.raises(SchemaError),
        timed("validate", str(tmp_path / "run" / "validate" / "step")),
    ):
        raise SchemaError("the table lacks tenure_months")  # an EngageError under 500: still an error here
    (span,) = exporter.get_finished_spans()
    assert span.name == "validate"
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["engage.step.status"] == "failed"
    assert span.events[0].name == "exception"


# ---- phases: child spans made only for traces that are exported --------------------------------------


def run_phases(tracing: Tracing, fail: BaseException | None = None) -> int:
    """A server span with decode / predict / encode phases (``fail`` raised in predict); its trace id."""
    from engage.telemetry.tracing import Phases

    with tracing.root("POST") as server:
        phases = Phases(tracing)
        try:
            with phases.phase("decode"):
                pass
            with phases.phase("predict", {"engage.request.rows": 1}):
                if fail is not None:
                    raise fail
            with phases.phase("encode"):
                pass
        except (RuntimeError, RequestRejected):
            pass
        finally:
            phases.finish()
    return int(server.get_span_context().trace_id)


def test_phases_become_children_only_of_exported_traces(traced: Callable[..., Traced]) -> None:
    tracing, exporter = traced(0.1)
    kept = dropped = 0
    for _ in range(200):
        trace_id = run_phases(tracing)
        kept, dropped = (kept + 1, dropped) if within_ratio(trace_id, 0.1) else (kept, dropped + 1)
    spans = exported(tracing, exporter)
    assert kept > 0
    assert dropped > 0
    assert sorted(s.name for s in spans) == sorted(["POST", "decode", "encode", "predict"] * kept)
    for span in spans:
        if span.name != "POST":
            parent = next(
                p for p in spans if p.name == "POST" and p.context.trace_id == span.context.trace_id
            )
            assert span.parent is not None
            assert span.parent.span_id == parent.context.span_id
            assert parent.start_time is not None
            assert parent.end_time is not None
            assert span.start_time is not None
            assert span.end_time is not None
            assert parent.start_time <= span.start_time <= span.end_time <= parent.end_time


def test_a_failed_phase_is_an_error_child_at_ratio_zero(traced: Callable[..., Traced]) -> None:
    tracing, exporter = traced(0.0)
    run_phases(tracing)  # a success: dropped
    run_phases(tracing, RequestRejected("bad row", status=422, reason="schema"))  # a refusal: dropped
    failed = run_phases(tracing, RuntimeError("the trees broke"))
    spans = exported(tracing, exporter)
    assert {s.context.trace_id for s in spans} == {failed}
    by_name = {s.name: s for s in spans}
    assert sorted(by_name) == ["POST", "decode", "predict"]  # encode never ran
    assert by_name["predict"].status.status_code is StatusCode.ERROR
    assert by_name["predict"].events[0].name == "exception"


def test_an_unexported_request_makes_no_span_unless_it_fails(traced: Callable[..., Traced]) -> None:
    """At ratio 0 a request's trace is exported only when it fails: no span is made for the others (nine
    in ten at the default ratio, the whole cost of tracing), and a failure gets its server span late,
    with the request's start time, the exception and the caller's trace."""
    import time as clock

    tracing, exporter = traced(0.0)
    app = layered(tracing)
    made: list[str] = []
    original = tracing.tracer.start_span

    def counting(name: str, *args: Any, **kwargs: Any) -> Any:
        made.append(name)
        return original(name, *args, **kwargs)

    tracing.tracer.start_span = counting  # type: ignore[method-assign]
    assert call(app, "POST", "/v1/models/engage:predict", b"{}") == 200
    assert call(app, "POST", "/v1/models/engage:predict", b"bad") == 422
    assert made == []  # not one span for a success or a refusal: not even the "predict" child
    before = clock.time_ns()
    caller = {"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"}
    assert call(app, "POST", "/v1/models/engage:predict", b"boom", caller) == 500
    assert call(app, "POST", "/v1/models/engage:explain", b"{}") == 503
    spans = exported(tracing, exporter)
    assert [s.name for s in spans] == ["POST /v1/models/{model}:predict", "POST /v1/models/{model}:explain"]
    bug, passed = spans
    assert f"{bug.context.trace_id:032x}" == TRACE  # the caller's trace, continued by the late span
    assert bug.status.status_code is StatusCode.ERROR
    assert bug.events[0].attributes is not None
    assert bug.events[0].attributes["exception.type"] == "ZeroDivisionError"
    assert bug.start_time is not None
    assert bug.end_time is not None
    assert before <= bug.start_time <= bug.end_time
    assert dict(bug.attributes or {})["http.response.status_code"] == 500
    assert passed.status.status_code is StatusCode.ERROR
    assert dict(passed.attributes or {})["http.response.status_code"] == 503
