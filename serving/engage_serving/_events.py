"""What KServe's InferenceService logger does in a cluster, for a predictor run without one.

In a cluster the ``spec.predictor.logger`` sidecar copies each request and response to the drift
detector as CloudEvents (binary mode: ``ce-type`` ``org.kubeflow.serving.inference.request`` or
``.response``, one ``ce-id`` for the pair). On a laptop there is no sidecar, so the predictor can be
given ``--logger_url`` and post the same events itself. It never waits for them: events go to a bounded
queue drained by one background thread; when the queue is full, or the receiver is down or slow, events
are dropped and counted (``engage_logger_events_total{outcome}``) and predictions go on unchanged.

A receiver that is down costs nothing either: after three failed posts in a row the logger stops trying
for a while (1 s, doubling up to 30 s while it stays down), and in that time :meth:`EventLogger.log`
drops events at once (``outcome="skipped"``) instead of queueing them for a thread that would spend the
interpreter's time on refused connections.

When the predictor traces, each pair carries the request's W3C ``traceparent`` (and ``tracestate``), so
the drift detector's spans join the predictor's trace, as the cluster's logger forwards the headers.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

__all__ = ["REQUEST_TYPE", "RESPONSE_TYPE", "EventLogger"]

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
log = logging.getLogger("engage_serving.logger")
FAILURES_BEFORE_PAUSE = 3
MIN_BACKOFF = 1.0
MAX_BACKOFF = 30.0


class EventLogger:
    """Post request/response pairs to ``url`` as CloudEvents, from a background thread."""

    def __init__(
        self, url: str, *, source: str, model: str, capacity: int = 10_000, timeout: float = 2.0
    ) -> None:
        self.url = url
        self.source = source
        self.model = model
        self.timeout = timeout
        self._queue: queue.Queue[tuple[str, str, bytes, Mapping[str, str] | None]] = queue.Queue(
            maxsize=capacity
        )
        self._events = _counter()
        for outcome in OUTCOMES:  # every series from the start, at 0
            self._events.labels(model, outcome)
        self._resume_at = 0.0  # monotonic time before which events are skipped (receiver down)
        self._backoff = MIN_BACKOFF
        self._thread = threading.Thread(target=self._drain, name="engage-event-logger", daemon=True)
        self._thread.start()

    def log(self, request: bytes, response: bytes, trace: Mapping[str, str] | None = None) -> None:
        """Queue one request and its response; drop (and count) them when the queue is full. ``trace``:
        the headers that continue the request's trace (``traceparent``), sent with both events."""
        if self._resume_at and time.monotonic() < self._resume_at:
            self._events.labels(self.model, "skipped").inc(2)
            return
        event_id = str(uuid.uuid4())
        for kind, body in ((REQUEST_TYPE, request), (RESPONSE_TYPE, response)):
            try:
                self._queue.put_nowait((kind, event_id, body, trace))
            except queue.Full:
                self._events.labels(self.model, "dropped").inc()

    def _drain(self) -> None:
        import httpx

        failures = 0
        with httpx.Client(timeout=self.timeout) as client:
            while True:
                kind, event_id, body, trace = self._queue.get()
                headers = {
                    **(trace or {}),
                    "content-type": "application/json",
                    "ce-specversion": "1.0",
                    "ce-type": kind,
                    "ce-id": event_id,
                    "ce-source": self.source,
                    "ce-inferenceservicename": self.model,
                }
                try:
                    answer = client.post(self.url, content=body, headers=headers)
                    outcome = "sent" if answer.status_code < 400 else "refused"
                except httpx.HTTPError:
                    outcome = "failed"
                self._events.labels(self.model, outcome).inc()
                failures = failures + 1 if outcome == "failed" else 0
                if failures >= FAILURES_BEFORE_PAUSE:
                    self._pause()
                    failures = 0
                elif outcome != "failed":
                    self._resume_at, self._backoff = 0.0, MIN_BACKOFF

    def _pause(self) -> None:
        """The receiver is down: skip events for a while, and drop what is queued."""
        log.warning("event receiver %s is not answering: events skipped for %.0f s", self.url, self._backoff)
        self._resume_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, MAX_BACKOFF)
        dropped = 0
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
            dropped += 1
        if dropped:
            self._events.labels(self.model, "dropped").inc(dropped)


#: what can become of a request/response pair's events (``engage_logger_events_total{outcome}``)
OUTCOMES = ("sent", "refused", "failed", "dropped", "skipped")
_COUNTER: Any = None


def _counter() -> Any:
    """``engage_logger_events_total``, registered once per process."""
    global _COUNTER
    if _COUNTER is None:
        from engage.telemetry import metric

        _COUNTER = metric("engage_logger_events").create()
    return _COUNTER
