"""``engage cloudwatch-bridge``: publish Prometheus series to CloudWatch (``engage.cloudwatch``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer


def cloudwatch_bridge(
    once: bool = typer.Option(False, "--once", help="One scrape and a flush of the buffer, then exit."),
    prometheus_url: str | None = typer.Option(
        None, "--prometheus-url", help="Prometheus' base URL ($ENGAGE_CLOUDWATCH_PROMETHEUS_URL)."
    ),
    mapping: Path | None = typer.Option(
        None,
        "--mapping",
        help="Mapping file (default: monitoring/cloudwatch/bridge.yml when present, else the built-in one).",
    ),
    namespace: str | None = typer.Option(None, "--namespace", help="CloudWatch namespace (default Engage)."),
    region: str | None = typer.Option(
        None, "--region", help="AWS region (default: boto3's, e.g. AWS_REGION)."
    ),
    endpoint_url: str | None = typer.Option(None, "--endpoint-url", help="CloudWatch endpoint (moto, VPC)."),
    interval: float | None = typer.Option(None, "--interval", help="Seconds between scrapes (default 60)."),
    buffer: Path | None = typer.Option(None, "--buffer", help="The on-disk buffer (SQLite file)."),
    print_mapping: bool = typer.Option(
        False, "--print-mapping", help="Print the mapping in effect as YAML and exit (nothing is sent)."
    ),
) -> None:
    """Read series from Prometheus and publish them to CloudWatch with PutMetricData.

    Every ENGAGE_CLOUDWATCH_* setting applies; flags win. Datums wait in an on-disk buffer until
    CloudWatch accepted them, so an outage or a restart loses nothing up to the buffer's size. Without
    --once the bridge runs until SIGTERM or Ctrl-C, then flushes what it can and keeps the rest. Prints
    one JSON line of counts at the end.
    """
    import json
    import logging

    from pydantic import ValidationError

    from engage.cloudwatch import CloudWatchSettings, mapping_yaml, resolve_mapping, run
    from engage.errors import ConfigError

    flags: dict[str, Any] = {
        "prometheus_url": prometheus_url,
        "mapping": mapping,
        "namespace": namespace,
        "region": region,
        "endpoint_url": endpoint_url,
        "interval_seconds": interval,
        "buffer_path": buffer,
    }
    try:
        settings = CloudWatchSettings(**{k: v for k, v in flags.items() if v is not None})
    except ValidationError as e:
        first = e.errors()[0]
        raise ConfigError(f"cloudwatch settings: {first['loc'][0]}: {first['msg']}") from None
    if print_mapping:
        typer.echo(mapping_yaml(resolve_mapping(settings)), nl=False)
        return
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    stats, buffered = run(settings, once=once)
    logging.getLogger("engage.cloudwatch").info(stats.line(buffered))
    summary = {
        "scrapes": stats.scrapes,
        "enqueued": stats.enqueued,
        "sent": stats.sent,
        "buffered": buffered,
        "calls": stats.calls,
        "throttled": stats.throttled,
        "failed_calls": stats.failed_calls,
        "retries": stats.retries,
        "dropped": dict(stats.dropped),
        "dimensions_fixed": dict(stats.fixes),
    }
    typer.echo(json.dumps(summary, sort_keys=True))
