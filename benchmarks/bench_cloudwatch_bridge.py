"""CloudWatch bridge benchmark: 10,000 data points round-tripped from a real Prometheus through
``engage cloudwatch-bridge`` into moto's CloudWatch (on loopback, not AWS), read back with GetMetricData.

A tiny exporter serves 1,000 gauge series (``engage:bench:value{series="s0000"…}``, value i + 1), scraped
by a real Prometheus every second. Every run is the real CLI, ``--once`` (one scrape, then a flush):

1. an outage: a proxy in front of moto answers every PutMetricData with 503; eight runs (no retries)
   each scrape 1,000 datums into the on-disk buffer and exit 2 with the datums kept;
2. CloudWatch back, with 20 % of calls throttled (seeded): a run scrapes 1,000 more and sends the
   9,000 in calls of 100; it is SIGKILLed after moto accepted its 40th call, before the bridge heard
   so (the worst moment: that batch is still in the buffer);
3. the restart: a run scrapes the last 1,000 and sends the buffer, the killed batch again.

Then every series is read back (SampleCount and Sum): lost = points scraped and never read back,
duplicates = points read back more often than scraped. Calls, throttles and retries are the buffer's
persistent counters (across all runs, the killed one included) and the proxy's own count.

    python benchmarks/bench_cloudwatch_bridge.py --out benchmarks/results/cloudwatch_bridge.json
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _results import write_results

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.cloudwatch_support import (
    ENGAGE,
    ROOT,
    Exporter,
    ThrottlingProxy,
    bridge_env,
    exposition,
    kill_when,
    moto_server,
    prometheus,
    read_back,
    wait_series,
)

SERIES = 1_000
OUTAGE_RUNS = 8
POINTS = SERIES * (OUTAGE_RUNS + 2)  # the outage's runs, the killed run, the restart
THROTTLE = 0.2
BATCH = 100  # ~110 calls, so that a 20 % throttle share is a sample, not two or three calls
KILL_AFTER_CALLS = 40
NAME = "engage:bench:value"
#: nothing lost; at most one batch twice per crash (at least once); the whole round trip in two minutes
BUDGETS = {"lost_points": 0.0, "duplicate_points": float(BATCH), "round_trip_seconds": 120.0}


def _run(env: dict[str, str]) -> tuple[int, dict[str, object], float]:
    t = time.perf_counter()
    proc = subprocess.run(
        [ENGAGE, "cloudwatch-bridge", "--once"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    elapsed = time.perf_counter() - t
    summary = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else {}
    if proc.returncode not in (0, 2):
        raise SystemExit(f"the bridge failed ({proc.returncode}): {proc.stderr}")
    return proc.returncode, summary, elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/cloudwatch_bridge.json"))
    args = parser.parse_args()
    from engage.cloudwatch import Buffer

    with tempfile.TemporaryDirectory() as tmp_name, moto_server() as moto:
        tmp = Path(tmp_name)
        exporter = Exporter()
        proxy = ThrottlingProxy(moto, throttle=THROTTLE, seed=17)
        try:
            series = [({"series": f"s{i:04d}"}, float(i + 1)) for i in range(SERIES)]
            exporter.text = exposition({NAME: series})
            with prometheus(tmp, exporter) as prom:
                wait_series(prom, f'{{__name__="{NAME}"}}', SERIES)
                buffer = tmp / "buffer.sqlite3"
                settings = {
                    "prometheus_url": prom,
                    "endpoint_url": proxy.url,
                    "buffer_path": buffer,
                    "batch_size": BATCH,
                    "backoff_base_seconds": 0.05,
                    "backoff_cap_seconds": 2,
                }
                t0 = time.perf_counter()
                proxy.down = True
                for _ in range(OUTAGE_RUNS):
                    code, _, _ = _run(bridge_env(**settings, max_retries=0))
                    assert code == 2, "the outage run should keep its datums and exit 2"
                outage_seconds = time.perf_counter() - t0
                outage_calls = proxy.log.calls
                with Buffer(buffer, 10**7) as b:
                    buffered_after_outage = len(b)

                proxy.down = False
                env = bridge_env(**settings, max_retries=10)
                holder: dict[str, subprocess.Popen[bytes]] = {}
                proxy.on_accepted = kill_when(holder, accepted_calls=KILL_AFTER_CALLS)
                t1 = time.perf_counter()
                holder["bridge"] = subprocess.Popen(
                    [ENGAGE, "cloudwatch-bridge", "--once"],
                    env=env,
                    cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                killed_code = holder["bridge"].wait(timeout=300)
                killed_seconds = time.perf_counter() - t1
                assert killed_code == -signal.SIGKILL, killed_code
                proxy.on_accepted = None
                with Buffer(buffer, 10**7) as b:
                    buffered_at_kill = len(b)

                code, summary, restart_seconds = _run(env)
                assert code == 0, "the restart should deliver everything"
                t3 = time.perf_counter()
                got = read_back(moto, "Engage", [(NAME, [("series", f"s{i:04d}")]) for i in range(SERIES)])
                read_seconds = time.perf_counter() - t3
                total_seconds = time.perf_counter() - t0
                with Buffer(buffer, 10**7) as b:
                    counters = b.counters()
        finally:
            proxy.close()
            exporter.close()

    per_run = OUTAGE_RUNS + 2
    lost = duplicates = 0
    wrong_values = 0
    for i in range(SERIES):
        count, total = got.get((NAME, (("series", f"s{i:04d}"),)), (0.0, 0.0))
        lost += max(0, per_run - int(count))
        duplicates += max(0, int(count) - per_run)
        wrong_values += abs(total - count * (i + 1)) > 1e-6 * max(1.0, total)
    read = int(sum(c for c, _ in got.values()))
    observed = {
        "lost_points": float(lost),
        "duplicate_points": float(duplicates),
        "round_trip_seconds": round(total_seconds, 2),
    }
    cases = {
        "points_scraped": int(counters.get("enqueued", 0)),
        "points_expected": POINTS,
        "points_acknowledged_to_the_bridge": int(counters.get("sent", 0)),
        "points_accepted_by_moto": proxy.log.accepted_datums,
        "points_read_back": read,
        "lost": lost,
        "duplicates": duplicates,
        "series_with_wrong_sum": int(wrong_values),
        "series": SERIES,
        "put_metric_data_calls": proxy.log.calls,
        "calls_during_outage_503": outage_calls,
        "throttled_calls": proxy.log.throttled,
        "throttle_share_of_calls_after_outage": round(
            proxy.log.throttled / max(1, proxy.log.calls - outage_calls), 3
        ),
        "accepted_calls": proxy.log.accepted_calls,
        "max_datums_per_call": max(proxy.log.datums_per_call),
        "max_payload_bytes_per_call": max(proxy.log.bytes_per_call),
        "bridge_counted_calls": int(counters.get("calls", 0)),
        "bridge_counted_throttled": int(counters.get("throttled", 0)),
        "bridge_counted_retries": int(counters.get("retries", 0)),
        "buffered_after_outage": buffered_after_outage,
        "buffered_at_kill": buffered_at_kill,
        "killed_after_accepted_calls": KILL_AFTER_CALLS,
        "restart_run": summary,
        "seconds": {
            "outage_runs": round(outage_seconds, 2),
            "killed_run": round(killed_seconds, 2),
            "restart_run": round(restart_seconds, 2),
            "delivery": round(total_seconds - read_seconds, 2),
            "read_back": round(read_seconds, 2),
            "total": round(total_seconds, 2),
        },
        "setup": {
            "injected_throttling": THROTTLE,
            "batch_size": BATCH,
            "cloudwatch": "moto server on 127.0.0.1 (not AWS)",
            "prometheus": "real, scraping a 1,000-series exporter every second",
        },
    }
    versions = {
        "boto3": importlib.metadata.version("boto3"),
        "moto": importlib.metadata.version("moto"),
        "prometheus": subprocess.run(
            ["prometheus", "--version"], capture_output=True, text=True, check=False
        ).stdout.split("\n")[0],
    }
    return write_results(args.out, "cloudwatch_bridge", BUDGETS, observed, cases, versions)


if __name__ == "__main__":
    raise SystemExit(main())
