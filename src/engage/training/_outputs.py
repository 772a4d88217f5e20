"""What a training run leaves behind, written into a staging folder and moved into place when complete.

``out_dir/``::

    model/                       the xgboost bundle (what serving loads and promotion ships)
    baseline/                    the scikit-learn bundle, kept for comparison
    evaluation.json              every figure: split, per head and model train/test metrics, policy, champion
    report.html                  plots a person reads: ROC, calibration, lift, residuals, capture
    kfp/metrics.json             scalar metrics, as a KFP ``Metrics`` artifact logs them
    kfp/classification_metrics.json  ROC points and confusion matrix per classifier head (KFP
                                 ``ClassificationMetrics``)
    test_predictions.parquet     key, labels and predictions of both learners on the test rows
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from engage._io import replace_dir, staging_dir, write_text_atomic
from engage.model._heads import head_labels

from ._train import TrainResult

__all__ = ["classification_metrics_json", "evaluation_json", "kfp_metrics", "write_outputs"]

MODEL_DIR = "model"
BASELINE_DIR = "baseline"
LEARNER_LABEL = {"xgboost": "xgboost", "sklearn": "sklearn baseline"}


def _clean(value: Any) -> Any:
    """JSON without NaN: non-finite numbers become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def kfp_metrics(result: TrainResult) -> dict[str, float]:
    """Flat ``head.metric`` (primary) and ``head.baseline.metric`` test figures."""
    out: dict[str, float] = {}
    for name, r in result.heads.items():
        for metric, value in r.metrics["xgboost"]["test"].items():
            out[f"{name}.{metric}"] = value
        for metric, value in r.metrics["sklearn"]["test"].items():
            out[f"{name}.baseline.{metric}"] = value
    return {k: v for k, v in out.items() if math.isfinite(v)}


def classification_metrics_json(result: TrainResult) -> dict[str, Any]:
    from engage.evaluation import confusion, roc_points

    out: dict[str, Any] = {}
    for name, r in result.heads.items():
        if not r.head.classification:
            continue
        pred = r.predictions["xgboost"]
        points = roc_points(r.y_test, pred, name=name)
        out[name] = {
            "roc": {k: [p[k] for p in points] for k in ("fpr", "tpr", "threshold")},
            "confusion_matrix": confusion(
                r.y_test, pred, 0.5, labels=(f"not {r.head.column}", str(r.head.column)), name=name
            ),
            "threshold": 0.5,
        }
    return out


def evaluation_json(result: TrainResult) -> dict[str, Any]:
    heads: dict[str, Any] = {}
    for name, r in result.heads.items():
        primary = result.policy.primary_metric(r.head.task.value)
        xgb, skl = r.metrics["xgboost"]["test"][primary], r.metrics["sklearn"]["test"][primary]
        heads[name] = {
            "column": r.head.column,
            "task": r.head.task.value,
            "distribution": r.head.distribution.value,
            "rows": r.rows,
            "primary_metric": primary,
            "better_learner": "xgboost" if xgb >= skl else "sklearn",
            "models": {
                learner: {
                    "objective": m.objective,
                    "transform": m.transform,
                    "calibrated": m.calibrator is not None,
                    "iterations": m.best_iteration,
                    "seconds": round(r.seconds[learner], 3),
                    "train": r.metrics[learner]["train"],
                    "test": r.metrics[learner]["test"],
                }
                for learner, m in (("xgboost", r.primary), ("sklearn", r.baseline))
            },
        }
    out: dict[str, Any] = _clean(
        {
            "contract": {"name": result.contract.contract, "version": result.contract.version},
            "trained_at": result.trained_at,
            "rows": result.rows,
            "split": result.split.how,
            "features": {
                "numeric": result.features.numeric,
                "categorical": list(result.features.categorical),
            },
            "config": result.config.model_dump(),
            "heads": heads,
            "notes": result.notes,
            "policy": {**result.verdict.model_dump(), "passed": result.verdict.passed},
            "champion": result.champion.to_json() if result.champion else None,
            "seconds": round(result.seconds, 3),
        }
    )
    return out


def _report_html(result: TrainResult) -> str:
    from engage.evaluation import HeadEvaluation, render_html_report

    evaluations = []
    for name, r in result.heads.items():
        predictions = {LEARNER_LABEL[k]: v for k, v in r.predictions.items()}
        metrics = {LEARNER_LABEL[k]: v["test"] for k, v in r.metrics.items()}
        if name in result.champion_predictions and result.champion is not None:
            predictions["champion"] = result.champion_predictions[name]
            metrics["champion"] = result.champion.champion_metrics[name]
        notes = [
            f"policy: {o.rule}: {_show(o.observed)} {'pass' if o.passed else 'FAIL'}"
            for o in result.verdict.rules
            if o.head == name
        ]
        if result.champion is not None:
            notes += [
                line
                for line in result.champion.lines()
                if line.startswith(f"{name}:") or result.champion.problem
            ]
        notes += [n for n in result.notes if n.startswith(f"head {name}:")]
        evaluations.append(
            HeadEvaluation(
                head=name,
                task=r.head.task.value,
                y_true=r.y_test,
                predictions=predictions,
                metrics=metrics,
                notes=tuple(notes),
                value=r.head.value,
            )
        )
    summary = [
        ("Contract", f"{result.contract.contract} {result.contract.version}"),
        ("Rows", f"{result.rows:,}"),
        ("Split", result.split.how),
        (
            "Policy",
            f"{result.policy.policy} {result.policy.version}: "
            + ("passed" if result.verdict.passed else f"FAILED ({len(result.verdict.failures)} rule(s))"),
        ),
        ("Trained at", result.trained_at),
        ("Training time", f"{result.seconds:.1f} s"),
    ]
    if result.champion is not None:
        summary.append(("Champion / challenger", f"{result.champion.winner} wins"))
    summary += [("Note", n) for n in result.notes if not n.startswith("head ") or "skipped" in n]
    return render_html_report(
        evaluations, title=f"Engage training report: {result.contract.contract}", summary_rows=summary
    )


def _show(value: float | str | None) -> str:
    if isinstance(value, str):
        return value
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.4f}"


def test_predictions(result: TrainResult, frame: pd.DataFrame) -> pd.DataFrame:
    rows = frame.iloc[result.split.test]
    keep = [*result.contract.primary_key]
    event = result.contract.event_time.column if result.contract.event_time else None
    if event and event not in keep:
        keep.append(event)
    out = rows[[c for c in keep if c in rows.columns]].reset_index(drop=True)
    for name, r in result.heads.items():
        out[f"{name}_label"] = head_labels(rows, r.head)
        out[r.head.output] = r.all_test_predictions["xgboost"]
        out[f"{r.head.output}_baseline"] = r.all_test_predictions["sklearn"]
    return out


test_predictions.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def write_outputs(result: TrainResult, frame: pd.DataFrame, out_dir: Path) -> dict[str, Path]:
    """Write every output into ``out_dir`` (replacing an older run there only once all is written)."""
    from engage.tables import write_table

    out_dir = Path(out_dir)
    with staging_dir(out_dir) as stage:
        result.bundle("xgboost").save(stage / MODEL_DIR)
        result.bundle("sklearn").save(stage / BASELINE_DIR)
        write_text_atomic(stage / "evaluation.json", json.dumps(evaluation_json(result), indent=2) + "\n")
        (stage / "kfp").mkdir()
        write_text_atomic(stage / "kfp" / "metrics.json", json.dumps(kfp_metrics(result), indent=2) + "\n")
        write_text_atomic(
            stage / "kfp" / "classification_metrics.json",
            json.dumps(_clean(classification_metrics_json(result)), indent=2) + "\n",
        )
        write_text_atomic(stage / "report.html", _report_html(result))
        write_table(test_predictions(result, frame), stage / "test_predictions.parquet")
        replace_dir(stage, out_dir)
    names = ["model", "baseline", "evaluation.json", "report.html", "kfp", "test_predictions.parquet"]
    return {n: out_dir / n for n in names}
