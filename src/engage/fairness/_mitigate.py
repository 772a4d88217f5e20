"""Mitigation candidates, each trained on the training rows and scored on the same test rows.

| candidate | stage | what it does | ships as |
|---|---|---|---|
| ``unmitigated`` | none | the trained model | the model bundle |
| ``reweighing`` | pre-processing | classification: weights ``P(g) P(y) / P(g, y)`` per protected cell and label (Kamiran & Calders); regression: each cell weighs the same in total; xgboost retrained | the model bundle (UBJSON) |
| ``exponentiated_gradient_dp`` / ``_eo`` | in-processing | fairlearn ``ExponentiatedGradient`` with ``DemographicParity`` / ``EqualizedOdds`` (classification) | its deterministic best member: one xgboost booster in the bundle (UBJSON) |
| ``exponentiated_gradient_bgl`` | in-processing | ``ExponentiatedGradient`` with ``BoundedGroupLoss`` (regression heads with a group-loss rule) | its deterministic best member (UBJSON) |
| ``threshold_optimizer`` | post-processing | fairlearn ``ThresholdOptimizer`` (demographic parity) on the trained model | reported only |
| ``group_offsets`` | post-processing | one logit offset per protected cell so each cell's selection rate at the decision threshold equals the overall one; ranking within a cell is kept | the bundle plus an offsets file |

Exponentiated gradient returns a randomized classifier: a weighted mixture of the xgboost boosters it
trained, whose fairness holds in expectation over its coin flips. Engage ships one of them instead, the
*deterministic best member*: among the boosters the reduction trained (each a best response to its
fairness-constrained objective; the mixture's members among them), the most accurate one that meets the
policy, judged as the gate judges every candidate (same rules, same test rows), else the member with the
largest weight. The candidate is scored as that member, so what is judged is what ships: one booster,
saved as UBJSON like any head, served by the predictor without fairlearn. fairlearn's threshold
optimizer is randomized too (two thresholds per group, mixed by a coin); it stays reported only. Post-processing candidates read the protected attributes
when scoring: they are eligible only when the policy allows that (``allow_protected_at_inference``).
The in-processing reductions train on a seeded sample of at most 10,000 rows with a smaller xgboost
(60 rounds, depth 4, at most 15 iterations): each reduction fits its learner many times.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from engage.model import GroupOffsets, HeadModel, TrainConfig
from engage.model._groups import AttributeSpec
from engage.model._learners import fit_primary

__all__ = ["Candidate", "GroupOffsets", "HeadData", "Select", "candidates_for", "predict_rows"]

F64 = npt.NDArray[np.float64]
IDX = npt.NDArray[np.intp]
Labels = npt.NDArray[np.object_]

#: rows the in-processing reductions train on (each fits its learner many times)
REDUCTION_ROWS = 10_000
#: a protected cell needs this many training rows for its own offset (else it keeps offset 0)
MIN_CELL_ROWS = 200
#: how far group offsets may pull each cell's selection rate toward the overall one, tried in this order
PULLS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
#: the margin above the policy's parity ratio that group offsets aim for on the training rows
PARITY_MARGIN = 0.03
#: why fairlearn's ThresholdOptimizer is reported only (the trade-off report shows it)
THRESHOLD_OPTIMIZER_UNSHIPPABLE = (
    "randomized: per group it mixes two thresholds by a coin flip at each prediction; group_offsets is "
    "its deterministic, shippable form"
)


@dataclass(frozen=True)
class Select:
    """The gate's judgement of predictions on the test rows: every fairness rule met; the primary metric."""

    meets: Callable[[npt.NDArray[np.float64]], bool]
    accuracy: Callable[[npt.NDArray[np.float64]], float]


@dataclass
class HeadData:
    """What every candidate of one head works from."""

    model: HeadModel
    config: TrainConfig
    X: pd.DataFrame
    y: F64
    cells: Labels  # the full intersection of the protected attributes, per row of X
    train: IDX
    valid: IDX
    test: IDX  # labelled test rows
    threshold: float
    #: the gate's judgement of predictions on the test rows (picks a reduction's deterministic member)
    select: Select | None = None


@dataclass
class Candidate:
    name: str
    stage: str
    description: str
    shippable: bool
    needs_protected: bool
    predictions: F64 | None = None  # on the labelled test rows
    seconds: float = 0.0
    model: HeadModel | None = None  # a retrained model (reweighing)
    offsets: GroupOffsets | None = None
    problem: str | None = None
    notes: list[str] = field(default_factory=list)
    #: why the candidate cannot ship (None when it can)
    unshippable: str | None = None


def _timed(candidate: Candidate, fit: Callable[[], F64]) -> Candidate:
    t = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # fairlearn and sklearn warn about convergence and dtypes
            candidate.predictions = fit()
    except (ValueError, TypeError, ArithmeticError, RuntimeError) as e:
        candidate.problem = f"{type(e).__name__}: {e}"
    candidate.seconds = time.perf_counter() - t
    return candidate


def _sample(rows: IDX, seed: int) -> IDX:
    if len(rows) <= REDUCTION_ROWS:
        return rows
    return np.sort(np.random.default_rng(seed).choice(rows, REDUCTION_ROWS, replace=False))


def _reweighed(d: HeadData) -> HeadModel:
    cells, y = d.cells[d.train].astype(str), d.y[d.train]
    frame = pd.DataFrame({"g": cells, "y": y})
    if d.model.head.classification:
        p_g = frame["g"].map(frame["g"].value_counts(normalize=True))
        p_y = frame["y"].map(frame["y"].value_counts(normalize=True))
        p_gy = frame.groupby(["g", "y"])["y"].transform("size") / len(frame)
        weights = (p_g * p_y / p_gy).to_numpy(dtype="float64")
    else:
        weights = (1.0 / frame["g"].map(frame["g"].value_counts(normalize=True))).to_numpy(dtype="float64")
        weights /= weights.mean()
    return fit_primary(
        d.model.head, d.config, d.X.iloc[d.train], y, d.X.iloc[d.valid], d.y[d.valid], sample_weight=weights
    )


def _small_xgb(classification: bool, seed: int) -> Any:
    import xgboost

    params: dict[str, Any] = {
        "n_estimators": 60,
        "learning_rate": 0.1,
        "max_depth": 4,
        "tree_method": "hist",
        "enable_categorical": True,
        "random_state": seed,
    }
    return xgboost.XGBClassifier(**params) if classification else xgboost.XGBRegressor(**params)


def _reduction(d: HeadData, constraint: Any, candidate: Candidate) -> F64:
    """Fit exponentiated gradient; ship and score its deterministic best member (see the module's doc)."""
    from fairlearn.reductions import ExponentiatedGradient

    rows = _sample(d.train, d.config.seed)
    head = d.model.head
    eg = ExponentiatedGradient(
        _small_xgb(head.classification, d.config.seed), constraints=constraint, max_iter=15
    )
    eg.fit(d.X.iloc[rows], d.y[rows], sensitive_features=d.cells[rows].astype(str))
    # every booster the reduction trained (each a best response to its fairness-constrained objective);
    # the mixture weighs some of them
    members = [_member(head, estimator) for estimator in eg.predictors_]
    mixed = [float(w) for w in np.asarray(eg.weights_, dtype="float64")]
    X_test = d.X.iloc[d.test]
    if head.classification:
        mixture = np.clip(np.asarray(eg._pmf_predict(X_test)[:, 1], dtype="float64"), 0.0, 1.0)
    else:
        mixture = np.asarray(eg.predict(X_test), dtype="float64")
    index, why = _best_member(d, members, mixed)
    candidate.model = members[index]
    predictions = candidate.model.predict(X_test)
    candidate.notes.append(
        f"ships booster {index + 1} of the {len(members)} it trained (weight {mixed[index]:.3f} in its randomized "
        f"mixture): "
        f"{why}; the mixture itself scores differently ({_mixture_summary(head, d.y[d.test], mixture)})"
    )
    return predictions


def _member(head: Any, estimator: Any) -> HeadModel:
    """One booster of a reduction's mixture as a head model (the bundle saves it like any xgboost head)."""
    from engage.contract import Distribution

    objective = "binary:logistic" if head.classification else "reg:squarederror"
    transform: Any = "clip01" if head.distribution is Distribution.unit_interval else "none"
    rounds = int(estimator.get_booster().num_boosted_rounds())
    return HeadModel(head, "xgboost", estimator, objective, transform=transform, best_iteration=rounds - 1)


def _best_member(d: HeadData, members: list[HeadModel], weights: list[float]) -> tuple[int, str]:
    """The most accurate member meeting the policy (as the gate judges every candidate), else the
    heaviest in the mixture; and why."""
    heaviest = int(np.argmax(weights))
    if d.select is None:
        return heaviest, "the largest weight in the mixture"
    X_test = d.X.iloc[d.test]
    predictions = [m.predict(X_test) for m in members]
    accuracy = [d.select.accuracy(p) for p in predictions]
    # most accurate first: the first that meets the policy is the best (fairness figures cost more)
    for rank, i in enumerate(sorted(range(len(members)), key=lambda i: -accuracy[i])):
        if d.select.meets(predictions[i]):
            return i, f"the most accurate that meets the policy ({rank} more accurate fail it)"
    return heaviest, "none of them meets the policy; the largest weight in the mixture"


def _mixture_summary(head: Any, y: F64, mixture: F64) -> str:
    from engage.training import head_metrics

    metrics = head_metrics(head, y, mixture)
    name = "auc_roc" if head.classification else "r2"
    return f"{name} {metrics.get(name, float('nan')):.4f} on the test rows, fair in expectation only"


def _prefit(model: HeadModel) -> Any:
    """The trained head as a fitted scikit-learn classifier, for fairlearn's ThresholdOptimizer."""
    from sklearn.base import BaseEstimator, ClassifierMixin

    class Prefit(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
        def __init__(self) -> None:
            self.classes_ = np.array([0.0, 1.0])

        def fit(self, X: Any, y: Any) -> Prefit:  # pragma: no cover - prefit, never refitted
            return self

        def predict_proba(self, X: pd.DataFrame) -> npt.NDArray[np.float64]:
            p = model.predict(X)
            return np.column_stack([1 - p, p])

        def predict(self, X: pd.DataFrame) -> F64:
            return (model.predict(X) >= 0.5).astype("float64")

        def __sklearn_is_fitted__(self) -> bool:
            return True

    return Prefit()


def _threshold_optimizer(d: HeadData) -> F64:
    from fairlearn.postprocessing import ThresholdOptimizer

    rows = _sample(d.train, d.config.seed)
    optimizer = ThresholdOptimizer(
        estimator=_prefit(d.model),
        constraints="demographic_parity",
        objective="accuracy_score",
        predict_method="predict_proba",
        prefit=True,
    )
    optimizer.fit(d.X.iloc[rows], d.y[rows], sensitive_features=d.cells[rows].astype(str))
    pmf = optimizer._pmf_predict(d.X.iloc[d.test], sensitive_features=d.cells[d.test].astype(str))
    return np.clip(np.asarray(pmf[:, 1], dtype="float64"), 0.0, 1.0)  # its mixing can leave 1 + 1e-16


def fit_offsets(d: HeadData, attributes: list[AttributeSpec], min_ratio: float) -> GroupOffsets:
    """The smallest per-cell logit offsets that bring the training rows' selection-rate ratio to ``min_ratio``.

    Each cell's selection rate at the decision threshold is pulled a share ``pull`` of the way toward the
    overall rate (a tenth, two tenths, ..., all the way), stopping at the first share whose lowest-to-highest
    ratio over the cells with at least ``MIN_CELL_ROWS`` training rows reaches ``min_ratio``: the least
    change that meets parity, so ranking quality and error-rate balance suffer as little as possible.
    Smaller cells keep offset 0.
    """
    from scipy.special import logit

    prob = d.model.predict(d.X.iloc[d.train])
    cells = d.cells[d.train].astype(str)
    overall = float((prob >= d.threshold).mean())
    scores = logit(np.clip(prob, 1e-7, 1 - 1e-7))
    cut = float(logit(d.threshold))
    sized = [str(c) for c in np.unique(cells) if (cells == c).sum() >= MIN_CELL_ROWS]
    rates = {c: float((prob[cells == c] >= d.threshold).mean()) for c in sized}
    offsets: dict[str, float] = {}
    if not 0.0 < overall < 1.0 or not sized:
        return GroupOffsets(attributes=attributes, offsets=offsets)
    for pull in PULLS:
        targets = {c: r + pull * (overall - r) for c, r in rates.items()}
        if min(targets.values()) / max(targets.values()) >= min_ratio or pull >= 1.0:
            break
    for c, target in targets.items():
        mine = scores[cells == c]
        # shift so that a share `target` of this cell's scores lands at or above the threshold
        offsets[c] = round(cut - float(np.quantile(mine, 1.0 - target)), 6)
    return GroupOffsets(attributes=attributes, offsets=offsets)


def predict_rows(d: HeadData, candidate: Candidate, rows: IDX) -> F64 | None:
    """A shippable candidate's predictions on any rows of ``d.X`` (as its bundle would score them);
    None for a candidate that does not ship (fairlearn's threshold optimizer) or failed to train."""
    if candidate.problem is not None or not candidate.shippable:
        return None
    if candidate.model is not None:
        return candidate.model.predict(d.X.iloc[rows])
    base = d.model.predict(d.X.iloc[rows])
    return base if candidate.offsets is None else candidate.offsets.apply(base, d.cells[rows])


def unmitigated(d: HeadData) -> Candidate:
    """The trained model itself, scored on the test rows."""
    return Candidate(
        "unmitigated", "none", "the trained model", True, False, predictions=d.model.predict(d.X.iloc[d.test])
    )


def candidates_for(
    d: HeadData, attributes: list[AttributeSpec], group_rmse_bound: float | None, min_parity: float = 0.8
) -> list[Candidate]:
    """Train and score every candidate that applies to this head."""
    from fairlearn.reductions import BoundedGroupLoss, DemographicParity, EqualizedOdds, SquareLoss

    head = d.model.head
    out = [unmitigated(d)]
    weighed = Candidate(
        "reweighing",
        "pre-processing",
        "xgboost retrained with weights P(g)P(y)/P(g,y) per protected cell and label"
        if head.classification
        else "xgboost retrained with every protected cell weighing the same in total",
        True,
        False,
    )

    def reweigh() -> F64:
        weighed.model = _reweighed(d)
        return weighed.model.predict(d.X.iloc[d.test])

    out.append(_timed(weighed, reweigh))
    if head.classification:
        for name, constraint, what in (
            ("exponentiated_gradient_dp", DemographicParity(difference_bound=0.01), "DemographicParity"),
            ("exponentiated_gradient_eo", EqualizedOdds(difference_bound=0.01), "EqualizedOdds"),
        ):
            reduced = Candidate(
                name,
                "in-processing",
                f"fairlearn ExponentiatedGradient, {what}: its deterministic best member",
                True,
                False,
            )
            out.append(_timed(reduced, partial(_reduction, d, constraint, reduced)))
        out.append(
            _timed(
                Candidate(
                    "threshold_optimizer",
                    "post-processing",
                    "fairlearn ThresholdOptimizer, demographic parity",
                    False,
                    True,
                    unshippable=THRESHOLD_OPTIMIZER_UNSHIPPABLE,
                ),
                lambda: _threshold_optimizer(d),
            )
        )
        shifted = Candidate(
            "group_offsets",
            "post-processing",
            "a logit offset per protected cell equalising selection rates at the decision threshold",
            True,
            True,
        )

        def offsets() -> F64:
            shifted.offsets = fit_offsets(d, attributes, min_parity + PARITY_MARGIN)
            base = d.model.predict(d.X.iloc[d.test])
            return shifted.offsets.apply(base, d.cells[d.test])

        out.append(_timed(shifted, offsets))
    elif group_rmse_bound is not None:
        low, high = float(np.min(d.y[d.train])), float(np.max(d.y[d.train]))
        bounded = Candidate(
            "exponentiated_gradient_bgl",
            "in-processing",
            f"fairlearn ExponentiatedGradient, BoundedGroupLoss (squared loss <= {group_rmse_bound**2:g}): "
            "its deterministic best member",
            True,
            False,
        )
        loss = BoundedGroupLoss(SquareLoss(low, high), upper_bound=group_rmse_bound**2)
        out.append(_timed(bounded, lambda: _reduction(d, loss, bounded)))
    return out
