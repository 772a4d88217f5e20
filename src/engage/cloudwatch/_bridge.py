"""The bridge: scrape Prometheus, queue the datums on disk, publish them to CloudWatch.

Each tick evaluates every query of the mapping at one time ``t`` (``/api/v1/query?time=t``), turns the
samples into datums stamped ``t`` and queues them in one SQLite transaction, then flushes the queue
oldest first in batches. A batch leaves the queue only once ``PutMetricData`` accepted it.

Delivery is **at least once**: a process killed after CloudWatch accepted a batch and before the
delete committed sends that batch again when it restarts (at most one batch per crash: the one in
flight). See ``docs/cloudwatch.md`` for what a duplicate does to CloudWatch's statistics.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._buffer import Buffer
from ._datum import Datum, batches, to_datum
from ._mapping import Mapping
from ._prometheus import PrometheusUnreachable, instant_query
from ._publish import CredentialsError, DeliveryError, backoff, classify
from ._settings import MAX_BATCH_BYTES, CloudWatchSettings

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["Bridge", "Stats"]

log = logging.getLogger("engage.cloudwatch")

#: CloudWatch refuses datums older than two weeks: older ones in the buffer are dropped (``expired``)
MAX_AGE_SECONDS = 14 * 24 * 3600 - 600


@dataclass
class Stats:
    """What this process did (the buffer's ``state`` table holds the totals across restarts)."""

    scrapes: int = 0
    scrape_errors: int = 0
    enqueued: int = 0
    sent: int = 0
    calls: int = 0
    throttled: int = 0
    failed_calls: int = 0
    retries: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    fixes: Counter[str] = field(default_factory=Counter)

    def line(self, buffered: int) -> str:
        dropped = ", ".join(f"{k}={v}" for k, v in sorted(self.dropped.items())) or "none"
        fixes = ", ".join(f"{k}={v}" for k, v in sorted(self.fixes.items())) or "none"
        return (
            f"scrapes={self.scrapes} enqueued={self.enqueued} sent={self.sent} buffered={buffered} "
            f"calls={self.calls} throttled={self.throttled} failed_calls={self.failed_calls} "
            f"retries={self.retries} dropped: {dropped}; dimensions fixed: {fixes}"
        )


class _Metrics:
    """The bridge's own Prometheus metrics (served on ``metrics_port`` when set)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        from engage.telemetry import metric

        self.sent = metric("engage_cloudwatch_datums_sent").create(registry)
        self.enqueued = metric("engage_cloudwatch_datums_enqueued").create(registry)
        self.dropped = metric("engage_cloudwatch_datums_dropped").create(registry)
        self.fixes = metric("engage_cloudwatch_dimensions_fixed").create(registry)
        self.calls = metric("engage_cloudwatch_put_calls").create(registry)
        self.retries = metric("engage_cloudwatch_retries").create(registry)
        self.scrape_errors = metric("engage_cloudwatch_scrape_errors").create(registry)
        self.buffered = metric("engage_cloudwatch_buffer_datums").create(registry)


class Bridge:
    """Scrape ``mapping``'s queries from Prometheus and publish them to CloudWatch through ``buffer``."""

    def __init__(
        self,
        settings: CloudWatchSettings,
        mapping: Mapping,
        buffer: Buffer,
        client: Any,
        *,
        stop: threading.Event | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        from prometheus_client import CollectorRegistry

        self.settings = settings
        self.mapping = mapping
        self.buffer = buffer
        self.client = client
        self.stop = stop or threading.Event()
        self.stats = Stats()
        self.registry = registry or CollectorRegistry()
        self.metrics = _Metrics(self.registry)
        self.metrics.buffered.set(len(buffer))

    # --- scrape ----------------------------------------------------------------------------------------
    def scrape(self, at: float | None = None) -> int:
        """Evaluate every query at ``at`` (default: now) and queue the datums; returns how many were queued.

        A time not after the last scrape's (a restart within the same millisecond, a clock set back) is
        skipped: the buffer never holds one evaluation twice.
        """
        at = round(time.time() if at is None else at, 3)
        if at <= self.buffer.get("last_scrape", -math.inf):
            log.warning("skipped a scrape at %.3f: not after the last one", at)
            return 0
        datums: list[Datum] = []
        dropped: Counter[str] = Counter()
        fixes: Counter[str] = Counter()
        for entry in self.mapping.metrics:
            try:
                samples = instant_query(
                    self.settings.prometheus_url, entry.query, at, self.settings.timeout_seconds
                )
            except PrometheusUnreachable:
                self.stats.scrape_errors += 1
                self.metrics.scrape_errors.inc()
                raise
            for labels, ts, value in samples:
                datum = to_datum(
                    entry,
                    labels,
                    ts,
                    value,
                    exclude_labels=self.mapping.exclude_labels,
                    fixes=fixes,
                    dropped=dropped,
                )
                if datum is not None:
                    datums.append(datum)
        added, overflow = self.buffer.put(datums, scraped_at=at)
        if overflow:
            dropped["buffer_full"] += overflow
            log.warning(
                "buffer full (%d datums): dropped the %d oldest (%d dropped in total)",
                self.buffer.max_datums,
                overflow,
                int(self.buffer.get("dropped_buffer_full")),
            )
        self._count_drops(dropped, fixes)
        self.stats.scrapes += 1
        self.stats.enqueued += added
        self.metrics.enqueued.inc(added)
        self.metrics.buffered.set(len(self.buffer))
        return added

    def _count_drops(self, dropped: Counter[str], fixes: Counter[str]) -> None:
        for reason, n in dropped.items():
            self.stats.dropped[reason] += n
            self.metrics.dropped.labels(reason).inc(n)
            if reason != "buffer_full":  # the buffer counts its own
                self.buffer.count(f"dropped_{reason}", n)
        for reason, n in fixes.items():
            self.stats.fixes[reason] += n
            self.metrics.fixes.labels(reason).inc(n)
        if any(k != "buffer_full" for k in dropped) or fixes:
            log.info(
                "datums dropped %s, dimensions fixed %s",
                dict(sorted((k, v) for k, v in dropped.items() if k != "buffer_full")),
                dict(sorted(fixes.items())),
            )

    # --- flush -----------------------------------------------------------------------------------------
    def flush(self, until: float = math.inf, *, honour_stop: bool = True) -> bool:
        """Send the queue oldest first until it is empty (True), ``until`` (monotonic time) passes, the
        stop event is set (when ``honour_stop``), or a batch stalls after its retries (False; the rest stays
        queued). Raises :class:`CredentialsError` when CloudWatch refuses the credentials."""
        settings = self.settings
        while True:
            if time.monotonic() >= until or (honour_stop and self.stop.is_set()):
                return len(self.buffer) == 0
            rows = self.buffer.oldest(settings.batch_size)
            if not rows:
                return True
            fresh = self._drop_expired(rows)
            batch = next(batches(fresh, settings.batch_size, MAX_BATCH_BYTES - 4096), [])
            if batch and not self._send(batch, until, honour_stop):
                return False

    def _drop_expired(self, rows: list[tuple[int, Datum]]) -> list[tuple[int, Datum]]:
        oldest_allowed = time.time() - MAX_AGE_SECONDS
        expired = [i for i, d in rows if d.timestamp < oldest_allowed]
        if expired:
            self.buffer.delete(expired, "dropped_expired")
            self.stats.dropped["expired"] += len(expired)
            self.metrics.dropped.labels("expired").inc(len(expired))
            log.warning("dropped %d datums older than two weeks (CloudWatch refuses them)", len(expired))
        return [(i, d) for i, d in rows if d.timestamp >= oldest_allowed]

    def _send(self, batch: list[tuple[int, Datum]], until: float, honour_stop: bool) -> bool:
        """Send one batch with retries; a batch CloudWatch calls invalid is halved until the bad datums are
        alone, and those are dropped (``rejected``). False when the retries ran out or time is up."""
        pending = [batch]
        while pending:
            part = pending.pop()
            outcome = self._put_with_retries(part, until, honour_stop)
            if outcome == "ok":
                self.buffer.delete([i for i, _ in part])
                self.stats.sent += len(part)
                self.metrics.sent.inc(len(part))
                self.metrics.buffered.set(len(self.buffer))
            elif outcome == "invalid":
                if len(part) == 1:
                    self.buffer.delete([part[0][0]], "dropped_rejected")
                    self.stats.dropped["rejected"] += 1
                    self.metrics.dropped.labels("rejected").inc()
                    log.warning("CloudWatch refused the datum %r: dropped", part[0][1])
                else:
                    half = len(part) // 2
                    pending += [part[half:], part[:half]]
            else:
                return False
        return True

    def _put_with_retries(self, part: list[tuple[int, Datum]], until: float, honour_stop: bool) -> str:
        settings = self.settings
        data = [d.api(settings.storage_resolution) for _, d in part]
        for attempt in range(settings.max_retries + 1):
            if attempt:
                self.stats.retries += 1
                self.metrics.retries.inc()
                self.buffer.count("retries", 1)
            self.stats.calls += 1
            self.buffer.count("calls", 1)
            try:
                self.client.put_metric_data(Namespace=settings.namespace, MetricData=data)
            except Exception as e:
                failure = classify(e)
                if failure is None:
                    raise
                if failure.verdict == "credentials":
                    self.metrics.calls.labels("failed").inc()
                    raise CredentialsError(f"CloudWatch refused the credentials: {failure.detail}") from None
                if failure.verdict == "invalid":
                    self.metrics.calls.labels("failed").inc()
                    if len(part) == 1:
                        log.warning("PutMetricData refused one datum: %s", failure.detail)
                    return "invalid"
                if failure.verdict == "throttled":
                    self.stats.throttled += 1
                    self.buffer.count("throttled", 1)
                    self.metrics.calls.labels("throttled").inc()
                else:
                    self.stats.failed_calls += 1
                    self.metrics.calls.labels("failed").inc()
                self._last_failure = failure.detail
                if attempt == settings.max_retries:
                    break
                delay = backoff(attempt, settings.backoff_base_seconds, settings.backoff_cap_seconds)
                delay = min(delay, max(0.0, until - time.monotonic()))
                stopped = self.stop.wait(delay) if honour_stop else _sleep(delay)
                if stopped or time.monotonic() >= until:
                    return "stopped"
                continue
            self.metrics.calls.labels("ok").inc()
            return "ok"
        log.warning(
            "PutMetricData failed %d times (last: %s): %d datums stay in the buffer",
            settings.max_retries + 1,
            self._last_failure,
            len(self.buffer),
        )
        return "stalled"

    _last_failure = ""

    # --- run -------------------------------------------------------------------------------------------
    def run_once(self) -> None:
        """One scrape and a flush of the whole queue; :class:`DeliveryError` when datums remain."""
        self.scrape()
        if not self.flush():
            if self.stop.is_set():
                log.warning("stopped: %d datums stay in the buffer %s", len(self.buffer), self.buffer.path)
                return
            raise DeliveryError(
                f"CloudWatch did not accept every datum ({self._last_failure}): "
                f"{len(self.buffer)} stay in the buffer {self.buffer.path}"
            )

    def run_forever(self) -> None:
        """Scrape every ``interval_seconds`` and flush in between, until the stop event; then flush for at
        most ``stop_flush_seconds`` and leave the rest in the buffer."""
        interval = self.settings.interval_seconds
        next_tick = time.monotonic()
        while not self.stop.is_set():
            try:
                self.scrape()
            except PrometheusUnreachable as e:
                log.warning("%s: this tick is skipped, the buffer still flushes", e)
            next_tick += interval
            now = time.monotonic()
            if next_tick < now:  # a tick took longer than the interval: do not try to catch up
                next_tick = now
            self.flush(until=next_tick)
            self.stop.wait(max(0.0, next_tick - time.monotonic()))
        left = self.settings.stop_flush_seconds
        if len(self.buffer):
            self.flush(until=time.monotonic() + left, honour_stop=False)
        log.info("stopped: %d datums stay in the buffer %s", len(self.buffer), self.buffer.path)


def _sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return False
