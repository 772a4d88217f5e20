"""Real-table benchmark: ``make run`` on a table Engage did not generate, by its contract alone.

7,000 rows in the public Telco churn layout (``tests/fixtures/make_telco_fixture.py``, seeded), as CSV,
with the shipped example contract (``contracts/examples/telco_contract.yml``: one ``churn`` head) and the
shipped policy, from an empty cache: wall time (budget 30 s on this 2-core machine), each step's time,
and the gates' verdicts.

    python benchmarks/bench_real_table.py --out benchmarks/results/real_table.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _results import write_results

ROOT = Path(__file__).resolve().parents[1]
ROWS = 7_000
BUDGETS = {"telco_7000_one_head_seconds": 30.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/real_table.json"))
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
    import make_telco_fixture

    from engage.settings import RunSettings
    from engage_components import run_local

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        table = make_telco_fixture.write(root / "telco_customers.csv", n=ROWS)
        settings = RunSettings(
            data_uri=str(table),
            contract=ROOT / "contracts" / "examples" / "telco_contract.yml",
            registry=str(root / "registry"),
            out_dir=root / "runs",
        )
        t0 = time.perf_counter()
        summary = run_local(settings.pipeline_params(), pipeline_root=settings.out_dir)
        wall = time.perf_counter() - t0
        outcome = summary.outcome or {}
        quality = summary.read("quality", "report.json") or {}
        fairness = summary.read("fairness", "fairness.json") or {}
        training = summary.read("training", "evaluation.json") or {}
        case: dict[str, Any] = {
            "rows": ROWS,
            "format": "csv",
            "contract": "contracts/examples/telco_contract.yml",
            "state": summary.state,
            "error": summary.error,
            "wall_seconds": round(wall, 1),
            "steps": [
                {"step": s["step"], "seconds": round(s["seconds"], 1)} for s in outcome.get("steps", [])
            ],
            "heads": sorted(training.get("heads", {})),
            "quality_verdict": quality.get("verdict"),
            "fairness": {
                h: {"verdict": v.get("verdict"), "reason": v.get("reason")}
                for h, v in fairness.get("heads", {}).items()
            },
            "promoted": (summary.promotion or {}).get("promoted"),
        }
    observed = {
        "telco_7000_one_head_seconds": case["wall_seconds"] if summary.state == "SUCCEEDED" else float("inf")
    }
    return write_results(args.out, "real_table", BUDGETS, observed, {"telco_7000": case})


if __name__ == "__main__":
    raise SystemExit(main())
