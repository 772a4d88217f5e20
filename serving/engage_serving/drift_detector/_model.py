"""The drift detector's ``kserve.Model``, its event parsing, its flags and its entrypoint.

The KServe InferenceService logger (``logger: {mode: all, url: ...}``) posts every request and response
of the predictor here as CloudEvents. Ingestion only parses the body and appends to the window, then
answers 202: the tests run in one background thread when the cadence says a test is due (one test at a
time, none queued behind it), so the logger, and the predictor behind it, never wait for a test.

Routes (all answered by Engage's HTTP layer, see :mod:`engage_serving._http`):

* ``POST /`` and ``POST /events``: an event. CloudEvents binary mode (``ce-type`` header, the body is the
  predictor's request or response), structured mode (``content-type: application/cloudevents+json``,
  ``type`` and ``data`` in the body), or a plain JSON body of rows. Answer ``202 {"accepted": n}``.
* ``POST /v1/models/<name>:predict`` with ``{"instances": [...]}``: test exactly these rows now and
  answer the result (as alibi-detect's own server does).
* ``GET /v1/models/<name>/drift``: the latest window test's result.

With ``--event_store URI`` every request/response pair is also appended, one row per scored customer,
to Parquet files under the URI (:class:`engage.feedback.EventStore`; ``docs/feedback.md``); a store
failure is counted and logged, never refused.
"""

from __future__ import annotations

import argparse
import base64
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from kserve import Model  # type: ignore[import-untyped,unused-ignore]

from engage.errors import ArtifactError, ConfigError, EngageError
from engage.telemetry.tracing import ROWS, child_span
from engage_serving._events import REQUEST_TYPE, RESPONSE_TYPE
from engage_serving._http import FastRoute
from engage_serving._metrics import serving_metrics
from engage_serving._server import load_or_explain, resolve_model_files, serve, server_parser, setup_logging
from engage_serving.protocol import not_served
from engage_serving.protocol import predictions as prediction_columns
from engage_serving.protocol.v1 import bad_request

from ._metrics import drift_metrics

if TYPE_CHECKING:
    import numpy.typing as npt

    from engage.contract import Contract
    from engage.drift import DriftDetector, DriftSettings, Reference
    from engage.feedback import EventStore
    from engage.telemetry.tracing import Tracing
    from engage.training import ModelBundle

__all__ = [
    "REQUEST_EVENT",
    "RESPONSE_EVENT",
    "DriftDetectorModel",
    "drift_parser",
    "main",
    "parse_event",
    "request_matrix",
]

log = logging.getLogger("engage_serving.drift_detector")

SERVER = "drift_detector"
#: the CloudEvents types of KServe's InferenceService logger
REQUEST_EVENT = REQUEST_TYPE  # what the InferenceService logger (and --logger_url) sends
RESPONSE_EVENT = RESPONSE_TYPE
_EVENT_KINDS = {REQUEST_EVENT: "request", RESPONSE_EVENT: "response"}
#: how often the worker looks at the clock when no event arrives (the time-based cadence)
POLL_SECONDS = 1.0


# ---- flags ----------------------------------------------------------------------------------------------


def drift_parser() -> argparse.ArgumentParser:
    """The flags every Engage server takes, plus the detector's backend, window and cadence (their
    defaults are :class:`~engage.drift.DriftSettings`', so ``ENGAGE_DRIFT_*`` sets them too)."""
    from engage.drift import DriftSettings

    fields = DriftSettings.model_fields
    parser = server_parser(
        "python -m engage_serving.drift_detector",
        "Engage drift detector: the predictor's traffic (KServe logger CloudEvents) against the training reference",
    )
    parser.add_argument(
        "--backend",
        choices=["auto", "alibi-detect", "scipy"],
        default=None,
        help=f"alibi-detect (TabularDrift, BSL 1.1), scipy (the same tests, licence-clean) or auto (alibi-detect "
        f"when installed, else scipy); default "
        f"ENGAGE_DRIFT_BACKEND or {fields['backend'].default}",
    )
    parser.add_argument(
        "--window_size",
        type=int,
        default=None,
        help=f"most recent rows a window test looks at; default {fields['window_size'].default}",
    )
    parser.add_argument(
        "--test_every_rows",
        type=int,
        default=None,
        help=f"test the window after this many new rows; default {fields['test_every_rows'].default}",
    )
    parser.add_argument(
        "--event_store",
        default=None,
        help="also append every request/response pair, one row per scored customer, to Parquet files under "
        "this URI (a folder or any fsspec URI, e.g. s3://bucket/events); off by default (engage feedback "
        "joins them with outcomes)",
    )
    parser.add_argument(
        "--event_store_flush_seconds",
        type=float,
        default=60.0,
        help="write the event store's buffer at least this often (also every 5,000 rows); default 60",
    )
    return parser


def drift_settings(args: argparse.Namespace) -> DriftSettings:
    """``ENGAGE_DRIFT_*`` with the flags given on top; :class:`ConfigError` when out of range."""
    from pydantic import ValidationError

    from engage.drift import DriftSettings

    flags = {k: getattr(args, k) for k in ("backend", "window_size", "test_every_rows")}
    try:
        return DriftSettings(**{k: v for k, v in flags.items() if v is not None})
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(map(str, err['loc'])) or 'settings'}: {err['msg']}" for err in e.errors()
        )
        raise ConfigError(f"drift settings (ENGAGE_DRIFT_* and flags): {problems}") from None


# ---- events ---------------------------------------------------------------------------------------------


def _json(body: bytes | str) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise bad_request(f"the body is not valid JSON: {e}", "malformed_json") from None


def parse_event(body: bytes, headers: Mapping[str, str]) -> tuple[str, Any]:
    """``(kind, payload)`` of a POSTed event: kind ``request`` or ``response`` for a CloudEvent of
    KServe's logger (binary or structured mode), ``rows`` for a plain JSON body."""
    event_type = headers.get("ce-type")
    content_type = headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if event_type is None and content_type == "application/cloudevents+json":
        event = _json(body)
        if not isinstance(event, Mapping) or not isinstance(event.get("type"), str):
            raise bad_request('a structured CloudEvent must be a JSON object with a "type"', "bad_event")
        event_type = event["type"]
        if "data" in event:
            payload = event["data"]
        elif isinstance(event.get("data_base64"), str):
            try:
                payload = _json(base64.b64decode(event["data_base64"], validate=True))
            except ValueError:
                raise bad_request('"data_base64" is not valid base64', "bad_event") from None
        else:
            raise bad_request('the CloudEvent has no "data"', "bad_event")
    elif event_type is not None:
        payload = _json(body)
    else:
        return "rows", _json(body)
    kind = _EVENT_KINDS.get(event_type)
    if kind is None:
        raise bad_request(
            f"unknown event type {event_type[:80]!r}: the drift detector takes {REQUEST_EVENT} and {RESPONSE_EVENT}",
            "unknown_event",
        )
    if isinstance(payload, str | bytes):  # data carried as a JSON string
        payload = _json(payload)
    return kind, payload


def request_matrix(payload: Any, reference: Reference, max_rows: int) -> npt.NDArray[np.float64]:
    """The rows of a predictor request (V1 ``instances``, V2 ``inputs`` one tensor per feature) or of a
    plain list of row objects, encoded against ``reference`` (the shared decoder, lenient encoder)."""
    from engage_serving.protocol import Decoder

    return Decoder(reference.encoder, None, max_rows=max_rows, dtype=np.float64).any(payload).X


# ---- the background test --------------------------------------------------------------------------------


class _Worker:
    """One thread that runs window tests when due: never more than one running or waiting."""

    def __init__(
        self,
        detector: DriftDetector,
        on_result: Callable[[dict[str, Any]], None],
        test: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.detector = detector
        self.on_result = on_result
        self.test = test or detector.test
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._busy = False
        self._stopped = False
        self.thread = threading.Thread(target=self._run, name="engage-drift-test", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()

    def poke(self) -> None:
        """After new rows: wake the thread when a test is due and none is running or waiting."""
        if self._claim():
            self._wake.set()

    def _claim(self) -> bool:
        if not self.detector.due():
            return False
        with self._lock:
            if self._busy:
                return False
            self._busy = True
            return True

    def _run(self) -> None:
        poll = min(POLL_SECONDS, self.detector.settings.test_every_seconds)
        while not self._stopped:
            woken = self._wake.wait(poll)
            self._wake.clear()
            if self._stopped:
                return
            if not woken and not self._claim():
                continue  # the clock: a time-based test is due only with new rows
            try:
                self.on_result(self.test())
            except Exception:  # a failed test must not end the thread: the next one may pass
                log.exception("drift test failed")
            finally:
                with self._lock:
                    self._busy = False
            self.poke()  # rows that came during the test may already make the next one due


# ---- the model ------------------------------------------------------------------------------------------


class DriftDetectorModel(Model):  # type: ignore[misc,unused-ignore]
    """Drift of the predictor's traffic against the training reference; :meth:`load` builds the detector."""

    #: set by ``serve`` at start-up when tracing is on: spans of each window test and direct test
    tracing: Tracing | None = None

    def __init__(self, name: str, args: argparse.Namespace) -> None:
        super().__init__(name)
        self.args = args
        self.detector: DriftDetector | None = None
        self.bundle: ModelBundle | None = None
        self.metrics = drift_metrics()
        self._worker: _Worker | None = None
        self.store: EventStore | None = None
        serving_metrics().model_ready.labels(name, SERVER).set(0)

    # ---- loading --------------------------------------------------------------------------------------

    def load(self) -> bool:
        """Verify the bundle (signature, then every file) and load it, read the reference, score it once
        for the prediction-drift reference, build the detector and start its worker. Raises an
        :class:`EngageError` saying why when any of it fails (:func:`load_or_explain` logs it)."""
        from engage.drift import DriftDetector, Reference
        from engage.signing import verify_model_dir
        from engage.training import load_bundle

        settings = drift_settings(self.args)
        files = resolve_model_files(self.args, need_reference=True)
        verify_model_dir(files.model_dir)  # signed by a trusted key, or never loaded
        bundle = load_bundle(files.model_dir)
        if files.reference_dir is None:
            raise ArtifactError(
                f"no drift reference for {files.source}: expected reference.parquet and summary.json in "
                f"{files.model_dir.parent / 'drift_reference'}, in --reference_dir, or in the registry "
                "version's drift_reference attachment"
            )
        reference = Reference.load(files.reference_dir)
        try:
            scored = bundle.predict(reference.frame)
            predictions = {str(c): scored[c].to_numpy(dtype=np.float64) for c in scored.columns}
        except EngageError as e:  # the reference watches a subset of the model's inputs
            log.warning("no prediction drift: the model cannot score the reference rows (%s)", e.message)
            predictions = {}
        detector = DriftDetector(reference, settings, reference_predictions=predictions)
        self.metrics.window_rows.labels(self.name).set_function(lambda: detector.window_rows)
        self.bundle, self.detector, self.ready = bundle, detector, True
        self._worker = _Worker(detector, self._publish, self._window_test)
        self._worker.start()
        if self.args.event_store:
            self.store = self._event_store(bundle)
        metrics = serving_metrics()
        learners = ",".join(sorted({m.learner for m in bundle.heads.values()}))
        metrics.model_info.labels(self.name, SERVER, bundle.version, learners, ",".join(bundle.heads)).set(1)
        metrics.model_ready.labels(self.name, SERVER).set(1)
        log.info(
            "drift detector ready: model %s %s from %s; reference %d rows, %d features, p %.3g (%s); "
            "backend %s; window %d rows, test every %d rows or %g s from %d rows; prediction drift: %s",
            self.name,
            bundle.version,
            files.source,
            reference.rows,
            len(reference.features),
            detector.p_value,
            settings.correction,
            detector.backend,
            settings.window_size,
            settings.test_every_rows,
            settings.test_every_seconds,
            settings.min_rows,
            ", ".join(detector.prediction_heads) or "none",
        )
        return True

    def _event_store(self, bundle: ModelBundle) -> EventStore:
        """The store of scored rows: the id, protected attributes and inputs the contract names, and every
        head's output."""
        from engage.contract import load_contract
        from engage.feedback import EventStore, store_failures

        try:
            contract = load_contract(self.args.contract)
            id_column = next((n for n, c in contract.columns.items() if c.role.value == "id"), None)
            protected = contract.protected
        except EngageError:
            id_column, protected = None, []
        inputs = list(bundle.features.columns)
        columns = list(dict.fromkeys([*([id_column] if id_column else []), *protected, *inputs]))
        failures = store_failures().labels(self.name)
        store = EventStore(
            self.args.event_store,
            model_name=self.name,
            columns=columns,
            inputs=inputs,
            outputs=[m.head.output for m in bundle.heads.values()],
            id_column=id_column,
            flush_seconds=self.args.event_store_flush_seconds,
            on_failure=lambda _e: failures.inc(),
        )
        log.info("event store: every scored row to %s (flush every %g s)", store.uri, store.flush_seconds)
        return store

    def start(self) -> None:
        # KServe's Model.start() says ready unconditionally; ready here means loaded
        self.ready = self.detector is not None

    def stop(self) -> None:
        if self._worker is not None:
            self._worker.stop()
        if self.store is not None:
            self.store.close()
        self.ready = False

    def routes(self) -> list[FastRoute]:
        name = self.name
        return [
            FastRoute("/", "events", self.ingest, cloudevents=True),
            FastRoute("/events", "events", self.ingest, cloudevents=True),
            FastRoute(f"/v1/models/{name}:predict", "predict", self.direct),
            FastRoute(f"/v1/models/{name}/drift", "drift", self.latest, method="GET"),
        ]

    # ---- answering ------------------------------------------------------------------------------------

    def _ready(self) -> DriftDetector:
        if self.detector is None:
            raise ArtifactError(f"model {self.name} is not ready")
        return self.detector

    def ingest(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        """An event of the predictor's logger (or plain rows): append to the window, answer 202 at once."""
        detector = self._ready()
        kind, payload = parse_event(body, headers)
        if kind == "response":
            accepted = detector.add_predictions(prediction_columns(payload, detector.prediction_heads))
        else:
            accepted = detector.add_rows(request_matrix(payload, detector.reference, self.args.max_rows))
        self.metrics.events.labels(self.name, kind).inc()
        if self.store is not None:  # never raises: a failure is counted and logged once
            self.store.add(kind, headers.get("ce-id"), payload)
        if self.tracing is not None:
            self.tracing.annotate({ROWS: accepted, "engage.drift.event": kind})
        if self._worker is not None:
            self._worker.poke()
        return 202, b'{"accepted":%d}' % accepted

    def direct(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        """``:predict``: test exactly the request's rows against the reference, now."""
        return 200, orjson.dumps(self.test_rows(_json(body)))

    def test_rows(self, payload: Any) -> dict[str, Any]:
        detector = self._ready()
        if not isinstance(payload, Mapping) or not isinstance(payload.get("instances"), list):
            raise bad_request('the body must be {"instances": [{feature: value, ...}, ...]}')
        instances = payload["instances"]
        if not instances:
            raise bad_request('"instances" is empty: there is nothing to test', "no_rows")
        matrix = request_matrix(payload, detector.reference, self.args.max_rows)
        serving_metrics().rows.labels(self.name, "predict").observe(len(instances))
        if self.tracing is not None:
            self.tracing.annotate({ROWS: len(instances)})
        with child_span(self.tracing, "drift test", {ROWS: len(instances)}) as span:
            result = detector.test(matrix, predictions=self._predict(instances))
            if span is not None:
                span.set_attribute("engage.drift.detected", bool(result["data"]["is_drift"]))
        return result

    def _window_test(self) -> dict[str, Any]:
        """The worker's test of the window: a trace of its own when tracing is on."""
        detector = self._ready()
        if self.tracing is None:
            return detector.test()
        with self.tracing.root("drift window test", {ROWS: detector.window_rows}) as span:
            result = detector.test()
            span.set_attribute("engage.drift.detected", bool(result["data"]["is_drift"]))
            span.set_attribute("engage.drift.backend", str(result["meta"].get("backend", "")))
        return result

    def _predict(self, instances: list[Any]) -> dict[str, Any]:
        """The model's predictions of rows that carry every model input (for prediction drift), else none."""
        bundle = self.bundle
        if bundle is None or not all(all(c in row for c in bundle.features.columns) for row in instances):
            return {}
        import pandas as pd

        try:
            scored = bundle.predict(pd.DataFrame.from_records(instances))
        except EngageError:
            return {}
        return {str(c): scored[c].to_numpy(dtype=np.float64) for c in scored.columns}

    def latest(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        """The latest window test, or why there is none yet."""
        detector = self._ready()
        result = detector.latest
        if result is None:
            n, need = detector.window_rows, detector.settings.min_rows
            reason = f"no test yet: {n} of {need} rows" + (" (a test is due)" if n >= need else "")
            return 200, orjson.dumps({"data": None, "meta": {"reason": reason}})
        return 200, orjson.dumps(result)

    async def predict(
        self, payload: Any, headers: dict[str, str] | None = None, response_headers: Any = None
    ) -> Any:
        """KServe's data plane (a ``:predict`` it decoded itself, e.g. a CloudEvent): as :meth:`direct`."""
        if isinstance(payload, bytes | str):
            payload = _json(payload)
        if not isinstance(payload, Mapping):
            raise bad_request(
                'the drift detector answers v1 :predict with {"instances": [...]} (no v2 infer)'
            )
        return self.test_rows(payload)

    def explain(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        """``:explain`` is the explainer's (KServe's base model would answer 501 here)."""
        raise not_served(
            ":explain", "drift detector", "explanations come from the explainer (engage-explainer)"
        )

    def _publish(self, result: dict[str, Any]) -> None:
        """A window test finished: gauges, and one log line."""
        self.metrics.publish(self.name, result)
        data = result["data"]
        drifted = [f for f, flag in data["feature_drift"].items() if flag]
        heads = [h for h, t in data["prediction_drift"].items() if t["is_drift"]]
        log.info(
            "drift test of %d rows: %s; prediction drift: %s; outlier share %.3f; %.3f s",
            data["window_rows"],
            f"DRIFT in {', '.join(drifted)}" if drifted else "no drift",
            ", ".join(heads) or "none",
            data["outlier_share"],
            result["meta"]["duration_seconds"],
        )


# ---- entrypoint -----------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m engage_serving.drift_detector``: load, then serve ready or not (not ready answers 503)."""
    # alibi-detect imports transformers, which logs that it found no deep-learning framework: none is needed
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    args = drift_parser().parse_args(argv)
    from engage.contract import load_contract

    contract: Contract | None
    problem = None
    try:
        contract = load_contract(args.contract)
    except EngageError as e:
        contract, problem = None, e.message  # only the masking of log lines uses it
    setup_logging(args, contract)
    if problem is not None:
        log.warning("no contract: personal fields are masked by name only (%s)", problem)
    model = DriftDetectorModel(args.model_name, args)
    reason = load_or_explain(model.name, model.load)
    serve(model, args, routes=model.routes(), not_ready=lambda: reason)
    return 0
