"""LIME (Ribeiro et al. 2016): a sparse linear model fitted around one row, on the prediction's scale."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["fit_lime", "lime_row"]

F64 = npt.NDArray[np.float64]


def fit_lime(
    names: list[str], categorical: dict[int, list[str]], background: F64, *, classification: bool, seed: int
) -> Any:
    from lime.lime_tabular import LimeTabularExplainer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return LimeTabularExplainer(
            background,
            mode="classification" if classification else "regression",
            feature_names=names,
            categorical_features=sorted(categorical),
            categorical_names=categorical,
            discretize_continuous=True,
            random_state=seed,
        )


def lime_row(
    explainer: Any,
    x: F64,
    predict: Callable[[F64], F64],
    *,
    classification: bool,
    features: int,
    samples: int,
) -> dict[str, Any]:
    """LIME's weights for one encoded row: ``[(condition, weight)]``, intercept, fit R², local prediction."""

    def fn(X: F64) -> F64:
        p = predict(X)
        return np.column_stack([1.0 - p, p]) if classification else p

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if classification:
            result = explainer.explain_instance(
                x, fn, num_features=features, num_samples=samples, labels=(1,)
            )
            weights, intercept = result.as_list(label=1), result.intercept[1]
        else:
            result = explainer.explain_instance(x, fn, num_features=features, num_samples=samples)
            weights, intercept = result.as_list(), next(iter(result.intercept.values()))
    return {
        "weights": [[str(condition), float(w)] for condition, w in weights],
        "intercept": float(intercept),
        "score": float(result.score),
        "local_prediction": float(np.ravel(result.local_pred)[0]),
    }
