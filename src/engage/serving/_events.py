"""What KServe's InferenceService logger does in a cluster, for a predictor run without one.

In a cluster the ``spec.predictor.logger`` sidecar copies each request and response to the drift
detector as CloudEvents (binary mode: ``ce-type`` ``org.kubeflow.serving.inference.request`` or
``.response``, one ``ce-id`` for the pair). On a laptop there is no sidecar, so the predictor can be
given ``--logger_url`` and post the same events itself. It never waits for them: events go to a bounded
queue drained by one background thread; when the queue is full, or the receiver is down or slow, events
are dropped and counted (``engage_logger_events_total{outcome}``) and predictions go on unchanged.
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from typing import Any

__all__ = ["REQUEST_TYPE", "RESPONSE_TYPE", "EventLogger"]

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
log = logging.getLogger("engage.serving.logger")


class EventLogger:
    """Post request/response pairs to ``url`` as CloudEvents, from a background thread."""

    def __init__(
        self, url: str, *, source: str, model: str, capacity: int = 10_000, timeout: float = 2.0
    ) -> None:
        from prometheus_client import Counter

        self.url = url
        self.source = source
        self.model = model
        self.timeout = timeout
        self._queue: queue.Queue[tuple[str, str, bytes]] = queue.Queue(maxsize=capacity)
        self._events = _counter(Counter)
        self._thread = threading.Thread(target=self._drain, name="engage-event-logger", daemon=True)
        self._thread.start()

    def log(self, request: bytes, response: bytes) -> None:
        """Queue one request and its response; drop (and count) them when the queue is full."""
        event_id = str(uuid.uuid4())
        for kind, body in ((REQUEST_TYPE, request), (RESPONSE_TYPE, response)):
            try:
                self._queue.put_nowait((kind, event_id, body))
            except queue.Full:
                self._events.labels(self.model, "dropped").inc()

    def _drain(self) -> None:
        import httpx

        with httpx.Client(timeout=self.timeout) as client:
            while True:
                kind, event_id, body = self._queue.get()
                headers = {
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


_COUNTER: Any = None


def _counter(counter: Any) -> Any:
    global _COUNTER
    if _COUNTER is None:
        _COUNTER = counter(
            "engage_logger_events",
            "Request/response CloudEvents the predictor posted to --logger_url, by outcome "
            "(sent, refused, failed, dropped)",
            ["model", "outcome"],
        )
    return _COUNTER
