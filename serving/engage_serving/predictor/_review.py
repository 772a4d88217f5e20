"""Human-review routing of the predictor (``--review true``): edge cases to the review queue, opted-out
customers flagged, reviewers' overrides returned with the customer's next prediction.

For the rows of a request that carry the contract's customer id:

- a customer who **opted out** of automated decisions: the prediction is still computed and returned,
  flagged ``"automated": false`` and ``"review": {"status": "pending", "reason": "opted_out"}``: the
  caller must not act on it before a person has decided; an ``opted_out`` item is queued;
- a classification head's probability within ``--review_band`` of its **decision threshold** (the
  bundle's, where its metadata states one; else 0.5, the promotion policy's default): ``near_threshold``;
- a numeric feature more than ``--review_outlier_z`` robust deviations from the training median
  (``|x - median| > z * IQR / 1.349``, from the drift reference's ``summary.json`` quantiles, read once
  at load): ``outlier``;
- an override a reviewer decided and nobody received yet: returned once, with the first row of that
  customer (``"override": {output: value, ..., "review_id", "reason", "decided_at"}``), marked delivered
  in the same moment (a conditional update: two requests at once cannot both get it).

One read transaction a request asks for opt-outs and overrides together; an override claimed is one
write. Edge items go to the queue on a background thread (one bulk insert for what the requests of the
moment found; a customer already pending for that reason is not queued twice).

The database being down never fails a prediction: the rows are answered, flagged
``"review": {"status": "unchecked", "reason": "governance_unavailable"}``, one WARNING is logged per
outage (no customer value in it), ``engage_review_failures_total{step}`` counts what was skipped, and
the database is tried again after a back-off (1 s, doubling to 60 s).
"""

from __future__ import annotations

import atexit
import functools
import json
import logging
import math
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from engage.governance import NewReviewItem, ReviewQueue

__all__ = [
    "DEFAULT_THRESHOLD",
    "OutlierBounds",
    "ReviewRouting",
    "decision_thresholds",
    "near_threshold",
    "outlier_bounds",
]

log = logging.getLogger("engage_serving.predictor")

#: a classifier's decision threshold when the bundle states none (the promotion policy's default)
DEFAULT_THRESHOLD = 0.5
#: IQR / 1.349 is the standard deviation of a normal distribution: the "robust deviation"
IQR_TO_SIGMA = 1.349
#: (q99 - q01) / 4.653 is it too: the fallback for a feature whose middle half is one value
TAILS_TO_SIGMA = 4.653
MIN_BACKOFF, MAX_BACKOFF = 1.0, 60.0
#: batches of edge items waiting for the writer thread; above, new ones are dropped (and counted)
QUEUE_BOUND = 1_000
#: how long a normal stop waits for the writer to store what is still queued
FLUSH_SECONDS = 5.0
UNCHECKED = {"status": "unchecked", "reason": "governance_unavailable"}
#: the order reasons are named in (the first is ``review.reason``)
REASONS = ("opted_out", "near_threshold", "outlier")
#: the ``step`` label values of ``engage_review_failures_total``
FAILURE_STEPS = ("lookup", "deliver", "skipped", "enqueue", "dropped")


@dataclass(frozen=True)
class OutlierBounds:
    """Per numeric model input (by its column in the encoded matrix): the training median and the
    robust deviation a value may stray ``z`` times from."""

    columns: npt.NDArray[np.intp]
    names: list[str]
    median: npt.NDArray[np.float64]
    scale: npt.NDArray[np.float64]

    def flags(self, X: npt.NDArray[Any], z: float) -> dict[int, list[str]]:
        """Row -> the features of that row beyond ``z`` robust deviations (rows without any left out)."""
        if not len(self.columns):
            return {}
        values = np.asarray(X[:, self.columns], dtype=np.float64)
        with np.errstate(invalid="ignore"):
            beyond = np.abs(values - self.median) > z * self.scale  # NaN (missing) is never beyond
        return {
            int(i): [self.names[j] for j in np.flatnonzero(beyond[i])] for i in np.flatnonzero(beyond.any(1))
        }


def outlier_bounds(
    names: Sequence[str], categorical: Mapping[int, Any], reference_dir: Path | None
) -> OutlierBounds | None:
    """The bounds of the numeric inputs from the training reference's summary (``stats.<feature>.
    quantiles``: q01, q25, q50, q75, q99), computed from ``reference.parquet`` where the summary lacks
    them; None when there is no reference."""
    if reference_dir is None:
        return None
    summary_file = reference_dir / "summary.json"
    try:
        stats = json.loads(summary_file.read_text(encoding="utf-8")).get("stats") or {}
    except (OSError, ValueError, AttributeError):
        stats = {}
    numeric = [(j, n) for j, n in enumerate(names) if j not in categorical]
    quantiles = {n: stats[n]["quantiles"] for _, n in numeric if _quantiles(stats.get(n))}
    missing = [n for _, n in numeric if n not in quantiles]
    if missing and (reference_dir / "reference.parquet").is_file():
        quantiles.update(_reference_quantiles(reference_dir / "reference.parquet", missing))
    columns, kept, median, scale = [], [], [], []
    for j, name in numeric:
        q = quantiles.get(name)
        if not q:
            continue
        q01, q25, q50, q75, q99 = (float(v) for v in q)
        sigma = (q75 - q25) / IQR_TO_SIGMA or (q99 - q01) / TAILS_TO_SIGMA
        if sigma > 0 and math.isfinite(sigma) and math.isfinite(q50):
            columns.append(j)
            kept.append(name)
            median.append(q50)
            scale.append(sigma)
    return OutlierBounds(
        np.asarray(columns, dtype=np.intp),
        kept,
        np.asarray(median, dtype=np.float64),
        np.asarray(scale, dtype=np.float64),
    )


def _quantiles(stat: Any) -> bool:
    q = stat.get("quantiles") if isinstance(stat, Mapping) else None
    return isinstance(q, list) and len(q) == 5 and all(isinstance(v, int | float) for v in q)


def _reference_quantiles(path: Path, names: list[str]) -> dict[str, list[float]]:
    from engage.tables import read_table

    try:
        frame = read_table(path)
    except Exception as e:  # an unreadable reference: outliers of those features are not looked for
        log.warning("review: %s unreadable (%s): outliers not looked for in it", path, type(e).__name__)
        return {}
    out: dict[str, list[float]] = {}
    for name in names:
        if name in frame.columns:
            values = frame[name].to_numpy(dtype="float64", na_value=np.nan)
            known = values[~np.isnan(values)]
            if len(known):
                out[name] = np.quantile(known, [0.01, 0.25, 0.5, 0.75, 0.99]).tolist()
    return out


def decision_thresholds(bundle: Any) -> dict[str, float]:
    """Output name -> decision threshold of each classification head: the bundle's metadata
    (``heads.<head>.decision_threshold``, else ``decision_threshold``, else the policy's
    ``fairness.decision_threshold`` where a bundle records it), else :data:`DEFAULT_THRESHOLD`."""
    metadata = _mapping(bundle.metadata)
    heads = _mapping(metadata.get("heads"))
    fairness = _mapping(_mapping(metadata.get("policy")).get("fairness"))
    found: dict[str, float] = {}
    for name, head in bundle.heads.items():
        if not head.head.classification:
            continue
        spec = _mapping(heads.get(name))
        for candidate in (
            spec.get("decision_threshold"),
            metadata.get("decision_threshold"),
            fairness.get("decision_threshold"),
        ):
            if isinstance(candidate, int | float) and 0 < candidate < 1:
                found[head.head.output] = float(candidate)
                break
        else:
            found[head.head.output] = DEFAULT_THRESHOLD
    return found


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def near_threshold(
    out: Mapping[str, Sequence[float]], thresholds: Mapping[str, float], band: float
) -> dict[int, list[str]]:
    """Row -> the outputs whose value lies within ``band`` of their threshold."""
    rows: dict[int, list[str]] = {}
    for output, threshold in thresholds.items():
        if output not in out:
            continue
        values = np.asarray(out[output], dtype=np.float64)
        for i in np.flatnonzero(np.abs(values - threshold) <= band):
            rows.setdefault(int(i), []).append(output)
    return rows


@functools.cache
def _metrics() -> tuple[Any, Any, Any]:
    """``engage_review_routed_total``, ``engage_review_overrides_delivered_total`` and
    ``engage_review_failures_total``, registered once per process."""
    from engage.telemetry import metric

    return (
        metric("engage_review_routed").create(),
        metric("engage_review_overrides_delivered").create(),
        metric("engage_review_failures").create(),
    )


class ReviewRouting:
    """The predictor's side of human review on one governance database (see the module)."""

    def __init__(
        self,
        model_name: str,
        url: str,
        *,
        band: float,
        z: float,
        thresholds: Mapping[str, float],
        outliers: OutlierBounds | None,
        encoder: Any,
        id_column: str | None,
        model_version: str,
    ) -> None:
        self.model_name = model_name
        self.url = url
        self.band = band
        self.z = z
        self.thresholds = dict(thresholds)
        self.outliers = outliers
        self.encoder = encoder
        self.id_column = id_column
        self.model_version = model_version or None
        self._queue: ReviewQueue | None = None
        self._lock = threading.Lock()
        self._down = False
        self._retry_at = 0.0
        self._backoff = MIN_BACKOFF
        self._pending: queue.Queue[list[NewReviewItem]] = queue.Queue(QUEUE_BOUND)
        self._writer: threading.Thread | None = None
        self._routed, self._delivered, self._failures = _metrics()
        # every series exists from the start (at 0): a rate() or an alert has a baseline before the first
        for reason in REASONS:
            self._routed.labels(model_name, reason)
        self._delivered.labels(model_name)
        for step in FAILURE_STEPS:
            self._failures.labels(model_name, step)

    # ---------------------------------------------------------------------------------- the database
    def connect(self) -> ReviewQueue | None:
        """The queue, opening (and migrating) the database on first use; None while it is down and its
        back-off runs."""
        if self._queue is not None:
            return self._queue
        with self._lock:
            if self._queue is not None:
                return self._queue
            if time.monotonic() < self._retry_at:
                return None
            try:
                from engage.governance import ReviewQueue, open_database

                self._queue = ReviewQueue(open_database(self.url))
            except Exception as e:
                self._failed(e)
                return None
        self._recovered()
        return self._queue

    def _failed(self, error: BaseException) -> None:
        """One WARNING an outage (the error's message names the database, never its password; the
        message of anything but our own errors is left out: it might hold a value)."""
        from engage.errors import EngageError

        first = not self._down
        self._down = True
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, MAX_BACKOFF)
        if first:
            what = error.message if isinstance(error, EngageError) else type(error).__name__
            if isinstance(error, OSError):
                what = f"{type(error).__name__} (errno {error.errno})"
            log.warning(
                "governance database unavailable: predictions are answered without human-review routing "
                "(flagged unchecked) until it answers again: %s",
                what,
            )

    def _recovered(self) -> None:
        if self._down:
            self._down = False
            self._backoff = MIN_BACKOFF
            log.info("governance database answers again: human-review routing resumed")

    def _usable(self) -> ReviewQueue | None:
        q = self.connect()
        if q is not None and self._down and time.monotonic() < self._retry_at:
            return None  # open, but failing: wait out the back-off
        return q

    # ---------------------------------------------------------------------------------- a request
    def annotate(self, batch: Any, out: Mapping[str, Sequence[float]]) -> dict[int, dict[str, Any]]:
        """Row index -> what to add to that row's prediction (only rows with something to say)."""
        ids = batch.extras.get(self.id_column) if self.id_column else None
        if not ids:
            return {}
        rows = [(i, str(c)) for i, c in enumerate(ids) if c is not None and str(c) != ""]
        if not rows:
            return {}
        q = self._usable()
        if q is None:
            self._failures.labels(self.model_name, "skipped").inc()
            return {i: {"review": dict(UNCHECKED)} for i, _ in rows}
        customers = sorted({c for _, c in rows})
        try:
            found = q.lookup(customers)
        except Exception as e:
            self._failures.labels(self.model_name, "lookup").inc()
            self._failed(e)
            return {i: {"review": dict(UNCHECKED)} for i, _ in rows}
        self._recovered()
        overrides = self._claim(q, found.overrides)
        flags: dict[int, dict[str, list[str]]] = {}
        for i, outputs in near_threshold(out, self.thresholds, self.band).items():
            flags.setdefault(i, {})["near_threshold"] = outputs
        if self.outliers is not None:
            for i, features in self.outliers.flags(batch.X, self.z).items():
                flags.setdefault(i, {})["outlier"] = features
        answer: dict[int, dict[str, Any]] = {}
        items: list[NewReviewItem] = []
        given: set[str] = set()
        for i, customer in rows:
            reasons = dict(flags.get(i, {}))
            if customer in found.opted_out:
                reasons["opted_out"] = []
            named = [r for r in REASONS if r in reasons]
            note: dict[str, Any] = {}
            if "opted_out" in reasons:
                note["automated"] = False
            if named:
                note["review"] = {"status": "pending", "reason": named[0], "reasons": named}
                items.extend(self._items(batch, out, i, customer, {r: reasons[r] for r in named}))
            view = overrides.get(customer)
            if view is not None and customer not in given:
                given.add(customer)
                note["override"] = {
                    **(view.override or {}),
                    "review_id": view.id,
                    "reason": view.decision_reason,
                    "decided_at": view.to_json()["decided_at"],
                }
            if note:
                answer[i] = note
        if items:
            self._enqueue(items)
        return answer

    def _claim(self, q: ReviewQueue, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """The overrides this request may return: those it marked delivered (nobody had before)."""
        if not overrides:
            return {}
        try:
            claimed = set(q.claim([v.id for v in overrides.values()]))
        except Exception as e:  # not delivered now: the next prediction of the customer gets it
            self._failures.labels(self.model_name, "deliver").inc()
            self._failed(e)
            return {}
        if claimed:
            self._delivered.labels(self.model_name).inc(len(claimed))
        return {c: v for c, v in overrides.items() if v.id in claimed}

    def _items(
        self,
        batch: Any,
        out: Mapping[str, Sequence[float]],
        i: int,
        customer: str,
        reasons: dict[str, list[str]],
    ) -> list[NewReviewItem]:
        from engage.governance import NewReviewItem

        features = self.encoder.values(batch.X[i : i + 1])[0]
        prediction = {o: float(v[i]) for o, v in out.items()}
        items = []
        for reason, about in reasons.items():
            self._routed.labels(self.model_name, reason).inc()
            items.append(
                NewReviewItem(
                    source="edge",
                    reason=reason,
                    customer_id=customer,
                    features=features,
                    prediction=prediction,
                    model_version=self.model_version,
                    stratum=",".join(about)[:256] or None,  # the outputs near, the features beyond
                )
            )
        return items

    # ---------------------------------------------------------------------------------- the writer
    def _enqueue(self, items: list[NewReviewItem]) -> None:
        try:
            self._pending.put_nowait(items)
        except queue.Full:
            self._failures.labels(self.model_name, "dropped").inc(len(items))
            return
        if self._writer is None:
            with self._lock:
                if self._writer is None:
                    self._writer = threading.Thread(
                        target=self._write_forever, name="engage-review-writer", daemon=True
                    )
                    self._writer.start()
                    # a normal stop (SIGTERM, after the drain) writes what is still queued
                    atexit.register(self.flush, FLUSH_SECONDS)

    def _write_forever(self) -> None:
        while True:
            items = self._pending.get()
            taken = 1
            while True:  # what the requests of the moment found: one insert
                try:
                    items.extend(self._pending.get_nowait())
                    taken += 1
                except queue.Empty:
                    break
            try:
                self.write(items)
            finally:
                for _ in range(taken):
                    self._pending.task_done()

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the writer to have written everything queued so far; True
        when nothing is left (edge cases still queued at a kill -9 are lost: they are a sample, not a
        record, and the audit trail never depended on them)."""
        deadline = time.monotonic() + timeout
        while self._pending.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.02)
        return not self._pending.unfinished_tasks

    def write(self, items: list[NewReviewItem]) -> None:
        """Queue ``items`` now (the writer thread's work; never raises)."""
        q = self._usable()
        if q is None:
            self._failures.labels(self.model_name, "enqueue").inc()
            return
        try:
            q.add(items)
        except Exception as e:
            self._failures.labels(self.model_name, "enqueue").inc()
            self._failed(e)
