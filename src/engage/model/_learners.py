"""The learners of each head: xgboost (primary) and scikit-learn histogram gradient boosting (baseline).

The objective follows the target's declared distribution:

* ``continuous``: squared error.
* ``unit_interval`` (engagement score): xgboost's cross-entropy on the continuous label
  (``reg:logistic``), so every prediction lies in [0, 1]; the baseline fits squared error and clips.
* ``heavy_tailed`` (lifetime value): xgboost's Tweedie deviance (log link, variance power 1.5). LTV has
  a mass of exact zeros (customers who leave before buying) and a long right tail; Tweedie models both
  with one compound Poisson-gamma likelihood, predicts the mean (so totals add up, which a log-transform
  model does not: it predicts a geometric mean and under-forecasts revenue), and never goes negative.
  The baseline fits squared error on ``log1p(ltv)`` and transforms back: the common alternative,
  kept beside it every run so the choice stays measured.
* binary classification (churn): log loss, then isotonic calibration on a held-out half of the
  validation rows (the other half drives early stopping), so a predicted 0.3 means 30 %.

Heavy libraries load inside the functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from engage.contract import Distribution
from engage.errors import ConfigError

from ._heads import Head

__all__ = ["HeadModel", "TrainConfig", "calibrate", "fit_baseline", "fit_primary", "xgb_params"]

F64 = npt.NDArray[np.float64]
Learner = Literal["xgboost", "sklearn"]
Transform = Literal["none", "log1p", "clip01"]


class TrainConfig(BaseModel):
    """Hyperparameters shared by every head; the defaults are what ``engage train`` uses."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = Field(default=0, ge=0)
    max_rounds: int = Field(
        default=1000, ge=1, description="Most boosting rounds (early stopping ends sooner)"
    )
    early_stopping_rounds: int = Field(default=30, ge=1)
    learning_rate: float = Field(default=0.1, gt=0, le=1)
    max_depth: int = Field(default=6, ge=1, le=16)
    min_child_weight: float = Field(default=1.0, ge=0)
    subsample: float = Field(default=0.9, gt=0, le=1)
    colsample_bytree: float = Field(default=0.9, gt=0, le=1)
    tweedie_variance_power: float = Field(default=1.5, gt=1, lt=2)
    baseline_max_iter: int = Field(default=300, ge=1)
    calibrate: bool = Field(default=True, description="Isotonic calibration of classifier probabilities")


@dataclass
class HeadModel:
    """A fitted head: the estimator, how its raw output becomes a prediction, and its calibrator."""

    head: Head
    learner: Learner
    estimator: Any
    objective: str
    transform: Transform = "none"
    calibrator: Any | None = None
    best_iteration: int | None = None

    def raw(self, X: pd.DataFrame) -> F64:
        if self.head.classification:
            return np.asarray(self.estimator.predict_proba(X)[:, 1], dtype="float64")
        return np.asarray(self.estimator.predict(X), dtype="float64")

    def margin(self, X: pd.DataFrame) -> F64:
        """The untransformed model output that tree attributions add up to (see :attr:`margin_space`)."""
        if self.learner == "xgboost":
            return np.asarray(self.estimator.predict(X, output_margin=True), dtype="float64")
        if self.head.classification:
            return np.asarray(self.estimator.decision_function(X), dtype="float64")
        return np.asarray(self.estimator.predict(X), dtype="float64")

    @property
    def margin_space(self) -> str:
        """What :meth:`margin` measures: ``log-odds``, ``logit``, ``log`` or ``identity``."""
        if self.head.classification:
            return "log-odds"
        if self.learner == "xgboost":
            return {"reg:logistic": "logit", "reg:tweedie": "log"}.get(self.objective, "identity")
        return "log1p" if self.transform == "log1p" else "identity"

    def predict(self, X: pd.DataFrame) -> F64:
        """Predictions on the target's scale (classification: calibrated probability of the positive)."""
        return self.finish(self.raw(X))

    def from_margin(self, margin: F64) -> F64:
        """:meth:`predict` from an xgboost head's :meth:`margin`, without scoring the trees again."""
        if self.learner != "xgboost":
            raise ConfigError(f"head {self.head.name}: from_margin needs an xgboost head, not {self.learner}")
        if self.objective in ("binary:logistic", "reg:logistic"):
            raw = 1.0 / (1.0 + np.exp(-margin))
        elif self.objective == "reg:tweedie":
            raw = np.exp(margin)
        else:
            raw = np.asarray(margin, dtype="float64")
        return self.finish(raw)

    def finish(self, raw: F64) -> F64:
        """The learner's raw output made a prediction: calibration, back-transform, bounds."""
        out = np.asarray(raw, dtype="float64")
        if self.calibrator is not None:
            out = np.asarray(self.calibrator.predict(out), dtype="float64")
        return self.settle(out)

    def settle(self, out: F64) -> F64:
        """A calibrated output made a prediction: back-transform and bounds (:meth:`finish` after its
        calibration; the predictor calls it after an isotonic calibration of its own, for one value)."""
        out = np.asarray(out, dtype="float64")
        if self.transform == "log1p":
            out = np.expm1(out)
        if self.head.classification or self.transform == "clip01":
            out = np.clip(out, 0.0, 1.0)
        elif self.head.distribution is Distribution.heavy_tailed:
            out = np.maximum(out, 0.0)
        return out


def _xgb_objective(head: Head) -> str:
    if head.classification:
        return "binary:logistic"
    return {
        Distribution.continuous: "reg:squarederror",
        Distribution.unit_interval: "reg:logistic",
        Distribution.heavy_tailed: "reg:tweedie",
    }[head.distribution]


def fit_primary(
    head: Head,
    config: TrainConfig,
    X: pd.DataFrame,
    y: F64,
    X_val: pd.DataFrame,
    y_val: F64,
    sample_weight: F64 | None = None,
) -> HeadModel:
    """xgboost with early stopping on ``(X_val, y_val)`` (rows weighted by ``sample_weight`` if given)."""
    import xgboost

    objective = _xgb_objective(head)
    params = xgb_params(head, config)
    model: Any
    if head.classification:
        model = xgboost.XGBClassifier(eval_metric="logloss", **params)
    else:
        model = xgboost.XGBRegressor(**params)
    model.fit(X, y, sample_weight=sample_weight, eval_set=[(X_val, y_val)], verbose=False)
    return HeadModel(head, "xgboost", model, objective, best_iteration=int(model.best_iteration))


def xgb_params(head: Head, config: TrainConfig) -> dict[str, Any]:
    """The xgboost estimator's parameters of ``head`` (classifiers add ``eval_metric="logloss"``):
    :func:`fit_primary` and the distributed engine's ``xgboost.dask`` training use the same ones."""
    objective = _xgb_objective(head)
    params: dict[str, Any] = {
        "objective": objective,
        "n_estimators": config.max_rounds,
        "learning_rate": config.learning_rate,
        "max_depth": config.max_depth,
        "min_child_weight": config.min_child_weight,
        "subsample": config.subsample,
        "colsample_bytree": config.colsample_bytree,
        "early_stopping_rounds": config.early_stopping_rounds,
        "tree_method": "hist",
        "enable_categorical": True,
        "random_state": config.seed,
    }
    if objective == "reg:tweedie":
        params["tweedie_variance_power"] = config.tweedie_variance_power
    return params


def fit_baseline(
    head: Head, config: TrainConfig, X: pd.DataFrame, y: F64, X_val: pd.DataFrame, y_val: F64
) -> HeadModel:
    """scikit-learn histogram gradient boosting, early-stopped on the same validation rows."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    common: dict[str, Any] = {
        "max_iter": config.baseline_max_iter,
        "learning_rate": 0.1,
        "categorical_features": "from_dtype",
        "early_stopping": True,
        "n_iter_no_change": 20,
        "random_state": config.seed,
    }
    transform: Transform = "none"
    if head.classification:
        model: Any = HistGradientBoostingClassifier(**common)
        objective = "log_loss"
    else:
        model = HistGradientBoostingRegressor(**common)
        objective = "squared_error"
        if head.distribution is Distribution.heavy_tailed:
            transform, objective = "log1p", "squared_error on log1p(target)"
            y, y_val = np.log1p(np.maximum(y, 0.0)), np.log1p(np.maximum(y_val, 0.0))
        elif head.distribution is Distribution.unit_interval:
            transform = "clip01"
    model.fit(X, y, X_val=X_val, y_val=y_val)
    return HeadModel(
        head, "sklearn", model, objective, transform=transform, best_iteration=int(model.n_iter_)
    )


def calibrate(model: HeadModel, X_cal: pd.DataFrame, y_cal: F64, seed: int = 0) -> str:
    """Fit an isotonic map from raw probability to observed rate on held-out rows, if it helps.

    Boosted log-loss models are often calibrated already, and an isotonic fit on a few thousand rows
    then only adds noise. So the map is first cross-fitted on two halves of the rows (each half scored
    by the map fitted on the other); it is kept (refitted on all the rows) only when that lowers the
    log loss against the raw probabilities. Returns a one-line account of the decision.
    """
    from sklearn.isotonic import IsotonicRegression
    from sklearn.metrics import log_loss

    raw = model.raw(X_cal)
    order = np.random.default_rng(seed).permutation(len(raw))
    halves = (order[: len(raw) // 2], order[len(raw) // 2 :])
    crossed = np.empty_like(raw)
    for fit_rows, score_rows in (halves, halves[::-1]):
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(
            raw[fit_rows], y_cal[fit_rows]
        )
        crossed[score_rows] = iso.predict(raw[score_rows])
    before, after = (
        log_loss(y_cal, raw, labels=[0, 1]),
        log_loss(y_cal, np.clip(crossed, 1e-6, 1 - 1e-6), labels=[0, 1]),
    )
    head = model.head.name
    if after >= before:
        return (
            f"head {head} ({model.learner}): kept the raw probabilities: isotonic calibration did not lower "
            f"the cross-fitted log loss on {len(raw):,} held-out rows ({after:.4f} vs {before:.4f})"
        )
    model.calibrator = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, y_cal)
    return (
        f"head {head} ({model.learner}): isotonic calibration on {len(raw):,} held-out rows "
        f"(cross-fitted log loss {after:.4f} vs {before:.4f} raw)"
    )
