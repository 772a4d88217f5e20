"""Overfitting and leakage: the train-to-test gap of each head stays within a stated bound, and a model
trained on shuffled labels scores at chance on the test rows.

The train figures are the evaluation step's (measured on the training rows; ``test_accuracy`` checks that
they equal an independent recomputation); the test rows are the latest extract.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.ml.conftest import Run, train_run

pytestmark = pytest.mark.ml


@pytest.mark.parametrize(
    ("head", "metric", "bound"),
    [
        ("engagement_score", "r2", 0.12),
        ("churn", "auc_roc", 0.13),
        # LTV by rank: its R^2 is dominated by the few largest values of a heavy tail and swings by 0.1
        # between seeds (the policy judges LTV by Spearman for the same reason)
        ("ltv", "spearman", 0.10),
    ],
)
def test_the_train_to_test_gap_of_each_head_is_bounded(
    run: Run, head: str, metric: str, bound: float
) -> None:
    """train - test of the head's metric <= ``bound``.

    Measured at this size over generator seeds 31-36, the gaps are 0.05-0.09 (engagement R^2), 0.08-0.10
    (churn AUC) and 0.03-0.05 (LTV Spearman); a model that memorises its rows (depth 12, no minimum child
    weight: train AUC 0.99) has gaps of 0.16-0.20, 0.17 and 0.17. The bounds sit between the two, so
    lost early stopping or regularisation fails them while seed-to-seed variation does not.
    """
    figures = run.evaluation["heads"][head]["models"]["xgboost"]
    train, test = figures["train"][metric], figures["test"][metric]
    assert train - test <= bound, f"{head}: {metric} train {train:.4f}, test {test:.4f}"


@pytest.fixture(scope="module")
def shuffled(run: Run, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """Every head trained, exactly as the main run, on the same rows with each target column shuffled."""
    rng = np.random.default_rng(2024)
    frame = run.frame.copy()
    for target in run.contract.targets.values():
        frame[target.column] = frame[target.column].to_numpy()[rng.permutation(len(frame))]
    return train_run(frame, run.contract, Path(tmp_path_factory.mktemp("ml-shuffled")))


@pytest.mark.slow
def test_a_model_trained_on_shuffled_labels_scores_at_chance(shuffled: Run) -> None:
    """The permutation test: shuffling the labels breaks every link between the inputs and the target, so
    a model can only beat chance on the test rows if the pipeline let it learn their labels (a split that
    trains on test rows, an input derived from the target). AUC within 0.5 +- 0.05 (3.8 standard errors of
    a chance AUC on 3,000 rows with 20 % positives); R^2 at most 0.01 and |Spearman| at most 0.08 (4
    standard errors of a chance rank correlation on 3,000 rows). Measured: AUC 0.49, Spearman -0.02 and
    -0.02; with the test rows added to the training rows, AUC 0.59 and Spearman 0.15 and 0.19."""
    heads: dict[str, Any] = shuffled.evaluation["heads"]
    churn = heads["churn"]["models"]["xgboost"]["test"]
    assert abs(churn["auc_roc"] - 0.5) <= 0.05, churn
    for head in ("engagement_score", "ltv"):
        test = heads[head]["models"]["xgboost"]["test"]
        assert test["r2"] <= 0.01, (head, test)
        assert abs(test["spearman"]) <= 0.08, (head, test)
