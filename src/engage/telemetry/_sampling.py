"""The export decision of Engage's traces: every error, a share of the rest (a SpanProcessor).

Head sampling decides when a span starts, before anyone knows whether the request will fail. So every
span is recorded (the provider's sampler is ``ALWAYS_ON``) and this processor decides when the trace's
*local root* ends (the first span of the trace in this process: a server span, a pipeline step, a
background test): the children that ended before it are held back until then, and the whole local trace
is exported when any of its spans is an error (status ERROR, or an HTTP status of 5xx), otherwise when
its trace id falls within the success ratio. The ratio test is OpenTelemetry's ``TraceIdRatioBased``
(the trace id's lower 64 bits below ``ratio * 2**64``), so every process that shares the ratio keeps or
drops the same traces: a trace that crosses the predictor and the drift detector is kept whole or not
at all, unless one side fails (that side's spans are always kept).

Imported only when tracing is on (it needs the SDK): :mod:`engage.telemetry.tracing` builds it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import StatusCode

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import Span

__all__ = ["ErrorsAndShareProcessor", "is_error", "within_ratio"]

_LOW_64 = (1 << 64) - 1
#: the HTTP status attribute of a server span (OpenTelemetry's semantic conventions)
HTTP_STATUS = "http.response.status_code"


def within_ratio(trace_id: int, ratio: float) -> bool:
    """Whether a successful trace is kept: ``TraceIdRatioBased``'s rule, deterministic on the trace id."""
    return (trace_id & _LOW_64) < round(ratio * (_LOW_64 + 1))


def is_error(span: ReadableSpan) -> bool:
    """Status ERROR, or an HTTP answer of 5xx (a 4xx is the caller's mistake, not the server's)."""
    if span.status.status_code is StatusCode.ERROR:
        return True
    code = (span.attributes or {}).get(HTTP_STATUS)
    return isinstance(code, int) and code >= 500


class ErrorsAndShareProcessor(SpanProcessor):
    """Hand ``downstream`` (a BatchSpanProcessor) every span of a local trace that holds an error, and
    of a ``ratio`` share of the others (by trace id); drop the rest.

    Bounded: at most ``max_pending`` traces wait for their local root (the oldest is dropped beyond),
    and the decisions of the last ``max_pending`` traces are remembered for children that end after
    their root (work that outlives its request)."""

    def __init__(self, downstream: SpanProcessor, ratio: float, *, max_pending: int = 4096) -> None:
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"success sample ratio must be within [0, 1], got {ratio}")
        self.downstream = downstream
        self.ratio = ratio
        self.max_pending = max_pending
        self._lock = threading.Lock()
        self._pending: OrderedDict[int, list[ReadableSpan]] = OrderedDict()
        self._decided: OrderedDict[int, bool] = OrderedDict()
        #: spans dropped because their trace waited too long (beyond max_pending) for its root
        self.evicted = 0

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is None:
            return
        trace_id = context.trace_id
        parent = span.parent
        if parent is not None and not parent.is_remote:  # a child: wait for the local root
            with self._lock:
                decided = self._decided.get(trace_id)
                if decided is None:
                    held = self._pending.get(trace_id)
                    if held is None:
                        self._pending[trace_id] = [span]
                        if len(self._pending) > self.max_pending:
                            self.evicted += len(self._pending.popitem(last=False)[1])
                    else:
                        held.append(span)
                    return
            if decided or is_error(span):
                self.downstream.on_end(span)
            return
        with self._lock:
            held = self._pending.pop(trace_id, None)
        spans = [*held, span] if held else [span]
        keep = within_ratio(trace_id, self.ratio) or any(is_error(s) for s in spans)
        with self._lock:  # for children that end after their root
            self._decided[trace_id] = keep
            if len(self._decided) > self.max_pending:
                self._decided.popitem(last=False)
        if keep:
            for s in spans:
                self.downstream.on_end(s)

    def shutdown(self) -> None:
        self.downstream.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.downstream.force_flush(timeout_millis)
