"""Fairness benchmark: the whole fairness stage (metrics, every candidate, reports) on 100K generated rows.

Runs with the bias knob on and off (each in a fresh process): the table (4 monthly extracts) is generated
and the heads trained first, untimed; the timed figure is the fairness stage as ``engage run`` runs it.
The outcome of each head (verdict, chosen candidate, its accuracy cost, the 80 % rule before and after)
is recorded beside the time.

    python benchmarks/bench_fairness.py --out benchmarks/results/fairness.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from _results import write_results

AS_OF = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
#: budget from issue 5: the whole fairness stage on 100K rows <= 2 minutes
BUDGETS = {"fairness_100k_bias_seconds": 120.0, "fairness_100k_no_bias_seconds": 120.0}
ROWS = 100_000


def _worst(candidate: object, metric: str, pick: object) -> float | None:
    values = [f.summary[metric].value for f in candidate.fairness.values() if metric in f.summary]  # type: ignore[attr-defined]
    values = [v for v in values if v == v]
    return round(pick(values), 4) if values else None  # type: ignore[operator]


def worker(bias: float, folder: str) -> dict[str, object]:
    from engage.contract import load_contract
    from engage.fairness import assess_training, write_fairness
    from engage.synthetic import SyntheticConfig, generate_customers
    from engage.training import train

    contract = load_contract()
    frame = generate_customers(SyntheticConfig(rows=ROWS, seed=1, as_of=AS_OF, snapshots=4, bias=bias)).frame
    trained = train(frame, contract)
    t0 = time.perf_counter()
    result = assess_training(trained, frame)
    write_fairness(result, Path(folder) / "fairness")
    seconds = time.perf_counter() - t0
    heads = {}
    for name, h in result.heads.items():
        base = h.candidates[0]
        chosen = h.candidate(h.chosen) if h.chosen else None
        metric, pick = (
            ("demographic_parity_ratio", min) if h.task == "binary_classification" else ("mae_ratio", max)
        )
        heads[name] = {
            "verdict": h.verdict,
            "chosen": h.chosen,
            "reason": h.reason,
            f"unmitigated_{h.primary_metric}": round(base.accuracy[h.primary_metric], 4),
            f"unmitigated_worst_{metric}": _worst(base, metric, pick),
            f"chosen_{h.primary_metric}": round(chosen.accuracy[h.primary_metric], 4) if chosen else None,
            f"chosen_worst_{metric}": _worst(chosen, metric, pick) if chosen else None,
            "accuracy_cost": round(base.accuracy[h.primary_metric] - chosen.accuracy[h.primary_metric], 4)
            if chosen
            else None,
            "candidates": {
                c.name: {
                    h.primary_metric: round(c.accuracy.get(h.primary_metric, float("nan")), 4),
                    f"worst_{metric}": _worst(c, metric, pick),
                    "meets_policy": c.meets_policy,
                    "eligible": c.eligible,
                    "seconds": round(c.candidate.seconds, 2),
                }
                for c in h.candidates
            },
        }
    return {"seconds": seconds, "verdict": result.verdict, "heads": heads}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/fairness.json"))
    parser.add_argument("--worker", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        print(json.dumps(worker(args.worker, args.path)))
        return 0
    cases = {}
    for bias, label in ((1.0, "bias"), (0.0, "no_bias")):
        with tempfile.TemporaryDirectory() as tmp:
            proc = subprocess.run(
                [sys.executable, __file__, "--worker", str(bias), "--path", tmp],
                capture_output=True,
                text=True,
                check=True,
            )
        cases[f"fairness_100k_{label}"] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(
            f"  bias {bias}: {cases[f'fairness_100k_{label}']['seconds']:.1f} s, verdict {cases[f'fairness_100k_{label}']['verdict']}",
            flush=True,
        )
    observed = {f"{k}_seconds": float(v["seconds"]) for k, v in cases.items()}
    return write_results(args.out, "fairness", BUDGETS, observed, cases)


if __name__ == "__main__":
    sys.exit(main())
