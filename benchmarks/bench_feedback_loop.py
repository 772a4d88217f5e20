"""The closed loop measured: how soon the live checks catch a shift switched on mid-stream, and how often
they cry wolf on a stream without one.

Set-up (untimed): a churn / engagement / LTV model on ``--train-rows`` generated customers (the pipeline's own steps,
``tests/serving_support.build_model_folder``). Then, per seeded repetition and scenario, a stream of
``--windows`` windows (a window stands for one day of traffic: ``--rows`` generated customers, scored by
the batch scorer exactly as the predictor scores them, with their outcomes as the generator labels them):

* ``none``: every window from the same process (no shift): every alarm is a false alarm;
* ``drift@S``: from window ``--shift-at`` on, the generator's ``drift`` knob at strength S (the latest signup
  cohort's behaviour shifts);
* ``bias@S``: from window ``--shift-at`` on, the ``bias`` knob at S (the model's errors fall on women);

for each S of ``--strengths`` (the budgets judge S = 1, the designed shift; weaker ones show how the delay
grows). Each window goes through the drift detector's own test of the model inputs against the model's
drift reference (``engage.drift.DriftDetector``, as served: the ``input_drift`` alarm, which fires the
drift alert), through ``engage.feedback.live_report`` (the promotion policy's thresholds: live accuracy,
live fairness on bootstrap intervals, prediction PSI against window 0's predictions) and, before its
labels, the CBPE estimate of the churn AUC. Reported per scenario over the repetitions: the delay from the
shift to the first alarm of the matching kind (in windows), missed shifts, and false alarms per window
before the shift (and over the whole ``none`` stream).

    python benchmarks/bench_feedback_loop.py --out benchmarks/results/feedback_loop.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: the live section whose alarm counts as catching each scenario's shift
CATCHES = {"drift": "input_drift", "bias": "live_fairness"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "feedback_loop.json")
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--windows", type=int, default=10)
    parser.add_argument("--shift-at", type=int, default=5)
    parser.add_argument("--rows", type=int, default=3_000)
    parser.add_argument("--train-rows", type=int, default=20_000)
    parser.add_argument(
        "--strengths", default="0.25,0.5,1", help="knob strengths of the shifted streams (comma-separated); "
        "the budgets judge strength 1, the others show how delay grows as a shift weakens",
    )  # fmt: skip
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import numpy as np
    import pandas as pd
    from tests.conftest import AS_OF
    from tests.serving_support import build_model_folder

    from _results import write_results
    from engage.contract import load_contract
    from engage.drift import DriftDetector, Reference
    from engage.feedback import estimate_classification, live_report
    from engage.model import load_bundle
    from engage.policy import load_policy
    from engage.scoring import BatchScorer, check_frame
    from engage.synthetic import SyntheticConfig, generate_customers

    contract, policy = load_contract(), load_policy()
    with tempfile.TemporaryDirectory(prefix="bench-loop-") as tmp:
        # four monthly extracts, as the pipeline's default table: the drift reference then samples customers
        # of every tenure (one extract is split by signup cohort, and its reference is the earliest cohorts)
        build_model_folder(Path(tmp) / "m", rows=args.train_rows, snapshots=4)
        scorer = BatchScorer(load_bundle(Path(tmp) / "m" / "model"), contract)
        reference_rows = Reference.load(Path(tmp) / "m" / "drift_reference")
        detector = DriftDetector(reference_rows)

    def window(seed: int, t: int, *, drift: float, bias: float) -> tuple[pd.DataFrame, pd.DataFrame]:
        when = AS_OF + timedelta(days=t)
        frame = generate_customers(
            SyntheticConfig(rows=args.rows, seed=seed, as_of=when, snapshots=1, drift=drift, bias=bias)
        ).frame
        checked = check_frame(frame[scorer.encoder.names], scorer.encoder)
        kept = frame.loc[checked.accepted].reset_index(drop=True)
        scores = scorer.score(checked.X, kept)
        ids = [f"w{t}-{c}" for c in kept["customer_id"]]
        events = pd.DataFrame(
            {
                "event_id": [f"e{t}-{i}" for i in range(len(kept))], "row": 0,
                "event_time": pd.Timestamp(when), "model_name": "engage", "model_version": "bench",
                "customer_id": ids, "gender": kept["gender"].astype(object), "age": kept["age"],
                **{f"prediction__{k}": v for k, v in scores.values.items()},
            }
        )  # fmt: skip
        outcomes = pd.DataFrame(
            {
                "customer_id": ids, "observed_at": pd.Timestamp(when) + pd.Timedelta(days=30),
                **{t.column: kept[t.column] for t in contract.targets.values()},
            }
        )  # fmt: skip
        drifted = detector.test(reference_rows.encode(kept))["data"]["is_drift"]
        return events, outcomes, bool(drifted)

    strengths = sorted({float(x) for x in args.strengths.split(",")})
    if 1.0 not in strengths:
        strengths.append(1.0)
    #: scenario name -> (kind, strength): "none", "drift@0.5", "bias@1", ...
    scenarios = {"none": ("none", 0.0)} | {
        f"{kind}@{s:g}": (kind, s) for kind in ("drift", "bias") for s in strengths
    }
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in scenarios}
    cbpe_errors: list[float] = []
    started = time.perf_counter()
    for rep in range(args.repetitions):
        for scenario, (kind, strength) in scenarios.items():
            reference = None
            alarms: list[list[str]] = []
            for t in range(args.windows):
                on = kind != "none" and t >= args.shift_at
                events, outcomes, input_drift = window(
                    10_000 * (rep + 1) + t,
                    t,
                    drift=strength if on and kind == "drift" else 0.0,
                    bias=strength if on and kind == "bias" else 0.0,
                )
                if reference is None:
                    reference = {
                        k.removeprefix("prediction__"): events[k].to_numpy()
                        for k in events
                        if k.startswith("prediction__")
                    }
                report = live_report(events, outcomes, contract, policy, reference=reference)
                crossed = set(report.crossed) if report.verdict == "fail" else set()
                alarms.append(sorted(crossed | ({"input_drift"} if input_drift else set())))
                estimate = estimate_classification(events["prediction__churn_probability"].to_numpy())
                cbpe_errors.append(estimate.metrics["auc_roc"] - report.heads["churn"].metrics["auc_roc"])
            runs[scenario].append({"repetition": rep, "alarms": alarms})
    seconds = time.perf_counter() - started

    cases: dict[str, Any] = {}
    before = [w for s in runs.values() for r in s for w in r["alarms"][: args.shift_at]]
    none_windows = [w for r in runs["none"] for w in r["alarms"]]
    for scenario, (kind, strength) in scenarios.items():
        if kind == "none":
            continue
        section = CATCHES[kind]
        delays = []
        for r in runs[scenario]:
            hit = next((t for t in range(args.shift_at, args.windows) if section in r["alarms"][t]), None)
            delays.append(None if hit is None else hit - args.shift_at)
        caught = [d for d in delays if d is not None]
        cases[scenario] = {
            "knob": kind, "strength": strength, "caught_by": section, "delays_windows": delays,
            "missed": delays.count(None),
            "mean_delay_windows": float(np.mean(caught)) if caught else None,
            "alarms_per_window": [r["alarms"] for r in runs[scenario]],
        }  # fmt: skip
    false_before = sum(1 for w in before if w) / len(before)
    false_none = sum(1 for w in none_windows if w) / len(none_windows)
    cases["none"] = {
        "windows": len(none_windows),
        "false_alarm_share": false_none,
        "false_alarms_by_section": {
            s: sum(1 for w in none_windows if s in w)
            for s in ("live_accuracy", "live_fairness", "prediction_drift")
        },
    }
    cases["cbpe_auc_error"] = {
        "mean_abs": float(np.mean(np.abs(cbpe_errors))), "max_abs": float(np.max(np.abs(cbpe_errors))),
        "mean": float(np.mean(cbpe_errors)), "windows": len(cbpe_errors),
        "note": "the churn head's probabilities as served (no reference recalibration): see cbpe.json for both",
    }  # fmt: skip
    cases["setup"] = {
        "repetitions": args.repetitions, "windows": args.windows, "shift_at": args.shift_at,
        "rows_per_window": args.rows, "strengths": strengths, "seconds": round(seconds, 1),
        "policy": "the shipped promotion policy's thresholds; prediction PSI 0.2 against window 0; input drift: "
            "the drift detector's default test (ENGAGE_DRIFT_*) of each window against the model's drift "
            "reference (the policy's drift.source: a sample of the training table's latest extract)",
    }  # fmt: skip
    full = (cases["drift@1"], cases["bias@1"])  # the budgets judge the designed shift, strength 1
    worst_delay = max([d for c in full for d in c["delays_windows"] if d is not None] or [args.windows])
    observed = {
        "false_alarm_share_no_shift": round(false_none, 3),
        "false_alarm_share_before_shift": round(false_before, 3),
        "worst_delay_windows": float(worst_delay),
        "missed_shifts": float(sum(c["missed"] for c in full)),
    }
    budgets = {
        "false_alarm_share_no_shift": 0.1,
        "false_alarm_share_before_shift": 0.1,
        "worst_delay_windows": 2.0,
        "missed_shifts": 0.0,
    }
    return write_results(args.out, "feedback_loop", budgets, observed, cases)


if __name__ == "__main__":
    raise SystemExit(main())
