"""Training benchmark: all three heads with their baselines, on 100K and 1M generated rows.

Each size runs in a fresh Python process. The table (4 monthly extracts, no defects) is generated and
written first, untimed; the timed figure is ``engage train`` without its imports: the contract check,
features, both learners of every head, metrics, policy, report and every artifact written. The test
metrics of each head (xgboost and baseline) are recorded beside the times.

    python benchmarks/bench_train.py --out benchmarks/results/train.json [--quick]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from _results import write_results

AS_OF = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
#: budgets from issue 4: 100K rows <= 60 s, 1M rows <= 5 min on 2 cores
BUDGETS = {"train_100k_seconds": 60.0, "train_1m_seconds": 300.0}
#: the figures recorded per head
SHOWN = (
    "r2",
    "rmse",
    "mae",
    "spearman",
    "top_decile_capture",
    "auc_roc",
    "pr_auc",
    "log_loss",
    "brier",
    "ece",
    "lift_top_decile",
)


def worker(rows: int, folder: str) -> dict[str, object]:
    t0 = time.perf_counter()
    from engage.contract import load_contract
    from engage.synthetic import SyntheticConfig, generate_customers
    from engage.tables import write_table
    from engage.training import train_table

    table = Path(folder) / "customers.parquet"
    write_table(generate_customers(SyntheticConfig(rows=rows, seed=1, as_of=AS_OF, snapshots=4)).frame, table)
    import sklearn.ensemble  # noqa: F401  (imports are not training time)
    import xgboost  # noqa: F401

    ready = time.perf_counter()
    result = train_table(table, load_contract(), Path(folder) / "out", now=AS_OF)
    done = time.perf_counter()
    heads = {}
    for name, r in result.heads.items():
        heads[name] = {
            "rows": r.rows,
            "seconds": {k: round(v, 2) for k, v in r.seconds.items()},
            "iterations": {"xgboost": r.primary.best_iteration, "sklearn": r.baseline.best_iteration},
            "xgboost": {k: round(v, 4) for k, v in r.metrics["xgboost"]["test"].items() if k in SHOWN},
            "sklearn": {k: round(v, 4) for k, v in r.metrics["sklearn"]["test"].items() if k in SHOWN},
        }
    return {
        "train_seconds": done - ready,
        "prepare_seconds": ready - t0,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "policy_passed": result.verdict.passed,
        "split": result.split.how,
        "heads": heads,
    }


def run_case(rows: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", "--rows", str(rows), "--path", tmp],
            capture_output=True,
            text=True,
            check=True,
        )
    figures: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(
        f"  train {rows:>9,} rows: {figures['train_seconds']:.1f} s, peak {figures['peak_rss_mib']:.0f} MiB",
        flush=True,
    )
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/train.json"))
    parser.add_argument("--quick", action="store_true", help="100K rows only (skip 1M)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.rows, args.path)))
        return 0

    import sklearn
    import xgboost

    cases = {}
    for rows in [100_000] if args.quick else [100_000, 1_000_000]:
        cases["train_100k" if rows == 100_000 else "train_1m"] = run_case(rows)
    observed = {f"{case}_seconds": float(figures["train_seconds"]) for case, figures in cases.items()}  # type: ignore[arg-type]
    versions = {"xgboost": xgboost.__version__, "scikit-learn": sklearn.__version__}
    return write_results(args.out, "train", BUDGETS, observed, cases, versions)


if __name__ == "__main__":
    sys.exit(main())
