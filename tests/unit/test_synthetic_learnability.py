"""Learnability of the synthetic customer table: the targets can be learned, but not from one column.

Gradient-boosted trees on the contract's feature columns only (a random 75/25 split of 40K rows):
engagement R^2 in [0.75, 0.90], churn ROC-AUC in [0.80, 0.90], LTV Spearman >= 0.6; no single
feature reaches engagement R^2 0.6 or churn AUC 0.78. With ``bias=1`` a churn model that never sees
gender still selects women far more often than men (selection-rate ratio < 0.8, 0.8 or more at
``bias=0``) and its engagement errors are larger for women.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.stats import spearmanr
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.metrics import r2_score, roc_auc_score
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits  # scikit-learn's own dependency

from engage.synthetic import SyntheticConfig, generate_customers

pytestmark = pytest.mark.slow

CONTRACT = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "contracts" / "customers_contract.yml").read_text()
)
COLUMNS: dict[str, Any] = CONTRACT["columns"]
FEATURES = [name for name, spec in COLUMNS.items() if spec["role"] == "feature"]
CATEGORICAL = {name for name in FEATURES if COLUMNS[name]["type"] in ("category", "boolean")}
TARGETS = {key: spec["column"] for key, spec in CONTRACT["targets"].items()}
PROTECTED = next(
    name for name, spec in COLUMNS.items() if spec["role"] == "protected" and spec["type"] == "category"
)
ROWS = 40_000
AS_OF = datetime(2024, 6, 30, 12, tzinfo=UTC)


class Split:
    """Encoded features and targets of one generated table, split 75/25.

    Fits run with BLAS limited to one thread: idle OpenBLAS threads left spinning by earlier tests
    otherwise compete with the trees' OpenMP threads on a two-core machine and slow them several-fold.
    """

    def __init__(self, bias: float) -> None:
        frame = generate_customers(SyntheticConfig(rows=ROWS, seed=2024, as_of=AS_OF, bias=bias)).frame
        encoded = {
            name: frame[name].cat.codes.replace(-1, np.nan).astype("float64")
            if isinstance(frame[name].dtype, pd.CategoricalDtype)
            else frame[name].astype("float64")
            for name in FEATURES
        }
        self.x = pd.DataFrame(encoded)
        self.engagement = frame[TARGETS["engagement_score"]].to_numpy(dtype="float64")
        self.churn = frame[TARGETS["churn"]].to_numpy(dtype=bool)
        self.ltv = frame[TARGETS["ltv"]].to_numpy(dtype="float64")
        self.group = frame[PROTECTED].astype(object).to_numpy()
        self.train, self.test = train_test_split(np.arange(ROWS), test_size=0.25, random_state=0)

    def regress(self, y: np.ndarray[Any, Any], columns: list[str]) -> np.ndarray[Any, Any]:
        model = HistGradientBoostingRegressor(
            categorical_features=[name in CATEGORICAL for name in columns], random_state=0
        )
        with threadpool_limits(limits=1, user_api="blas"):
            model.fit(self.x.iloc[self.train][columns], y[self.train])
        predicted: np.ndarray[Any, Any] = model.predict(self.x.iloc[self.test][columns])
        return predicted

    def classify(self, columns: list[str]) -> np.ndarray[Any, Any]:
        model = HistGradientBoostingClassifier(
            categorical_features=[name in CATEGORICAL for name in columns], random_state=0
        )
        with threadpool_limits(limits=1, user_api="blas"):
            model.fit(self.x.iloc[self.train][columns], self.churn[self.train])
        scores: np.ndarray[Any, Any] = model.predict_proba(self.x.iloc[self.test][columns])[:, 1]
        return scores

    def selection_ratio(self, scores: np.ndarray[Any, Any]) -> float:
        """min/max ratio of the female and male shares among the top 20 % churn scores."""
        selected = scores >= np.quantile(scores, 0.8)
        group = self.group[self.test]
        rates = [selected[group == "female"].mean(), selected[group == "male"].mean()]
        return float(min(rates) / max(rates))


@cache
def split(bias: float) -> Split:
    return Split(bias)


def test_targets_are_learnable_within_bands() -> None:
    data = split(0.0)
    test = data.test
    assert 0.10 <= data.churn.mean() <= 0.35
    r2 = r2_score(data.engagement[test], data.regress(data.engagement, FEATURES))
    assert 0.75 <= r2 <= 0.90, r2
    auc = roc_auc_score(data.churn[test], data.classify(FEATURES))
    assert 0.80 <= auc <= 0.90, auc
    rho = spearmanr(data.ltv[test], data.regress(np.log1p(data.ltv), FEATURES)).statistic
    assert rho >= 0.6, rho


def test_no_single_feature_gives_the_answer_away() -> None:
    data = split(0.0)
    test = data.test
    best_r2 = max(r2_score(data.engagement[test], data.regress(data.engagement, [name])) for name in FEATURES)
    assert best_r2 < 0.6, best_r2
    best_auc = max(roc_auc_score(data.churn[test], data.classify([name])) for name in FEATURES)
    assert best_auc < 0.78, best_auc


def test_bias_creates_a_selection_rate_disparity() -> None:
    fair, biased = split(0.0), split(1.0)
    assert fair.selection_ratio(fair.classify(FEATURES)) >= 0.8
    assert biased.selection_ratio(biased.classify(FEATURES)) < 0.8
    # Engagement errors grow for the group under bias, and only then.
    assert error_ratio(fair) < 1.1
    assert error_ratio(biased) > 1.2


def error_ratio(data: Split) -> float:
    """Mean absolute engagement error for women over that for men."""
    error = np.abs(data.regress(data.engagement, FEATURES) - data.engagement[data.test])
    group = data.group[data.test]
    return float(error[group == "female"].mean() / error[group == "male"].mean())
