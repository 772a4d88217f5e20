"""The event store: the predictor's logged requests and responses, one row per scored customer, in Parquet.

The drift detector (``--event_store URI``) pairs each request with its response (KServe's logger sends
both with one ``ce-id``) and appends one row per scored customer to an :class:`EventStore`; it writes a
buffer whole, one file per flush, under ``<URI>/date=YYYY-MM-DD/events-<ms>-<id>.parquet`` (local: a
temporary file renamed into place; object storage: one upload). :func:`read_events` reads them back.

Columns: ``event_id`` (the ce-id), ``row`` (the row's index in its request), ``event_time`` (UTC),
``model_name``, ``model_version``, ``customer_id``, the protected attributes and model inputs the request
carried (their contract names, values as sent), and ``prediction__<output>`` per head
(``prediction__churn_probability``, ...).
"""

from __future__ import annotations

import io
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from engage.errors import DataError, StorageError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["BASE_COLUMNS", "PREDICTION_PREFIX", "EventStore", "pair_rows", "read_events"]

log = logging.getLogger("engage.feedback.store")

PREDICTION_PREFIX = "prediction__"
BASE_COLUMNS = ("event_id", "row", "event_time", "model_name", "model_version", "customer_id")
#: request halves waiting for their response (and the reverse): the oldest are dropped past this
MAX_PENDING = 10_000


# ---- one request/response pair -> rows ------------------------------------------------------------------


def _request_columns(payload: Any, inputs: Sequence[str]) -> tuple[int, dict[str, list[Any]]]:
    """Rows and columns of a V1 (``instances``), V2 (``inputs``: a tensor per column, or one
    ``[rows, features]`` tensor in ``inputs`` order) or plain (a list of row objects) request."""
    if (
        isinstance(payload, Mapping)
        and isinstance(payload.get("inputs"), list)
        and payload["inputs"]
        and all(isinstance(t, Mapping) and "data" in t for t in payload["inputs"])
    ):
        tensors = {str(t.get("name")): t for t in payload["inputs"]}
        if len(tensors) == 1:
            (tensor,) = tensors.values()
            shape = tensor.get("shape") or []
            if len(shape) == 2 and shape[1] == len(inputs) and len(inputs) > 1:
                flat = list(tensor["data"])
                width = len(inputs)
                rows = len(flat) // width
                return rows, {n: flat[j::width][:rows] for j, n in enumerate(inputs)}
        columns = {name: list(_flatten(t["data"])) for name, t in tensors.items()}
        return (len(next(iter(columns.values()))) if columns else 0), columns
    rows_in = payload.get("instances", payload.get("inputs")) if isinstance(payload, Mapping) else payload
    if not isinstance(rows_in, list):
        raise ValueError("not a V1, V2 or plain-rows request")
    names = {k for r in rows_in if isinstance(r, Mapping) for k in r}
    return len(rows_in), {
        n: [r.get(n) if isinstance(r, Mapping) else None for r in rows_in] for n in sorted(names)
    }


def _flatten(data: Any) -> list[Any]:
    out: list[Any] = []
    for v in data:
        if isinstance(v, list):
            out.extend(_flatten(v))
        else:
            out.append(v)
    return out


def _response_columns(payload: Any, outputs: Sequence[str]) -> dict[str, list[Any]]:
    if isinstance(payload, Mapping) and isinstance(payload.get("outputs"), list):
        return {
            str(t["name"]): _flatten(t.get("data") or [])
            for t in payload["outputs"]
            if isinstance(t, Mapping) and t.get("name") in outputs
        }
    if isinstance(payload, Mapping) and isinstance(payload.get("predictions"), list):
        rows = [p if isinstance(p, Mapping) else {} for p in payload["predictions"]]
        return {o: [p.get(o) for p in rows] for o in outputs if any(o in p for p in rows)}
    raise ValueError("not a V1 or V2 predictor answer")


def pair_rows(
    event_id: str,
    request: Any,
    response: Any,
    *,
    columns: Sequence[str],
    inputs: Sequence[str],
    outputs: Sequence[str],
    id_column: str | None,
    model_name: str,
    at: datetime | None = None,
) -> dict[str, list[Any]]:
    """The store's columns for one request and its response: one entry a scored row. ``columns``: the
    request columns kept (id, protected, inputs); ``inputs``: the model inputs in order (a V2 matrix);
    ``outputs``: the prediction outputs. ``ValueError`` when the two do not fit together."""
    rows, sent = _request_columns(request, inputs)
    predicted = _response_columns(response, outputs)
    if any(len(v) != rows for v in predicted.values()):
        raise ValueError(f"the answer's predictions do not match the request's {rows} rows")
    version = str(response.get("model_version") or "") if isinstance(response, Mapping) else ""
    name = str(response.get("model_name") or model_name) if isinstance(response, Mapping) else model_name
    ids = sent.get(id_column) if id_column else None
    if ids is None and id_column and isinstance(response, Mapping):  # V1 answers echo the id
        answers = response.get("predictions")
        if isinstance(answers, list):
            ids = [p.get(id_column) if isinstance(p, Mapping) else None for p in answers]
    stamp = at or datetime.now(UTC)
    out: dict[str, list[Any]] = {
        "event_id": [event_id] * rows,
        "row": list(range(rows)),
        "event_time": [stamp] * rows,
        "model_name": [name] * rows,
        "model_version": [version] * rows,
        "customer_id": [None if v is None else str(v) for v in ids] if ids else [None] * rows,
    }
    for c in columns:
        if c != id_column:
            out[c] = list(sent[c]) if c in sent and len(sent[c]) == rows else [None] * rows
    for o in outputs:
        values = predicted.get(o, [None] * rows)
        out[PREDICTION_PREFIX + o] = [float(v) if isinstance(v, int | float) else None for v in values]
    return out


# ---- the writer -----------------------------------------------------------------------------------------


def _arrow_table(columns: Mapping[str, list[Any]]) -> Any:
    import pyarrow as pa

    arrays = {}
    for name, values in columns.items():
        if name == "event_time":
            arrays[name] = pa.array(values, type=pa.timestamp("us", tz="UTC"))
            continue
        try:
            arrays[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):  # mixed types as sent: keep them as text
            arrays[name] = pa.array([None if v is None else str(v) for v in values], type=pa.string())
    return pa.table(arrays)


class EventStore:
    """Buffered appends of scored rows to Parquet files under ``uri`` (any fsspec URI).

    :meth:`add` takes each half of a pair (``kind`` ``request`` or ``response``); a completed pair's rows
    join the buffer, written as one file when it holds ``flush_rows`` rows, after ``flush_seconds``
    (a background thread), and at :meth:`close`. ``on_failure(exc)`` is told of every failed write or
    pair (the detector counts them); a failure is logged once, and never raised to the caller of
    :meth:`add` (the buffer of a failed write is dropped, so memory stays bounded)."""

    def __init__(
        self,
        uri: str,
        *,
        model_name: str,
        columns: Sequence[str],
        inputs: Sequence[str],
        outputs: Sequence[str],
        id_column: str | None,
        flush_rows: int = 5_000,
        flush_seconds: float = 60.0,
        on_failure: Callable[[BaseException], None] | None = None,
    ) -> None:
        import fsspec  # type: ignore[import-untyped]

        self.uri = uri
        self.fs, self.root = fsspec.core.url_to_fs(uri)
        self.model_name = model_name
        self.columns, self.inputs, self.outputs = list(columns), list(inputs), list(outputs)
        self.id_column = id_column
        self.flush_rows, self.flush_seconds = flush_rows, flush_seconds
        self.on_failure = on_failure
        self.files_written = 0
        self.rows_written = 0
        self._pending: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._buffer: dict[str, list[Any]] = {}
        self._buffered = 0
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._warned = False
        self._flushed_at = time.monotonic()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._tick, name="engage-event-store", daemon=True)
        self._thread.start()

    # ---- appending --------------------------------------------------------------------------------------

    def add(self, kind: str, event_id: str | None, payload: Any, at: datetime | None = None) -> int:
        """One half of a pair; returns the rows the pair added (0 until both halves are here)."""
        try:
            if not event_id or kind not in ("request", "response"):
                return 0
            other = "response" if kind == "request" else "request"
            with self._lock:
                partner = self._pending.pop((event_id, other), None)
                if partner is None:
                    self._pending[(event_id, kind)] = payload
                    while len(self._pending) > MAX_PENDING:
                        self._pending.popitem(last=False)
                    return 0
            request, response = (payload, partner) if kind == "request" else (partner, payload)
            rows = pair_rows(
                event_id,
                request,
                response,
                columns=self.columns,
                inputs=self.inputs,
                outputs=self.outputs,
                id_column=self.id_column,
                model_name=self.model_name,
                at=at,
            )
            n = len(rows["event_id"])
            with self._lock:
                for name, values in rows.items():
                    self._buffer.setdefault(name, [None] * self._buffered).extend(values)
                self._buffered += n
                for values in self._buffer.values():  # a column an earlier pair lacked
                    if len(values) < self._buffered:
                        values.extend([None] * (self._buffered - len(values)))
                full = self._buffered >= self.flush_rows
            if full:
                self.flush()
            return n
        except Exception as e:  # the store never fails ingestion
            self._failed(e)
            return 0

    # ---- writing ----------------------------------------------------------------------------------------

    def flush(self) -> int:
        """Write the buffer as one file; returns the rows written (0: nothing buffered, or the write failed)."""
        with self._write_lock:
            with self._lock:
                buffer, n = self._buffer, self._buffered
                self._buffer, self._buffered = {}, 0
            self._flushed_at = time.monotonic()
            if not n:
                return 0
            try:
                self._write(buffer)
            except Exception as e:
                self._failed(e)
                return 0
            self.files_written += 1
            self.rows_written += n
            return n

    def _write(self, buffer: Mapping[str, list[Any]]) -> None:
        import pyarrow.parquet as pq
        from fsspec.implementations.local import LocalFileSystem  # type: ignore[import-untyped]

        now = datetime.now(UTC)
        folder = f"{self.root.rstrip('/')}/date={now:%Y-%m-%d}"
        name = f"events-{int(now.timestamp() * 1000)}-{uuid.uuid4().hex[:8]}.parquet"
        sink = io.BytesIO()
        pq.write_table(_arrow_table(buffer), sink)
        data = sink.getvalue()
        if isinstance(self.fs, LocalFileSystem):  # whole or not at all: a temporary file renamed into place
            self.fs.makedirs(folder, exist_ok=True)
            temporary = f"{folder}/.{name}.tmp"
            with self.fs.open(temporary, "wb") as f:
                f.write(data)
            self.fs.mv(temporary, f"{folder}/{name}")
        else:  # object storage: one upload is one object
            self.fs.pipe_file(f"{folder}/{name}", data)

    def _failed(self, e: BaseException) -> None:
        if self.on_failure is not None:
            self.on_failure(e)
        if not self._warned:
            self._warned = True
            log.warning(
                "event store %s: %s: %s (counted in engage_event_store_failures_total; logged once)",
                self.uri,
                type(e).__name__,
                e,
            )

    def _tick(self) -> None:
        while not self._stopped.wait(min(self.flush_seconds, 1.0)):
            if self._buffered and time.monotonic() - self._flushed_at >= self.flush_seconds:
                self.flush()

    def close(self) -> None:
        """Write what is buffered and stop the timer."""
        self._stopped.set()
        self.flush()


# ---- the reader -----------------------------------------------------------------------------------------


def _day(path: str) -> date | None:
    for part in path.split("/"):
        if part.startswith("date="):
            try:
                return date.fromisoformat(part[5:])
            except ValueError:
                return None
    return None


def read_events(uri: str, since: datetime | None = None, until: datetime | None = None) -> pd.DataFrame:
    """Every stored row with ``since <= event_time < until`` (UTC; either may be None), oldest first.

    Only the day folders the range touches are read. :class:`StorageError` when the store cannot be
    read; :class:`DataError` when it holds no event file in the range."""
    import fsspec  # type: ignore[import-untyped,unused-ignore]
    import pandas as pd
    import pyarrow.parquet as pq

    since = since.astimezone(UTC) if since is not None else None
    until = until.astimezone(UTC) if until is not None else None
    try:
        fs, root = fsspec.core.url_to_fs(uri)
        paths = sorted(fs.glob(f"{root.rstrip('/')}/date=*/*.parquet"))
    except (OSError, ValueError) as e:
        raise StorageError(f"event store {uri}: cannot list it: {e}") from e
    first = since.date() if since is not None else None
    last = (until - timedelta(microseconds=1)).date() if until is not None else None
    chosen = []
    for p in paths:
        name = p.rsplit("/", 1)[-1]
        day = _day(p)
        if name.startswith((".", "_")) or day is None:
            continue
        if (first is not None and day < first) or (last is not None and day > last):
            continue
        chosen.append(p)
    if not chosen:
        window = f" between {since or 'the start'} and {until or 'now'}" if since or until else ""
        raise DataError(
            f"event store {uri}: no event files{window} (is the drift detector's --event_store on?)"
        )
    frames = []
    for p in chosen:
        try:
            with fs.open(p, "rb") as f:
                frames.append(pq.read_table(f).to_pandas())
        except (OSError, ValueError) as e:
            raise StorageError(f"event store {uri}: cannot read {p}: {e}") from e
    events = pd.concat(frames, ignore_index=True)
    events["event_time"] = pd.to_datetime(events["event_time"], utc=True)
    keep = pd.Series(True, index=events.index)
    if since is not None:
        keep &= events["event_time"] >= pd.Timestamp(since)
    if until is not None:
        keep &= events["event_time"] < pd.Timestamp(until)
    chosen_rows: pd.DataFrame = events[keep]
    return chosen_rows.sort_values(["event_time", "event_id", "row"], kind="stable").reset_index(drop=True)
