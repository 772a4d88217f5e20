"""The metric-driven canary measured: how soon ``engage rollout`` rolls back a canary that is bad by
design, and how often it fails a healthy one, over seeded repetitions on real processes.

Set-up (untimed): a model on ``--train-rows`` generated customers (``tests/serving_support.build_model_folder``),
three real predictor processes on loopback standing for the revisions of a KServe canary, and a real
Prometheus scraping each (one scrape job each, every ``--scrape`` seconds; ``tests/rollout_support``):

* ``stable``: the model; it takes traffic the whole run, as the revision in production does;
* ``healthy``: the same model: every decision other than ``promote`` is a false alarm;
* ``shifted``: the model with a +3 logit offset on the churn head for every gender (re-signed): its
  predictions move by design; every decision other than ``rollback`` is a miss.

Each revision gets its own stream of requests at a steady ``--rate`` (requests a second, ``--batch``
generated customers each, drawn at random with a seeded generator: the revisions answer different customers
of one population, as KServe's random split gives them). Per repetition, both canaries start taking traffic
(drawn from a freshly generated population, seeded by the repetition) at the moment their watches start:
``engage.rollout.run_rollout`` (what the CLI and the pipeline step call; decision on a SQLite audit trail,
report written) with the policy's defaults except the timing (``--period``, ``--interval``, ``--window``).
A canary's traffic stops when its watch decides, and the next repetition waits until its series have left
the window. Reported: each decision, the time from the watch start (the canary's first request) to the
first failing evaluation (the alert) and to the decision, in seconds and evaluations, and for ``healthy``
the false rollbacks, the ``insufficient_data`` outcomes and evaluations that failed without a decision.

``slow`` (a canary degraded by latency) is not run: the predictor has no latency or fault injection, and
none is added for a benchmark (the latency checks are tested on fixed query results).

    python benchmarks/bench_rollout.py --out benchmarks/results/rollout.json   # about 9 minutes
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PREDICT = "/v1/models/engage:predict"
CANARIES = ("healthy", "shifted")
#: the outcome each canary must get
EXPECTED = {"healthy": "promote", "shifted": "rollback"}
SLOW_SKIPPED = (
    "not run: the predictor has no latency or fault injection (no delay/latency/fault flag or setting in "
    "serving/engage_serving), and none is added for a benchmark"
)


class Stream(threading.Thread):
    """Requests of ``batch`` rows drawn at random (seeded) from ``rows``, ``rate`` a second, on schedule,
    to one predictor until :meth:`stop`."""

    def __init__(self, url: str, rows: list[dict[str, Any]], seed: int, rate: float, batch: int) -> None:
        super().__init__(daemon=True)
        self.url, self.rows, self.seed, self.rate, self.batch = url, rows, seed, rate, batch
        self.halt = threading.Event()
        self.sent = self.failed = 0

    def run(self) -> None:
        import httpx
        import numpy as np

        rng = np.random.default_rng(self.seed)
        with httpx.Client(timeout=30) as client:
            due = time.monotonic()
            while not self.halt.is_set():
                picked = rng.integers(len(self.rows), size=self.batch)
                try:
                    answer = client.post(
                        self.url + PREDICT, json={"instances": [self.rows[i] for i in picked]}
                    )
                    self.failed += answer.status_code != 200
                except httpx.HTTPError:
                    self.failed += 1
                self.sent += 1
                due = max(due + 1 / self.rate, time.monotonic() - 1)  # steady: no burst after a stall
                self.halt.wait(max(due - time.monotonic(), 0.0))

    def stop(self) -> dict[str, int]:
        self.halt.set()
        self.join(timeout=30)
        return {"requests": self.sent, "failed": self.failed}


def population(seed: int, rows: int, columns: list[str]) -> list[dict[str, Any]]:
    """``rows`` generated customers (another seed than training) as request rows: the model's features, the
    protected attributes the predictor counts by, the customer id."""
    from tests.conftest import AS_OF

    from engage.synthetic import SyntheticConfig, generate_customers

    frame = generate_customers(SyntheticConfig(rows=rows, seed=seed, snapshots=1, as_of=AS_OF)).frame
    records: list[dict[str, Any]] = json.loads(frame[columns].to_json(orient="records", date_format="iso"))
    return records


def decide(prometheus: str, canary: str, policy: Any, folder: Path) -> dict[str, Any]:
    """One watch of ``canary`` against ``stable``, as ``engage rollout`` runs it: its decision and timings."""
    from engage.governance import AuditTrail, open_database
    from engage.rollout import parse_target, run_rollout

    folder.mkdir(parents=True, exist_ok=True)
    db = open_database(f"sqlite:///{folder}/governance.db")
    started = time.monotonic()
    try:
        result = run_rollout(
            prometheus,
            parse_target("job=stable", "stable"),
            parse_target(f"job={canary}", "canary"),
            policy,
            trail=AuditTrail(db),
            actor="bench",
            out=folder / "report.json",
        )
    finally:
        db.dispose()
    seconds = time.monotonic() - started
    decision = result.decision
    start = datetime.fromisoformat(decision.started)
    by_time: dict[str, list[Any]] = {}
    for e in decision.evidence:
        by_time.setdefault(e.at, []).append(e)
    failing = [(at, sorted(e.check for e in es if e.failed)) for at, es in by_time.items()]
    failing = [(at, checks) for at, checks in failing if checks]
    first = failing[0][0] if failing else None
    p95 = [e.value for e in decision.evidence if e.check == "canary_p95_seconds" and e.value is not None]
    return {
        "outcome": decision.outcome,
        "seconds": round(seconds, 1),
        "evaluations": decision.evaluations,
        "failed": decision.failed,
        "reason": decision.reason,
        "first_failure_seconds": (
            None if first is None else round((datetime.fromisoformat(first) - start).total_seconds(), 1)
        ),
        "evaluations_failing": len(failing),
        "checks_failing": sorted({c for _, checks in failing for c in checks}),
        "checks_judged_last": sorted(e.check for e in decision.decisive if e.passed is not None),
        "canary_p95_ms_max": round(max(p95) * 1000, 1) if p95 else None,
        "audit_seq": result.audit_seq,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "rollout.json")
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--period", type=float, default=60.0, help="the watch's period, seconds")
    parser.add_argument("--interval", type=float, default=5.0, help="between two evaluations, seconds")
    parser.add_argument("--window", type=float, default=30.0, help="every query's range, seconds")
    parser.add_argument("--scrape", type=float, default=5.0, help="Prometheus' scrape interval, seconds")
    parser.add_argument("--rate", type=float, default=5.0, help="requests a second to each revision")
    parser.add_argument("--batch", type=int, default=20, help="customers per request")
    parser.add_argument("--train-rows", type=int, default=4_000)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests.rollout_support import predictors, prometheus, shifted_model
    from tests.serving_support import build_model_folder

    from _results import write_results
    from engage.contract import load_contract
    from engage.model import load_bundle
    from engage.rollout import RolloutPolicy

    binary = shutil.which("prometheus")
    if binary is None:
        raise SystemExit("bench_rollout: prometheus is not installed (apt-get install prometheus)")
    policy = RolloutPolicy(
        period_seconds=args.period, interval_seconds=args.interval, window_seconds=args.window
    )
    gap = args.window + 2 * args.scrape  # a stopped canary's series leave every query's window
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in CANARIES}
    with tempfile.TemporaryDirectory(prefix="bench-rollout-") as tmp:
        root = Path(tmp)
        build_model_folder(root / "m", rows=args.train_rows)
        features = load_bundle(root / "m" / "model").features.columns
        columns = list(dict.fromkeys(["customer_id", *features, *load_contract().protected]))
        models = {
            "stable": root / "m" / "model",
            "healthy": root / "m" / "model",
            "shifted": shifted_model(root / "m", root / "shifted"),
        }
        started = time.monotonic()
        with (
            predictors(models, root) as urls,
            prometheus(binary, urls, root, scrape_seconds=args.scrape) as prom,
        ):
            stable = Stream(urls["stable"], population(99, 5_000, columns), 0, args.rate, args.batch)
            stable.start()
            time.sleep(gap)  # stable has a whole window of traffic before the first canary
            try:
                for rep in range(args.repetitions):
                    rows = population(100 + rep, 5_000, columns)
                    streams = {
                        c: Stream(urls[c], rows, 1_000 * (rep + 1) + i, args.rate, args.batch)
                        for i, c in enumerate(CANARIES)
                    }

                    def watch(
                        canary: str, rep: int = rep, streams: dict[str, Stream] = streams
                    ) -> dict[str, Any]:
                        streams[canary].start()  # the canary's first request and its watch start together
                        try:
                            return decide(prom, canary, policy, root / f"rep{rep}" / canary)
                        finally:  # a decided canary gets no more traffic (rollback: 0 %; promote: it is stable)
                            traffic = streams[canary].stop()
                            print(f"  rep {rep} {canary}: {traffic}", flush=True)

                    with ThreadPoolExecutor(len(CANARIES)) as pool:
                        futures = {c: pool.submit(watch, c) for c in CANARIES}
                        for canary, future in futures.items():
                            run = {"repetition": rep, **future.result()}
                            runs[canary].append(run)
                            print(
                                f"rep {rep} {canary}: {run['outcome']} after {run['seconds']} s "
                                f"({run['evaluations']} evaluations) {run['failed'] or ''}",
                                flush=True,
                            )
                    if rep + 1 < args.repetitions:
                        time.sleep(gap)
            finally:
                stable_traffic = stable.stop()
        seconds = time.monotonic() - started

    healthy, shifted = runs["healthy"], runs["shifted"]
    rolled = [r for r in shifted if r["outcome"] == "rollback"]

    def summary(values: list[float]) -> dict[str, float | None]:
        return {
            "mean": round(statistics.fmean(values), 1) if values else None,
            "min": min(values) if values else None,
            "max": max(values) if values else None,
        }

    cases: dict[str, Any] = {
        "healthy": {
            "expected": "promote",
            "outcomes": [r["outcome"] for r in healthy],
            "false_rollbacks": sum(r["outcome"] == "rollback" for r in healthy),
            "insufficient_data": sum(r["outcome"] == "insufficient_data" for r in healthy),
            "evaluations_failing_without_decision": sum(
                r["evaluations_failing"] for r in healthy if r["outcome"] != "rollback"
            ),
            "evaluations": sum(r["evaluations"] for r in healthy),
            "runs": healthy,
        },
        "shifted": {
            "expected": "rollback",
            "outcomes": [r["outcome"] for r in shifted],
            "missed": len(shifted) - len(rolled),
            "seconds_to_decision": summary([r["seconds"] for r in rolled]),
            "evaluations_to_decision": summary([float(r["evaluations"]) for r in rolled]),
            "seconds_to_first_failure": summary(
                [r["first_failure_seconds"] for r in rolled if r["first_failure_seconds"] is not None]
            ),
            "runs": shifted,
        },
        "slow": {"skipped": SLOW_SKIPPED},
        "setup": {
            "repetitions": args.repetitions,
            "policy": {
                "period_seconds": args.period,
                "interval_seconds": args.interval,
                "window_seconds": args.window,
                "other fields": "engage.rollout.RolloutPolicy defaults (docs/rollout.md)",
            },
            "scrape_seconds": args.scrape,
            "traffic": f"{args.rate:g} requests/s of {args.batch} generated customers to each revision",
            "stable_traffic": stable_traffic,
            "gap_seconds": gap,
            "seconds": round(seconds, 1),
            "note": "time is counted from the watch start, which is the canary's first request: the first "
            "evaluations have too few canary requests in the window (min_requests) and cannot fail",
        },
    }
    observed = {
        "healthy_false_rollbacks": float(cases["healthy"]["false_rollbacks"]),
        "healthy_insufficient_data": float(cases["healthy"]["insufficient_data"]),
        "shifted_missed": float(cases["shifted"]["missed"]),
        "shifted_worst_seconds_to_rollback": max([r["seconds"] for r in rolled], default=args.period),
    }
    budgets = {
        "healthy_false_rollbacks": 0.0,
        "healthy_insufficient_data": 0.0,
        "shifted_missed": 0.0,
        # one window: the earliest moment the canary has a whole window of its own traffic
        "shifted_worst_seconds_to_rollback": args.window,
    }
    return write_results(args.out, "rollout", budgets, observed, cases)


if __name__ == "__main__":
    raise SystemExit(main())
