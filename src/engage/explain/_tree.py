"""Exact TreeSHAP of an xgboost head, computed by xgboost itself (``pred_contribs``).

``shap.TreeExplainer`` cannot read xgboost 3 models (see ../shared/guide/ecosystem.md); xgboost's own
implementation is the same algorithm (Lundberg et al. 2020), exact, and fast. Attributions are on the
model's margin: log-odds for a classifier, the logit of a unit-interval score, the log of a Tweedie
mean. Per row they add up to that margin: ``sum(values) + base_value == margin`` within
:data:`ADDITIVITY_TOLERANCE` (float32 arithmetic inside xgboost; the largest error seen is ~2e-6).

A single row pays mostly fixed costs (a DMatrix, thread start-up), so small batches go to a copy of the
booster that runs on one thread: on a busy 2-core machine that is 10x faster for one row.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from engage.encoding import Encoder
from engage.errors import ExplainError
from engage.training import HeadModel

__all__ = ["ADDITIVITY_TOLERANCE", "TreeShap"]

F64 = npt.NDArray[np.float64]
#: |sum(values) + base_value - margin| allowed per row, on the margin scale
ADDITIVITY_TOLERANCE = 1e-4
_SMALL = 16  # rows computed on the one-thread booster


class TreeShap:
    """TreeSHAP of one xgboost head on encoded rows (see :class:`~engage.explain.Encoder`)."""

    def __init__(self, model: HeadModel, encoder: Encoder) -> None:
        if model.learner != "xgboost":
            raise ExplainError(f"tree_shap reads xgboost trees; head {model.head.name} is {model.learner}")
        self.model = model
        self.encoder = encoder
        self._booster: Any = model.estimator.get_booster()
        names = self._booster.feature_names
        if names is not None and list(names) != encoder.names:
            raise ExplainError(
                f"head {model.head.name}: the model's features ({', '.join(names)}) are not the bundle's "
                f"feature set ({', '.join(encoder.names)})"
            )
        self._single: Any = self._booster.copy()
        self._single.set_param({"nthread": 1})
        best = model.best_iteration
        self._range = (0, best + 1) if best is not None else (0, 0)

    def _matrix(self, X: F64) -> Any:
        import xgboost

        small = len(X) <= _SMALL
        # no feature names: the columns are the encoder's, checked against the booster once above, and
        # naming them on every call costs more than the TreeSHAP of one row
        dmatrix = xgboost.DMatrix(
            X, feature_types=self.encoder.xgboost_types, enable_categorical=True, nthread=1 if small else -1
        )
        return dmatrix, (self._single if small else self._booster)

    def shap_values(self, X: F64) -> tuple[F64, F64, F64]:
        """``(values (n, features), base_value (n,), margin (n,))`` of encoded rows ``X``."""
        dmatrix, booster = self._matrix(np.asarray(X, dtype="float64").reshape(-1, len(self.encoder.names)))
        contribs = booster.predict(
            dmatrix, pred_contribs=True, iteration_range=self._range, validate_features=False
        )
        margin = booster.predict(
            dmatrix, output_margin=True, iteration_range=self._range, validate_features=False
        )
        contribs = np.asarray(contribs, dtype="float64").reshape(len(margin), -1)
        return contribs[:, :-1], contribs[:, -1], np.asarray(margin, dtype="float64")


def additivity_error(values: F64, base: F64, margin: F64) -> float:
    """The largest |sum(values) + base - margin| over the rows."""
    if len(margin) == 0:
        return 0.0
    return float(np.max(np.abs(values.sum(axis=1) + base - margin)))
