"""``engage cloudwatch-bridge``'s body: settings to a running bridge, signals, the final summary line."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType

from ._bridge import Bridge, Stats
from ._buffer import Buffer
from ._mapping import Mapping, load_mapping
from ._publish import make_client
from ._settings import CloudWatchSettings

__all__ = ["DEFAULT_MAPPING_FILE", "resolve_mapping", "run"]

log = logging.getLogger("engage.cloudwatch")

#: read when no mapping is set and the file exists (a source checkout, or a ConfigMap mounted there)
DEFAULT_MAPPING_FILE = Path("monitoring/cloudwatch/bridge.yml")


def resolve_mapping(settings: CloudWatchSettings) -> Mapping:
    if settings.mapping is not None:
        return load_mapping(settings.mapping)
    return load_mapping(DEFAULT_MAPPING_FILE if DEFAULT_MAPPING_FILE.is_file() else None)


def run(settings: CloudWatchSettings, *, once: bool) -> tuple[Stats, int]:
    """Run the bridge (one tick with ``once``, else until SIGTERM / SIGINT); returns its stats and the
    datums left in the buffer. Errors are :class:`~engage.errors.EngageError` with one-line messages."""
    mapping = resolve_mapping(settings)
    client = make_client(settings)  # region and credentials are checked before anything is scraped
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        log.info("%s: stopping after the current call", signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        with Buffer(settings.buffer_path, settings.buffer_max_datums) as buffer:
            bridge = Bridge(settings, mapping, buffer, client, stop=stop)
            if settings.metrics_port:
                from prometheus_client import start_http_server

                start_http_server(
                    settings.metrics_port, addr=settings.metrics_address, registry=bridge.registry
                )
            if len(buffer):
                log.info("resuming: %d datums in the buffer %s", len(buffer), buffer.path)
            if once:
                bridge.run_once()
            else:
                bridge.run_forever()
            return bridge.stats, len(buffer)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
