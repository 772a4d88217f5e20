"""The on-disk buffer: a SQLite queue of datums, written before they are sent, deleted once accepted.

A datum enters the ``queue`` table when it is scraped and leaves it only after the ``PutMetricData`` call
that carried it succeeded, in one transaction per call. A process that is killed leaves the queue on
disk and the next one resumes from it. Past ``max_datums`` rows the oldest are deleted and counted
(``state.dropped_buffer_full``). One process at a time owns a buffer (an exclusive ``flock`` on
``<buffer>.lock``; the kernel releases it when the owner dies, even by SIGKILL).

The ``state`` table keeps the persistent counters (enqueued, sent, calls, throttled, retries, dropped_*)
and the time of the last scrape, so a restart neither
scrapes the same evaluation time again nor forgets what was dropped.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import IO

from engage.errors import ConfigError

from ._datum import Datum

__all__ = ["Buffer"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    metric TEXT NOT NULL,
    dimensions TEXT NOT NULL,
    timestamp REAL NOT NULL,
    value REAL NOT NULL,
    unit TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value REAL NOT NULL);
"""


class Buffer:
    """The queue at ``path`` holding at most ``max_datums`` datums."""

    def __init__(self, path: Path, max_datums: int) -> None:
        import fcntl

        self.path = path
        self.max_datums = max_datums
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._lock: IO[bytes] = open(path.with_name(path.name + ".lock"), "wb")  # noqa: SIM115
        except OSError as e:
            raise ConfigError(f"buffer {path}: cannot be created: {e.strerror or e}") from None
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise ConfigError(f"buffer {path}: another bridge is using it (one bridge per buffer)") from None
        try:
            self._db = sqlite3.connect(path, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as e:
            self._lock.close()
            raise ConfigError(f"buffer {path}: not a usable SQLite file: {e}") from None

    def close(self) -> None:
        self._db.close()
        self._lock.close()

    def __enter__(self) -> Buffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- state -----------------------------------------------------------------------------------------
    def get(self, key: str, default: float = 0.0) -> float:
        row = self._db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return float(row[0]) if row else default

    def _add(self, key: str, amount: float) -> None:
        self._db.execute(
            "INSERT INTO state (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = value + excluded.value",
            (key, amount),
        )

    def set(self, key: str, value: float) -> None:
        self._db.execute(
            "INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def counters(self) -> dict[str, float]:
        return dict(self._db.execute("SELECT key, value FROM state ORDER BY key").fetchall())

    # --- queue -----------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM queue").fetchone()[0])

    def put(self, datums: list[Datum], scraped_at: float | None = None) -> tuple[int, int]:
        """Queue ``datums`` (one transaction, with the scrape time when given); returns (added, dropped):
        the oldest rows past the bound are deleted in the same transaction and counted."""
        with self._transaction():
            before = self._db.total_changes
            self._db.executemany(
                "INSERT INTO queue (metric, dimensions, timestamp, value, unit) VALUES (?, ?, ?, ?, ?)",
                [
                    (d.metric, json.dumps(d.dimensions, separators=(",", ":")), d.timestamp, d.value, d.unit)
                    for d in datums
                ],
            )
            added = self._db.total_changes - before
            excess = len(self) - self.max_datums
            dropped = 0
            if excess > 0:
                self._db.execute(
                    "DELETE FROM queue WHERE id IN (SELECT id FROM queue ORDER BY id LIMIT ?)", (excess,)
                )
                dropped = excess
                self._add("dropped_buffer_full", dropped)
            self._add("enqueued", added)
            if scraped_at is not None:
                self.set("last_scrape", scraped_at)
        return added, dropped

    def oldest(self, limit: int) -> list[tuple[int, Datum]]:
        rows = self._db.execute(
            "SELECT id, metric, dimensions, timestamp, value, unit FROM queue ORDER BY id LIMIT ?", (limit,)
        ).fetchall()
        return [
            (row[0], Datum(row[1], tuple((n, v) for n, v in json.loads(row[2])), row[3], row[4], row[5]))
            for row in rows
        ]

    def delete(self, ids: list[int], counter: str = "sent") -> None:
        """Remove rows ``ids`` (a call accepted them, or they were dropped) and count them under ``counter``."""
        with self._transaction():
            self._db.executemany("DELETE FROM queue WHERE id = ?", [(i,) for i in ids])
            self._add(counter, len(ids))

    def count(self, counter: str, amount: float) -> None:
        with self._transaction():
            self._add(counter, amount)

    def _transaction(self) -> _Tx:
        return _Tx(self._db)


class _Tx:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
