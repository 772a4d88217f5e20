"""Global explanations for the model card: mean |SHAP| and permutation importance per head.

Mean |SHAP| (on the margin) says how much each feature moves predictions on average; permutation
importance (scikit-learn's, on the head's primary metric from the promotion policy) says how much the
model's accuracy depends on it. They disagree usefully: a feature can move scores a lot yet carry
little that the others do not also carry.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from engage.contract import Contract
from engage.policy import PromotionPolicy

from ._explainer import Explainer
from ._schema import Explanation, ExplanationMeta, Timings

__all__ = ["global_summary"]

F64 = npt.NDArray[np.float64]


class _Scored:
    """The head as an estimator of the encoded matrix, for ``permutation_importance``."""

    def __init__(self, predict: Any) -> None:
        self.predict = predict

    def fit(self, X: F64, y: F64) -> _Scored:  # scikit-learn's scorer checks an estimator can fit
        return self


def global_summary(
    explainer: Explainer,
    frame: pd.DataFrame,
    contract: Contract,
    policy: PromotionPolicy,
    *,
    rows: int = 2_000,
    repeats: int = 5,
    seed: int = 0,
) -> Explanation:
    """Mean |SHAP| (xgboost heads) and permutation importance (heads whose label ``frame`` holds)."""
    from sklearn.inspection import permutation_importance

    from engage.evaluation import classification_metrics, regression_metrics
    from engage.training import head_labels

    started = time.perf_counter()
    sample = frame.sample(n=min(rows, len(frame)), random_state=seed) if len(frame) > rows else frame
    X = explainer.encoder.frame(sample)
    names = explainer.encoder.names
    heads: dict[str, Any] = {}
    notes: list[str] = []
    for name, model in explainer.bundle.heads.items():
        entry: dict[str, Any] = {"output": model.head.output, "rows": len(X)}
        if model.learner == "xgboost":
            values, base, _ = explainer.tree_shap(name).shap_values(X)
            mean_abs = np.abs(values).mean(axis=0)
            order = np.argsort(-mean_abs, kind="stable")
            entry |= {
                "output_space": model.margin_space,
                "base_value": float(base[0]),
                "mean_abs_shap": {names[j]: float(mean_abs[j]) for j in order},
            }
        else:
            notes.append(f"head {name}: no mean |SHAP| ({model.learner} is not read by TreeSHAP)")
        if model.head.column in sample.columns:
            y = head_labels(sample, model.head)
            known = ~np.isnan(y)
            metric_name = policy.primary_metric(model.head.task.value)
            metrics = classification_metrics if model.head.classification else regression_metrics

            def scorer(
                est: _Scored, Xs: F64, ys: F64, metrics: Any = metrics, key: str = metric_name
            ) -> float:
                return float(metrics(ys, est.predict(Xs))[key])

            result = permutation_importance(
                _Scored(explainer.predictor(model)),
                X[known],
                y[known],
                scoring=scorer,
                n_repeats=repeats,
                random_state=seed,
            )
            order = np.argsort(-result.importances_mean, kind="stable")
            entry["permutation_metric"] = metric_name
            entry["permutation_importance"] = {
                names[j]: {"mean": float(result.importances_mean[j]), "std": float(result.importances_std[j])}
                for j in order
            }
        else:
            notes.append(
                f"head {name}: no permutation importance (the rows lack its label {model.head.column})"
            )
        heads[name] = entry
    elapsed = (time.perf_counter() - started) * 1e3
    meta = ExplanationMeta(
        method="global_summary",
        library="xgboost, scikit-learn",
        licence="Apache-2.0, BSD-3-Clause",
        model_version=explainer.bundle.version or "unsaved",
        output_space=None,
        params={"rows": len(X), "repeats": repeats, "seed": seed},
        notes=notes,
        timings=Timings(total_ms=elapsed, rows=len(X), per_row_ms=elapsed / max(len(X), 1)),
    )
    return Explanation(data={"heads": heads}, meta=meta)
