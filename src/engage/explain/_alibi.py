"""The alibi methods: KernelSHAP (model-agnostic attributions) and anchors (if-then rules).

alibi is under the Business Source License 1.1: this is the only module that imports it, and only
:class:`~engage.explain.Explainer` calls it, after :func:`~engage.explain.check_method` has allowed it.
Both methods see the model as a function of the encoded matrix (see :class:`~engage.explain.Encoder`).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["anchor", "fit_anchors", "fit_kernel_shap", "kernel_shap_values"]

F64 = npt.NDArray[np.float64]


def fit_kernel_shap(margin: Callable[[F64], F64], names: list[str], background: F64, *, seed: int) -> Any:
    """A fitted alibi ``KernelShap`` of the model's margin (identity link, so it is TreeSHAP's scale)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from alibi.explainers import KernelShap

        # a 1-D output (alibi warns that it "returned a scalar value": that is what a margin is)
        logging.getLogger("alibi.explainers.shap_wrappers").setLevel(logging.ERROR)
        explainer = KernelShap(
            margin,
            link="identity",
            feature_names=names,
            task="regression",
            seed=seed,
        )
        explainer.fit(background, summarise_background=False)
    return explainer


def kernel_shap_values(explainer: Any, X: F64, *, samples: int) -> tuple[F64, float]:
    """``(values (n, features), base_value)`` with at most ``samples`` coalitions per row."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = explainer.explain(X, nsamples=samples, l1_reg=False, silent=True)
    values = np.asarray(result.shap_values[0], dtype="float64").reshape(len(X), -1)
    base = float(np.ravel(result.expected_value)[0])
    return values, base


def fit_anchors(
    classify: Callable[[F64], npt.NDArray[np.int64]],
    names: list[str],
    categorical: dict[int, list[str]],
    background: F64,
    *,
    seed: int,
) -> Any:
    """A fitted alibi ``AnchorTabular`` over the model's decision (a class per row)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from alibi.explainers import AnchorTabular

        explainer = AnchorTabular(classify, feature_names=names, categorical_names=categorical, seed=seed)
        explainer.fit(background, disc_perc=(25, 50, 75))
    return explainer


def anchor(explainer: Any, x: F64, *, threshold: float) -> dict[str, Any]:
    """The anchor of one encoded row: its rules, precision and coverage."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = explainer.explain(x, threshold=threshold)
    return {
        "rules": [str(rule) for rule in result.anchor],
        "precision": float(np.ravel(result.precision)[0]) if np.size(result.precision) else 1.0,
        "coverage": float(np.ravel(result.coverage)[0]) if np.size(result.coverage) else 1.0,
    }
