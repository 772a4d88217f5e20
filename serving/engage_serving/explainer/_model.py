"""The explainer's ``kserve.Model``, its flags and its entrypoint.

KServe's v1 data plane decodes ``POST /v1/models/<name>:explain`` and calls :meth:`ExplainerModel.explain`
with the JSON body ``{"instances": [{feature: value, ...}, ...], "method": ..., "head": ..., "desired":
[lo, hi]}``; the answer is the :class:`~engage.explain.Explanation` as ``{"data": ..., "meta": ...}``.

Concurrency. TreeSHAP and reason codes cost a few milliseconds a row and run inline on the event loop.
The sampling methods (KernelSHAP, anchors, LIME, DiCE counterfactuals) cost 0.1 to a few seconds a row:
they run in a pool of ``--max_concurrent_slow`` threads behind a semaphore taken *without waiting*, so a
request that finds every slot busy is answered 429 at once instead of queueing behind the others, and a
fast request never waits for a slow one. Each slow call has ``--slow_timeout_seconds``: past it the
caller gets 504, but the worker thread cannot be interrupted, so its slot stays busy (and the
``engage_explain_slow_in_flight`` gauge stays up) until the computation really ends.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import math
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from kserve import Model  # type: ignore[import-untyped,unused-ignore]

from engage.errors import ArtifactError, ConfigError, EngageError, ExplainError, RequestRejected
from engage.telemetry.tracing import ROWS, child_span
from engage_serving._metrics import serving_metrics
from engage_serving._server import (
    flag,
    load_or_explain,
    resolve_model_files,
    serve,
    server_parser,
    setup_logging,
)
from engage_serving.protocol import not_served

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge, Histogram

    from engage.contract import Contract
    from engage.explain import Explainer, Explanation
    from engage.telemetry.tracing import Tracing

__all__ = ["FAST_METHODS", "SLOW_METHODS", "ExplainerModel", "explainer_parser", "main"]

log = logging.getLogger("engage_serving.explainer")

#: answered inline (a few milliseconds a row)
FAST_METHODS = ("tree_shap", "reasons")
#: run in the bounded pool (sampling: 0.1 s to seconds a row)
SLOW_METHODS = ("kernel_shap", "anchors", "lime", "counterfactual")
SERVER = "explainer"
REFERENCE_FILE = "reference.parquet"
BODY_KEYS = ("instances", "method", "head", "desired")


# ---- flags ----------------------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def explainer_parser() -> argparse.ArgumentParser:
    """The flags every Engage server takes, plus the explainer's concurrency and licence flags."""
    parser = server_parser(
        "python -m engage_serving.explainer",
        "Engage explainer: KServe :explain answers for an Engage model bundle",
    )
    parser.add_argument(
        "--max_concurrent_slow",
        type=_positive_int,
        default=1,
        help="sampling explanations (kernel_shap, anchors, lime, counterfactual) running at once; "
        "one more is answered 429 at once",
    )
    parser.add_argument(
        "--slow_timeout_seconds",
        type=_positive_float,
        default=30.0,
        help="time budget of one sampling explanation; 504 past it",
    )
    parser.add_argument(
        "--licence_clean",
        type=flag,  # KServe's own reading of boolean flags (--enable_grpc …)
        nargs="?",
        const=True,
        default=False,
        help="serve only OSI-licensed methods (tree_shap, lime, counterfactual, reasons): no alibi (BSL 1.1); "
        "ENGAGE_EXPLAIN_LICENCE_CLEAN=true does the same",
    )
    return parser


# ---- metrics --------------------------------------------------------------------------------------------


class _ExplainMetrics:
    def __init__(self) -> None:
        from engage.telemetry import metric

        self.duration: Histogram = metric("engage_explain_duration_seconds").create()
        self.slow_in_flight: Gauge = metric("engage_explain_slow_in_flight").create()
        self.refused: Counter = metric("engage_explain_refused").create()


@functools.cache
def explain_metrics() -> _ExplainMetrics:
    """The explainer's own metrics, registered once per process in the default registry."""
    return _ExplainMetrics()


# ---- requests -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExplainRequest:
    """The body of one ``:explain`` request, checked for shape (not yet against the model)."""

    instances: list[Mapping[str, Any]]
    method: str = "tree_shap"
    head: str | None = None
    desired: tuple[float, float | None] | None = None


def _bad(message: str, reason: str = "bad_request") -> RequestRejected:
    return RequestRejected(message, status=400, reason=reason)


def parse_request(payload: Any, max_rows: int) -> ExplainRequest:
    """The request in ``payload`` (KServe's decoded JSON, or raw bytes of another content type)."""
    if isinstance(payload, bytes | bytearray | str):
        try:
            payload = orjson.loads(payload)
        except orjson.JSONDecodeError as e:
            raise _bad(f"the body is not valid JSON: {e}", "malformed_json") from None
    if not isinstance(payload, Mapping):
        raise _bad(
            'the body must be a JSON object: {"instances": [{feature: value, ...}], "method": "tree_shap"}'
        )
    unknown = sorted(str(k) for k in payload if k not in BODY_KEYS)
    if unknown:
        raise _bad(f"unknown key(s) {', '.join(unknown)}; the body takes: {', '.join(BODY_KEYS)}")
    instances = payload.get("instances")
    if instances is None:
        raise _bad('the body has no "instances": a list of rows, each an object of feature values')
    if not isinstance(instances, list):
        raise _bad(f'"instances" must be a list of rows (objects of feature values), not {_kind(instances)}')
    if not instances:
        raise _bad('"instances" is empty: there is nothing to explain')
    if len(instances) > max_rows:
        raise RequestRejected(
            f"{len(instances)} rows, over this server's limit of {max_rows} rows a request (--max_rows)",
            status=413,
            reason="too_many_rows",
        )
    method = payload.get("method", "tree_shap")
    if not isinstance(method, str):
        raise _bad(f'"method" must be a string, not {_kind(method)}')
    head = payload.get("head")
    if head is not None and not isinstance(head, str):
        raise _bad(f'"head" must be a string, not {_kind(head)}')
    return ExplainRequest(instances, method, head, _desired(payload.get("desired")))


def _desired(value: Any) -> tuple[float, float | None] | None:
    if value is None:
        return None
    shape = '"desired" must be [low, high] (high may be null: no upper limit)'
    if not isinstance(value, list) or len(value) != 2:
        raise _bad(f"{shape}; got {_kind(value)}")
    lo, hi = value
    if not _number(lo) or not (hi is None or _number(hi)):
        raise _bad(f"{shape}, finite numbers; got {value!r}")
    if hi is not None and hi < lo:
        raise _bad(f"{shape} with low <= high; got {value!r}")
    return float(lo), None if hi is None else float(hi)


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


# ---- the model ------------------------------------------------------------------------------------------


class ExplainerModel(Model):  # type: ignore[misc,unused-ignore]
    """KServe's ``:explain`` for an Engage bundle; :meth:`load` builds the :class:`Explainer` once."""

    #: set by ``serve`` at start-up when tracing is on: a span per explanation (method, head, rows)
    tracing: Tracing | None = None

    def __init__(self, name: str, args: argparse.Namespace, contract: Contract | None = None) -> None:
        super().__init__(name)
        self.args = args
        self.contract = contract
        self.explainer: Explainer | None = None
        self.metrics = explain_metrics()
        # every series exists from the start (at 0), so rules and panels see it before the first refusal
        self.metrics.slow_in_flight.labels(name).set(0)
        for reason in ("busy", "timeout"):
            self.metrics.refused.labels(name, reason)
        self._slots = asyncio.Semaphore(args.max_concurrent_slow)
        self._pool = ThreadPoolExecutor(args.max_concurrent_slow, thread_name_prefix="engage-explain")
        self._typical_slow_seconds = 1.0  # for the 429's retry hint: a moving average of slow calls
        serving_metrics().model_ready.labels(name, SERVER).set(0)

    # ---- loading --------------------------------------------------------------------------------------

    def load(self) -> bool:
        """Verify the bundle (signature, then every file) and load it, read the reference rows, build the
        explainer and warm it up.

        Raises an :class:`EngageError` saying why when any of it fails (:func:`load_or_explain` logs it).
        """
        from pydantic import ValidationError

        from engage.contract import load_contract
        from engage.explain import Explainer, ExplainSettings
        from engage.signing import verify_model_dir
        from engage.tables import read_table
        from engage.training import load_bundle

        files = resolve_model_files(self.args, need_reference=True)
        verify_model_dir(files.model_dir)  # signed by a trusted key, or never loaded
        bundle = load_bundle(files.model_dir)
        contract = self.contract if self.contract is not None else load_contract(self.args.contract)
        if files.reference_dir is None:
            beside = files.model_dir.parent / "drift_reference"
            raise ArtifactError(
                f"no training reference for {files.source}: the explainer draws its background rows from "
                f"{REFERENCE_FILE} (a sample of training rows) in {beside}, in --reference_dir, or in the "
                "registry version's drift_reference attachment"
            )
        background = read_table(files.reference_dir / REFERENCE_FILE)
        try:
            settings = ExplainSettings(licence_clean=True) if self.args.licence_clean else ExplainSettings()
        except ValidationError as e:
            raise ConfigError(f"ENGAGE_EXPLAIN_* settings: {e}") from None
        explainer = Explainer(bundle, contract, background, settings=settings)
        warm_up: list[dict[str, Any]] = orjson.loads(background.head(1).to_json(orient="records"))
        explainer.explain(warm_up, method="tree_shap")  # as a request arrives: parsed JSON
        for head, model in bundle.heads.items():
            if model.learner == "xgboost":
                explainer.tree_shap(head)  # TreeSHAP of every head ready before the first request
        self.contract, self.explainer, self.ready = contract, explainer, True
        metrics = serving_metrics()
        learners = ",".join(sorted({m.learner for m in bundle.heads.values()}))
        metrics.model_info.labels(self.name, SERVER, bundle.version, learners, ",".join(bundle.heads)).set(1)
        metrics.model_ready.labels(self.name, SERVER).set(1)
        log.info(
            "explainer ready: model %s %s from %s, %d background rows, methods: %s",
            self.name,
            bundle.version,
            files.source,
            len(explainer.background),
            ", ".join(explainer.methods()),
        )
        return True

    def start(self) -> None:
        # KServe's Model.start() says ready unconditionally; ready here means loaded
        self.ready = self.explainer is not None

    def stop(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.ready = False

    # ---- answering ------------------------------------------------------------------------------------

    async def explain(self, payload: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
        """Explain the request's instances (KServe's data plane calls this for ``:explain``)."""
        explainer = self.explainer
        if explainer is None:
            raise ArtifactError(f"model {self.name} is not ready")
        started = time.perf_counter()
        request = parse_request(payload, self.args.max_rows)
        if self.tracing is not None:
            self.tracing.annotate({ROWS: len(request.instances)})
        attributes = {"engage.explain.method": request.method, "engage.explain.head": request.head or ""}
        with child_span(self.tracing, f"explain {request.method}", attributes):
            if self._is_slow(explainer, request):
                result = await self._slow(explainer, request)
            else:
                result = explainer.explain(
                    request.instances, method=request.method, head=request.head, desired=request.desired
                )
        self.metrics.duration.labels(self.name, request.method).observe(time.perf_counter() - started)
        return result.to_dict()

    def predict(
        self, payload: Any, headers: dict[str, str] | None = None, response_headers: Any = None
    ) -> Any:
        """``:predict`` and ``/infer`` are the predictor's (KServe's base model would answer 501 here)."""
        raise not_served(
            ":predict or /infer", "explainer", "predictions come from the predictor (engage-predictor)"
        )

    def _is_slow(self, explainer: Explainer, request: ExplainRequest) -> bool:
        """Check the request against the model (the errors a slow call would raise, before it takes a
        slot) and say whether it runs in the pool."""
        from engage.explain import MAX_ROWS, check_method

        head = request.head or explainer.default_head
        if head not in explainer.bundle.heads:
            raise ExplainError(f"unknown head {head!r}; this model has: {', '.join(explainer.heads)}")
        learner = explainer.bundle.heads[head].learner
        check_method(request.method, explainer.settings, learner=learner, head=head)
        # reason codes of a head that is not a tree ensemble come from KernelSHAP
        slow = request.method in SLOW_METHODS or learner != "xgboost"
        if not slow:
            return False
        limit = MAX_ROWS.get(request.method)
        if limit is not None and len(request.instances) > limit:
            raise RequestRejected(
                f"{request.method} explains at most {limit} rows a request (it samples the model for every "
                f"row); got {len(request.instances)}: send them in smaller batches",
                status=413,
                reason="too_many_rows",
            )
        explainer.encoder.rows(request.instances)  # 422 naming each row and feature
        return True

    async def _slow(self, explainer: Explainer, request: ExplainRequest) -> Explanation:
        """Run a sampling method in the pool: 429 at once when every slot is busy, 504 past its budget."""
        if self._slots.locked():
            self.metrics.refused.labels(self.name, "busy").inc()
            wait = max(1, math.ceil(self._typical_slow_seconds))
            n = self.args.max_concurrent_slow
            raise RequestRejected(
                f"busy: all {n} slot(s) for sampling explanations (kernel_shap, anchors, lime, "
                f"counterfactual) are taken; retry after {wait} s (Retry-After: {wait}), or ask tree_shap "
                "or reasons, which answer at once",
                status=429,
                reason="busy",
            )
        await self._slots.acquire()  # a slot is free: this returns without waiting
        self.metrics.slow_in_flight.labels(self.name).inc()
        call = functools.partial(
            explainer.explain,
            request.instances,
            method=request.method,
            head=request.head,
            desired=request.desired,
        )
        started = time.perf_counter()
        try:
            future = asyncio.get_running_loop().run_in_executor(self._pool, call)
        except BaseException:
            self._release(started)
            raise
        future.add_done_callback(functools.partial(self._done, started))
        timeout = self.args.slow_timeout_seconds
        try:
            # shielded: a timeout (or a client gone) leaves the thread running and its slot held
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            self.metrics.refused.labels(self.name, "timeout").inc()
            raise RequestRejected(
                f"timeout: {request.method} did not finish within {timeout:g} s (--slow_timeout_seconds); "
                f"ask fewer rows or a smaller sample budget (ENGAGE_EXPLAIN_*). Its slot stays busy until "
                "the computation ends",
                status=504,
                reason="timeout",
            ) from None

    def _done(self, started: float, future: asyncio.Future[Any]) -> None:
        """The worker thread ended (answered or not): free its slot."""
        self._release(started)
        if not future.cancelled():
            future.exception()  # retrieved, so a timed-out call's error is not reported as lost

    def _release(self, started: float) -> None:
        elapsed = time.perf_counter() - started
        self._typical_slow_seconds = 0.7 * self._typical_slow_seconds + 0.3 * elapsed
        self.metrics.slow_in_flight.labels(self.name).dec()
        self._slots.release()


# ---- entrypoint -----------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m engage_serving.explainer``: load, then serve ready or not (not ready answers 503)."""
    os.environ["TQDM_DISABLE"] = "1"  # DiCE's progress bars would write to the log for every request
    args = explainer_parser().parse_args(argv)
    from engage.contract import load_contract

    try:
        contract: Contract | None = load_contract(args.contract)
    except EngageError:
        contract = None  # load() fails on it again, and says why
    setup_logging(args, contract)
    # KServe's v1 :explain answers with FastAPI's ORJSONResponse, which warns on every request; shap logs
    # every KernelSHAP call (with its values) at INFO
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")
    logging.getLogger("shap").setLevel(max(logging.WARNING, logging.getLogger().level))
    model = ExplainerModel(args.model_name, args, contract)
    reason = load_or_explain(model.name, model.load)
    serve(model, args, not_ready=lambda: reason)
    return 0
