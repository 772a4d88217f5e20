"""Governance store benchmark: audit append and verify throughput on SQLite and on a real PostgreSQL
server (Debian's, started on loopback as the tests start it), verify of a 1M-record chain, and the
review-queue fill of a 100K-row run.

For each database:

1. single appends: ``AuditTrail.append`` N times, each its own transaction (how the registry, the
   review decisions and the data-subject requests record) -> records/s and ms per record;
   (PostgreSQL runs with fsync and synchronous commits on; SQLite in WAL mode with synchronous=NORMAL,
   Engage's setting: durable through a crash of the process, not of the machine);
2. bulk appends: ``AuditTrail.append_many`` in batches of 20,000 until the trail holds ``--records``
   (1M by default): the same chain, one head lock per batch -> records/s;
3. verify: ``AuditTrail.verify`` walks the whole chain (every payload and record hash recomputed) ->
   records/s and seconds for the 1M;
4. review fill: a 100K-row scored run (seeded), the stratified sample of 400 (``review_sample``) and its
   insert (``ReviewQueue.add``) -> seconds.

    python benchmarks/bench_governance.py --out benchmarks/results/governance.json [--records 1000000]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _results import write_results

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BATCH = 20_000


def _records(db: Any, records: int, singles: int) -> dict[str, float]:
    from engage.governance import AuditTrail, NewRecord

    trail = AuditTrail(db)
    started = time.perf_counter()
    for i in range(singles):
        trail.append(
            "registry.alias",
            actor="bench",
            subject="registry:s3://bench/customers",
            payload={"i": i, "to": "x" * 64},
        )
    single = time.perf_counter() - started
    started = time.perf_counter()
    left = records - singles
    while left > 0:
        n = min(BATCH, left)
        trail.append_many(
            [
                NewRecord(
                    "review.override", "bench", f"review:{j}", {"j": j, "reason": "bench", "value": 0.5}
                )
                for j in range(n)
            ]
        )
        left -= n
    bulk = time.perf_counter() - started
    started = time.perf_counter()
    report = trail.verify()
    verify = time.perf_counter() - started
    assert report.ok, report.problems[:3]
    assert report.checked == records
    return {
        "single_append_per_s": singles / single,
        "single_append_ms": 1000 * single / singles,
        "bulk_append_per_s": (records - singles) / bulk,
        "verify_per_s": records / verify,
        "verify_seconds": verify,
    }


def _review_fill(db: Any, rows: int) -> dict[str, float]:
    import numpy as np
    import pandas as pd

    from engage.governance import ReviewQueue
    from engage.governance._sample import review_sample

    rng = np.random.default_rng(7)
    scored = pd.DataFrame(
        {
            "customer_id": [f"C{i:07d}" for i in range(rows)],
            "region": rng.choice(["north", "south", "east", "west"], rows),
            "age_band": rng.choice(["18-24", "25-34", "35-54", "55+"], rows),
            "tenure_days": rng.integers(1, 3000, rows),
            "sessions_30d": rng.poisson(12, rows),
            "churn_probability": rng.random(rows),
            "engagement_score": rng.random(rows) * 100,
            "ltv": rng.gamma(2.0, 150.0, rows),
        }
    )
    started = time.perf_counter()
    items = review_sample(
        scored,
        size=400,
        strata=["region", "age_band"],
        id_column="customer_id",
        outputs=["churn_probability", "engagement_score", "ltv"],
        feature_columns=["region", "age_band", "tenure_days", "sessions_30d"],
        run_id="bench-run",
        model_version="sha256:" + "0" * 64,
        seed=7,
    )
    sampled = time.perf_counter() - started
    ids = ReviewQueue(db).add(items)
    total = time.perf_counter() - started
    assert len(ids) == 400
    return {"review_sample_seconds": sampled, "review_fill_seconds": total}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--records", type=int, default=1_000_000, help="Records in the trail verified")
    parser.add_argument("--singles", type=int, default=2_000, help="Appends one transaction each")
    parser.add_argument(
        "--rows", type=int, default=100_000, help="Rows of the scored run for the review fill"
    )
    args = parser.parse_args()

    from tests.postgres_support import pg_bindir, postgres_server

    from engage.governance import Database

    work = Path(tempfile.mkdtemp(prefix="engage-bench-governance-"))
    cases: dict[str, Any] = {"records": args.records, "singles": args.singles, "review_rows": args.rows}
    observed: dict[str, float] = {}
    try:
        backends: list[tuple[str, Any]] = [("sqlite", f"sqlite:///{work}/governance.db")]
        server = None
        if pg_bindir() is not None:
            server = postgres_server(durable=True)  # fsync and synchronous commits on, as in production
            backends.append(("postgresql", server.__enter__()))
        else:
            cases["postgresql"] = "skipped: no PostgreSQL binaries on this machine"
        try:
            for name, url in backends:
                db = Database(url)
                db.migrate()
                figures = _records(db, args.records, args.singles)
                figures.update(_review_fill(db, args.rows))
                db.dispose()
                cases[name] = figures
                for key, value in figures.items():
                    print(f"{name:10s} {key:24s} {value:12.1f}")
                observed[f"{name}_single_append_ms"] = round(figures["single_append_ms"], 3)
                observed[f"{name}_verify_1m_seconds"] = round(
                    figures["verify_seconds"] * 1_000_000 / args.records, 2
                )
                observed[f"{name}_review_fill_seconds"] = round(figures["review_fill_seconds"], 3)
        finally:
            if server is not None:
                server.__exit__(None, None, None)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    budgets = {
        "sqlite_single_append_ms": 10.0,
        "sqlite_verify_1m_seconds": 60.0,
        "sqlite_review_fill_seconds": 5.0,
        "postgresql_single_append_ms": 20.0,
        "postgresql_verify_1m_seconds": 60.0,
        "postgresql_review_fill_seconds": 5.0,
    }
    versions = {p: importlib.metadata.version(p) for p in ("sqlalchemy", "alembic", "psycopg")}
    return write_results(
        args.out, "governance", {k: v for k, v in budgets.items() if k in observed}, observed, cases, versions
    )


if __name__ == "__main__":
    sys.exit(main())
