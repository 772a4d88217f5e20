"""Pipeline benchmark: ``make run`` equivalent, the whole pipeline under kfp.local, from an empty cache.

For 100K generated customers (the default): wall time (budget 5 minutes on this 2-core machine), the
time of each step, the run's estimated cost, whether it promoted; then the same run again, to time the
cache. The same from an empty cache on 1M customers is recorded beside it (``--large 0`` skips it).

    python benchmarks/bench_pipeline.py --out benchmarks/results/pipeline.json
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _results import write_results

BUDGETS = {"pipeline_100k_seconds": 300.0}


def one_run(root: Path, rows: int, as_of: str) -> dict[str, Any]:
    from engage.settings import RunSettings
    from engage_components import run_local

    settings = RunSettings(rows=rows, registry=str(root / "registry"), out_dir=root / "runs", as_of=as_of)
    t0 = time.perf_counter()
    summary = run_local(settings.pipeline_params(), pipeline_root=settings.out_dir)
    wall = time.perf_counter() - t0
    outcome = summary.outcome or {}
    cost = outcome.get("cost", {})
    return {
        "rows": rows,
        "state": summary.state,
        "error": summary.error,
        "wall_seconds": round(wall, 1),
        "steps": [{"step": s["step"], "seconds": round(s["seconds"], 1)} for s in outcome.get("steps", [])],
        "cost_on_demand_usd": cost.get("on_demand_usd"),
        "cost_spot_usd": cost.get("spot_usd"),
        "below_target_by": cost.get("below_target_by"),
        "promoted": (summary.promotion or {}).get("promoted"),
        "failures": [
            f"{r['section']}/{r['head']}: {r['rule']}" for r in (summary.promotion or {}).get("failures", [])
        ],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/pipeline.json"))
    parser.add_argument(
        "--large", type=int, default=1_000_000, help="rows of the recorded large run (0: skip)"
    )
    args = parser.parse_args()
    as_of = datetime.now(UTC).replace(minute=0, second=0, microsecond=0).isoformat()
    cases: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "100k"
        cases["100k"] = one_run(root, 100_000, as_of)
        cases["100k_rerun_cached"] = one_run(root, 100_000, as_of)
    if args.large:
        with tempfile.TemporaryDirectory() as tmp:
            cases[f"{args.large // 1000}k"] = one_run(Path(tmp), args.large, as_of)
    observed = {"pipeline_100k_seconds": cases["100k"]["wall_seconds"]}
    if cases["100k"]["state"] != "SUCCEEDED":
        observed["pipeline_100k_seconds"] = float("inf")
    return write_results(args.out, "pipeline", BUDGETS, observed, cases)


if __name__ == "__main__":
    raise SystemExit(main())
