"""The predictor: a ``kserve.Model`` serving the three heads of one model bundle.

Loading checks the bundle's signature (:func:`engage.signing.verify_model_dir`: by a trusted key, over
its manifest) and every file against its manifest (SHA-256) before anything else; an unsigned or
tampered bundle, or a mismatch, leaves the model not ready for good (503 with the reason, and one ERROR
log line). The trees
are compiled (:mod:`._forest`), checked against xgboost on rows drawn from the model's own split points,
and warmed up; only then is the model ready.

``:predict`` (V1) and ``/infer`` (V2) are answered on the HTTP layer's fast routes; KServe's data plane
calls :meth:`PredictorModel.predict` with the same logic for what the fast routes leave to it (gRPC,
CloudEvents, V2's binary tensor extension).
"""

from __future__ import annotations

import argparse
import logging
import math
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from kserve import Model
from kserve.errors import InvalidInput
from kserve.metrics import PREDICT_HIST_TIME
from kserve.protocol.infer_type import InferRequest, InferResponse

from engage.errors import RequestRejected
from engage.telemetry.tracing import ROWS, Phases, Tracing
from engage_serving._http import FastRoute
from engage_serving._metrics import observe_many, serving_metrics
from engage_serving.protocol import Batch, Decoder, not_served

from ._forest import CompiledForest

if TYPE_CHECKING:
    from engage.contract import Contract

    from ._groups import GroupCounter
    from ._review import ReviewRouting

__all__ = ["REVIEW_PARAMETER", "PredictorModel"]

log = logging.getLogger("engage_serving.predictor")

#: up to this many rows a request is scored by the compiled trees, above by xgboost
SMALL_BATCH = 16
#: the compiled trees must reproduce xgboost's margins this closely, or they are not used
AGREEMENT = 1e-6
_CHECK_ROWS = 512
#: the V2 response parameter holding the human-review notes of the rows (``--review true``)
REVIEW_PARAMETER = "engage_review"


class _Finish:
    """One head's margin -> prediction, as ``HeadModel.from_margin`` computes it, for one value."""

    def __init__(self, head: Any) -> None:
        self.head = head
        self.output: str = head.head.output
        self.link = {"binary:logistic": "logistic", "reg:logistic": "logistic", "reg:tweedie": "exp"}.get(
            head.objective, "identity"
        )
        calibrator = head.calibrator
        self.isotonic = None
        isotonic = calibrator is not None and type(calibrator).__name__ == "IsotonicRegression"
        if isotonic and getattr(calibrator, "out_of_bounds", "clip") == "clip":
            self.isotonic = (np.asarray(calibrator.X_thresholds_), np.asarray(calibrator.y_thresholds_))
        self.scalar = calibrator is None or self.isotonic is not None

    def one(self, margin: float) -> float:
        """The prediction from one margin of the compiled trees."""
        raw = _link32(self.link, margin)
        if not self.scalar:
            return float(self.many(np.asarray([raw], dtype=np.float32))[0])
        if self.isotonic is not None:
            raw = float(np.interp(raw, *self.isotonic))
        return float(self.head.settle(np.asarray([raw]))[0])

    def many(self, values: Any) -> Any:
        """Predictions from xgboost's own outputs (``predict_type="value"``), as the library finishes them."""
        return self.head.finish(np.asarray(values, dtype=np.float64))


def _f32(x: float) -> float:
    return float(np.float32(x))


def _link32(link: str, margin: float) -> float:
    """The objective's link as xgboost computes it in float32 (``Sigmoid``: ``1 / (expf(min(-x, 88.7)) + 1)``;
    ``expf``), one rounding per operation, so one-row answers equal ``Booster.predict``'s to the bit."""
    if link == "logistic":
        return _f32(1.0 / _f32(_f32(math.exp(min(-margin, 88.7))) + 1.0))
    if link == "exp":
        return _f32(math.exp(min(margin, 88.7)))
    return margin


class PredictorModel(Model):  # type: ignore[misc]
    """Engagement score, churn probability and lifetime value of each row, with the model version."""

    #: set by ``serve`` at start-up when tracing is on: spans decode / predict / encode of each request
    tracing: Tracing | None = None

    def __init__(self, name: str, args: argparse.Namespace) -> None:
        super().__init__(name)
        self.args = args
        self.not_ready_reason: str | None = "loading"
        self.version = ""
        self.metrics = serving_metrics()
        self.events: Any = None
        #: human-review routing (``--review true``), set up by :meth:`load`
        self.review: ReviewRouting | None = None
        #: predictions by protected group (``engage_prediction_group_total``), set up by :meth:`load`
        self.groups: GroupCounter | None = None
        if getattr(args, "logger_url", None):
            from engage_serving._events import EventLogger

            self.events = EventLogger(args.logger_url, source=f"engage-predictor/{name}", model=name)

    # ---------------------------------------------------------------------------------- loading
    def load(self) -> bool:
        from engage.contract import load_contract
        from engage.model import load_bundle
        from engage.signing import verify_model_dir

        started = time.perf_counter()
        files = self._files()
        verify_model_dir(files.model_dir)  # signed by a trusted key, or never loaded
        bundle = load_bundle(files.model_dir)  # every file checked against the manifest first
        self.bundle = bundle
        self.version = bundle.version or ""
        from engage.encoding import Encoder

        contract = load_contract(self.args.contract)
        self.decoder = Decoder(
            Encoder.for_model(bundle.features, contract, strict=True), contract, max_rows=self.args.max_rows
        )
        self.finish = {name: _Finish(head) for name, head in bundle.heads.items()}
        self.outputs = [f.output for f in self.finish.values()]
        self.xgboost = all(h.learner == "xgboost" for h in bundle.heads.values())
        self.forest: CompiledForest | None = None
        if self.xgboost:
            self.boosters = {name: h.estimator.get_booster() for name, h in bundle.heads.items()}
            self.iterations = {
                name: (h.best_iteration + 1 if h.best_iteration is not None else 0)
                for name, h in bundle.heads.items()
            }
            self._compile()
        self._observers = {
            f.output: (self.metrics.prediction_ltv if f.link == "exp" else self.metrics.prediction).labels(
                self.name, f.output
            )
            for f in self.finish.values()
        }
        self._predict_time = PREDICT_HIST_TIME.labels(model_name=self.name)
        self.groups = self._group_counter(contract)
        if getattr(self.args, "review", False):
            self.review = self._review_routing(files.reference_dir)
        self.metrics.model_info.labels(
            self.name, "predictor", self.version, bundle.learner, ",".join(bundle.heads)
        ).set(1)
        self.metrics.model_ready.labels(self.name, "predictor").set(1)
        self.not_ready_reason = None
        self.ready = True
        log.info(
            "model %s ready: version %s from %s, %d heads, %s, in %.1f s",
            self.name, self.version, files.source, len(bundle.heads),
            f"compiled trees ({self.forest.trees})" if self.forest else "xgboost only",
            time.perf_counter() - started,
        )  # fmt: skip
        return True

    def _files(self) -> Any:
        """The model's files; with ``--review`` and ``--registry`` the drift reference too (its training
        statistics find outliers), when the version has one."""
        from engage.errors import EngageError
        from engage_serving._server import resolve_model_files

        if getattr(self.args, "review", False) and self.args.registry and not self.args.reference_dir:
            try:
                return resolve_model_files(self.args, need_reference=True)
            except EngageError as e:
                log.warning("review: no drift reference with the model (%s): outliers not looked for", e)
        return resolve_model_files(self.args)

    def _review_routing(self, reference_dir: Any) -> ReviewRouting:
        from engage.governance import GovernanceSettings

        from ._review import ReviewRouting, decision_thresholds, outlier_bounds

        encoder = self.decoder.encoder
        outliers = outlier_bounds(encoder.names, encoder.categorical, reference_dir)
        url = self.args.governance_db or GovernanceSettings().database_url
        routing = ReviewRouting(
            self.name,
            url,
            band=self.args.review_band,
            z=self.args.review_outlier_z,
            thresholds=decision_thresholds(self.bundle),
            outliers=outliers,
            encoder=encoder,
            id_column=self.decoder.id_column,
            model_version=self.version,
        )
        routing.connect()  # early: an outage is logged at start-up (the model is ready all the same)
        log.info(
            "human review on: thresholds %s within %g, outliers beyond %g robust deviations of %s, ids in %s",
            routing.thresholds, routing.band, routing.z,
            f"{len(outliers.names)} features" if outliers else "no features (no drift reference)",
            self.decoder.id_column or "(no id column: nothing routed)",
        )  # fmt: skip
        return routing

    def _group_counter(self, contract: Contract) -> GroupCounter | None:
        """The counter of predictions by protected group, at each classification head's decision threshold:
        ``--fairness_threshold`` when given, else the bundle's (:func:`decision_thresholds`: 0.5 when its
        metadata states none)."""
        from ._groups import GroupCounter
        from ._review import decision_thresholds

        thresholds = decision_thresholds(self.bundle)
        fixed = getattr(self.args, "fairness_threshold", None)
        if fixed is not None:
            thresholds = dict.fromkeys(thresholds, float(fixed))
        return GroupCounter.for_contract(self.name, contract, self.decoder.carried, thresholds)

    def _compile(self) -> None:
        """Use the compiled trees if they give xgboost's margins on probe rows; warm both paths up."""
        forest = CompiledForest(self.boosters, self.iterations, list(self.decoder.encoder.categorical))
        X = _probe_rows(forest.split_points, self.decoder.encoder, _CHECK_ROWS)
        gap = forest.agreement(X, self._xgboost_margins(X))
        self.forest = forest if gap <= AGREEMENT else None
        if self.forest is None:
            log.warning(
                "compiled trees differ from xgboost by %.3g (> %g): scoring with xgboost only", gap, AGREEMENT
            )
        for n in (1, SMALL_BATCH + 1):  # warm-up: both paths, once
            self.score(Batch(X[:n]))

    # ---------------------------------------------------------------------------------- scoring
    def _xgboost_margins(self, X: Any) -> dict[str, Any]:
        return {
            name: booster.inplace_predict(
                X, predict_type="margin", iteration_range=(0, self.iterations[name])
            )
            for name, booster in self.boosters.items()
        }

    def _xgboost_values(self, X: Any) -> dict[str, Any]:
        return {
            name: booster.inplace_predict(X, iteration_range=(0, self.iterations[name]))
            for name, booster in self.boosters.items()
        }

    def score(self, batch: Batch) -> dict[str, list[float]]:
        """Each head's predictions for the rows of ``batch`` (by output name)."""
        if self.forest is not None and batch.rows <= SMALL_BATCH:
            values: dict[str, list[float]] = {f.output: [] for f in self.finish.values()}
            for row in batch.X:
                margins = self.forest.margins_row(self.forest.row_values(row))
                for name, finish in self.finish.items():
                    values[finish.output].append(finish.one(margins[name]))
            out = values
        elif self.xgboost:
            values = self._xgboost_values(batch.X)
            out = {f.output: f.many(values[name]).tolist() for name, f in self.finish.items()}
        else:
            predicted = self.bundle.predict(self._frame(batch))
            return {str(c): predicted[c].tolist() for c in predicted.columns}
        if self.bundle.adjustments and batch.extras:
            out = self._adjust(out, batch)
        return out

    def _frame(self, batch: Batch) -> Any:
        return self.decoder.encoder.decode(batch.X.astype(np.float64))

    def _adjust(self, out: dict[str, list[float]], batch: Batch) -> dict[str, list[float]]:
        """The bundle's fairness offsets (:meth:`engage.model.ModelBundle.adjust`) from the request's
        protected attributes; a head whose attributes the request lacks is left as it is."""
        import pandas as pd

        heads = {n: np.asarray(out[self.finish[n].output]) for n in self.bundle.offsets if n in self.finish}
        adjusted, missing = self.bundle.adjust(heads, pd.DataFrame(batch.extras))
        changed = {self.finish[n].output: v.tolist() for n, v in adjusted.items() if n not in missing}
        return {**out, **changed}

    def _observe(self, out: Mapping[str, list[float]], batch: Batch) -> None:
        for output, values in out.items():
            observe_many(self._observers[output], values)
        self.metrics.rows.labels(self.name, "predict").observe(batch.rows)
        if self.groups is not None and batch.extras:
            self.groups.count(out, batch.extras)

    # ---------------------------------------------------------------------------------- protocols
    def answer_v1(self, batch: Batch) -> dict[str, Any]:
        started = time.perf_counter()
        out = self.score(batch)
        self._predict_time.observe(time.perf_counter() - started)
        self._observe(out, batch)
        outputs = self.outputs
        predictions = [
            dict(zip(outputs, values, strict=True)) for values in zip(*(out[o] for o in outputs), strict=True)
        ]
        ids = batch.extras.get(self.decoder.id_column) if self.decoder.id_column else None
        if ids is not None:
            for prediction, customer in zip(predictions, ids, strict=True):
                if customer is not None:
                    prediction[self.decoder.id_column] = customer  # type: ignore[index]
        if self.review is not None:
            for i, note in self.review.annotate(batch, out).items():
                predictions[i].update(note)
        return {"predictions": predictions, "model_name": self.name, "model_version": self.version}

    def answer_v2(self, batch: Batch, request_id: Any = None) -> dict[str, Any]:
        """The V2 answer, field for field as KServe's ``InferenceResponse`` serializes it (the request's
        ``id``, or a fresh UUID as KServe gives one; ``parameters`` null)."""
        started = time.perf_counter()
        out = self.score(batch)
        self._predict_time.observe(time.perf_counter() - started)
        self._observe(out, batch)
        parameters = None
        if self.review is not None:
            notes = self.review.annotate(batch, out)
            if notes:  # V2 parameters are scalars (the protocol, gRPC): one JSON text keyed by row index
                parameters = {REVIEW_PARAMETER: orjson.dumps({str(i): n for i, n in notes.items()}).decode()}
        return {
            "model_name": self.name,
            "model_version": self.version,
            "id": request_id if isinstance(request_id, str) and request_id else str(uuid.uuid4()),
            "parameters": parameters,
            "outputs": [
                {"name": o, "shape": [batch.rows], "datatype": "FP64", "parameters": None, "data": out[o]}
                for o in self.outputs
            ],
        }

    def v1_route(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        if self.tracing is not None:
            return self._traced(body, v2=False)
        answer = orjson.dumps(self.answer_v1(self.decoder.v1(_loads(body))))
        if self.events is not None:
            self.events.log(body, answer)
        return 200, answer

    def v2_route(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        if self.tracing is not None:
            return self._traced(body, v2=True)
        payload = _loads(body)
        batch = self.decoder.v2(payload)
        answer = orjson.dumps(self.answer_v2(batch, payload.get("id")))
        if self.events is not None:
            self.events.log(body, answer)
        return 200, answer

    def _traced(self, body: bytes, *, v2: bool) -> tuple[int, bytes]:
        """A fast route when tracing is on: the same work, its phases timed (decode, predict, encode:
        child spans of the request's span when its trace is exported) and the trace passed on to the
        logger's events."""
        tracing = self.tracing
        assert tracing is not None
        phases = Phases(tracing)
        try:
            with phases.phase("decode"):
                payload = _loads(body)
                batch = self.decoder.v2(payload) if v2 else self.decoder.v1(payload)
            tracing.annotate({ROWS: batch.rows})
            with phases.phase("predict", {ROWS: batch.rows}):
                out = self.answer_v2(batch, payload.get("id")) if v2 else self.answer_v1(batch)
            with phases.phase("encode"):
                answer = orjson.dumps(out)
        finally:
            phases.finish()
        if self.events is not None:
            self.events.log(body, answer, tracing.inject())
        return 200, answer

    def routes(self) -> list[FastRoute]:
        return [
            FastRoute(f"/v1/models/{self.name}:predict", "predict", self.v1_route),
            FastRoute(f"/v2/models/{self.name}/infer", "infer", self.v2_route),
        ]

    def validate(self, payload: Any) -> Any:
        """KServe's own shape checks, left to :meth:`predict`: it refuses what the fast routes refuse,
        with the same answer (KServe's would say less, and differently)."""
        return payload

    def predict(self, payload: Any, headers: Mapping[str, str] | None = None) -> Any:
        """KServe's data plane path (gRPC, CloudEvents, binary tensors): the same checks and scores."""
        if isinstance(payload, InferRequest):
            rest, _ = payload.to_rest()
            if isinstance(rest, bytes | bytearray):
                rest = _loads(bytes(rest))
            try:
                batch = self.decoder.v2(rest)
            except RequestRejected as e:
                if not payload.from_grpc:
                    raise
                # gRPC: KServe's interceptor turns InvalidInput into INVALID_ARGUMENT (anything else: INTERNAL)
                raise InvalidInput(orjson.dumps(e.to_json()).decode()) from None
            return InferResponse.from_rest(self.answer_v2(batch, payload.id))
        if isinstance(payload, bytes | bytearray):
            payload = _loads(bytes(payload))
        return self.answer_v1(self.decoder.v1(payload))

    def explain(self, payload: Any, headers: Mapping[str, str] | None = None) -> Any:
        """``:explain`` is the explainer's (KServe's base model would answer 501 here)."""
        raise not_served(":explain", "predictor", "explanations come from the explainer (engage-explainer)")


def _loads(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise RequestRejected(
            f"the body is not valid JSON: {e}", status=400, reason="malformed_json"
        ) from None


def _probe_rows(split_points: Mapping[int, list[float]], encoder: Any, rows: int) -> Any:
    """Rows that reach many leaves: values on and around the models' own split points, some missing,
    every category and an unseen one. Seeded: the same model always gets the same probe."""
    rng = np.random.default_rng(0)
    width = encoder.width
    points = [split_points.get(j, []) for j in range(width)]
    X = np.empty((rows, width), dtype=np.float32)
    for j in range(width):
        if j in encoder.categorical:
            levels = len(encoder.categorical[j])
            X[:, j] = rng.integers(0, levels + 1, rows)  # levels itself: a code no tree lists
        elif points[j]:
            base = rng.choice(np.asarray(points[j]), rows)
            X[:, j] = base + rng.choice([-1e-3, 0.0, 1e-3, -1.0, 1.0], rows)
        else:
            X[:, j] = rng.normal(size=rows)
        X[rng.random(rows) < 0.1, j] = np.nan
    return X
