"""Train every head a contract defines: xgboost and the scikit-learn baseline, metrics, policy, champion.

:func:`train` works on a table in memory and returns a :class:`TrainResult`; :func:`train_table` first
refuses a table that fails its data contract, then trains and writes every output through
:func:`write_outputs` (into a staging folder, moved into place only when complete).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from engage.contract import Contract
from engage.errors import EngageError, TrainingError
from engage.features import FeatureSet, Split, design_matrix, fit_feature_set, time_split
from engage.model import ModelBundle, load_bundle
from engage.model._heads import Head, check_parts, head_labels, plan_heads
from engage.model._learners import HeadModel, TrainConfig, calibrate, fit_baseline, fit_primary
from engage.policy import PolicyVerdict, PromotionPolicy, evaluate, load_policy

__all__ = ["ChampionComparison", "HeadResult", "TrainResult", "head_metrics", "train"]

F64 = npt.NDArray[np.float64]
IDX = npt.NDArray[np.intp]

#: train-part metrics (for the overfitting rule) are measured on at most this many sampled rows
TRAIN_METRIC_ROWS = 200_000


def head_metrics(head: Head, y: F64, pred: F64) -> dict[str, float]:
    """The figures of one head: regression (and value) metrics, or classification metrics."""
    from engage.evaluation import classification_metrics, regression_metrics, value_metrics

    if head.classification:
        return classification_metrics(y, pred, name=head.name)
    out = regression_metrics(y, pred, name=head.name)
    if head.value and (y >= 0).all() and y.sum() > 0:
        out.update(value_metrics(y, pred, name=head.name))
    return out


@dataclass
class HeadResult:
    """One trained head: both models, their train and test figures, and the test predictions."""

    head: Head
    primary: HeadModel
    baseline: HeadModel
    rows: dict[str, int]
    test_rows: IDX  # positions into the training frame of this head's labelled test rows
    y_test: F64
    predictions: dict[str, F64]  # model name -> predictions on the labelled test rows
    all_test_predictions: dict[str, F64]  # model name -> predictions on every row of split.test
    metrics: dict[str, dict[str, dict[str, float]]]  # model name -> part -> metric -> value
    seconds: dict[str, float]
    notes: list[str] = field(default_factory=list)

    def test_metrics(self, model: str = "xgboost") -> dict[str, float]:
        return self.metrics[model]["test"]


@dataclass
class ChampionComparison:
    """The production model (champion) against this run's model (challenger) on the same test rows."""

    champion: str
    primary_metric: dict[str, str]
    champion_metrics: dict[str, dict[str, float]]
    challenger_metrics: dict[str, dict[str, float]]
    min_improvement: float
    problem: str | None = None

    def delta(self, head: str) -> float:
        name = self.primary_metric[head]
        return self.challenger_metrics[head][name] - self.champion_metrics[head][name]

    def head_winner(self, head: str) -> str:
        return "challenger" if self.delta(head) > self.min_improvement else "champion"

    @property
    def winner(self) -> str:
        """The challenger wins only by beating the champion on every head both have."""
        if self.problem is not None or not self.champion_metrics:
            return "challenger"  # nothing to defend: the champion could not be scored
        heads = list(self.champion_metrics)
        return "challenger" if all(self.head_winner(h) == "challenger" for h in heads) else "champion"

    def lines(self) -> list[str]:
        if self.problem is not None:
            return [f"champion {self.champion} could not be scored: {self.problem}"]
        out = []
        for head in self.champion_metrics:
            name = self.primary_metric[head]
            champ, chall = self.champion_metrics[head][name], self.challenger_metrics[head][name]
            out.append(
                f"{head}: {name} challenger {chall:.4f} vs champion {champ:.4f} "
                f"({self.delta(head):+.4f}) -> {self.head_winner(head)} wins"
            )
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "champion": self.champion,
            "problem": self.problem,
            "winner": self.winner,
            "min_improvement": self.min_improvement,
            "heads": {
                h: {
                    "metric": self.primary_metric[h],
                    "champion": self.champion_metrics[h][self.primary_metric[h]],
                    "challenger": self.challenger_metrics[h][self.primary_metric[h]],
                    "delta": self.delta(h),
                    "winner": self.head_winner(h),
                }
                for h in self.champion_metrics
            },
        }


@dataclass
class TrainResult:
    contract: Contract
    features: FeatureSet
    split: Split
    heads: dict[str, HeadResult]
    notes: list[str]
    verdict: PolicyVerdict
    policy: PromotionPolicy
    config: TrainConfig
    rows: int
    seconds: float
    champion: ChampionComparison | None = None
    champion_predictions: dict[str, F64] = field(default_factory=dict)
    trained_at: str = ""

    def bundle(self, learner: str = "xgboost") -> ModelBundle:
        models = {n: (r.primary if learner == "xgboost" else r.baseline) for n, r in self.heads.items()}
        return ModelBundle(features=self.features, heads=models, metadata=self._metadata(learner))

    def _metadata(self, learner: str) -> dict[str, Any]:
        from engage import __version__

        return {
            "engage_version": __version__,
            "learner": learner,
            "trained_at": self.trained_at,
            "contract": {"name": self.contract.contract, "version": self.contract.version},
            "policy": {"name": self.policy.policy, "version": self.policy.version},
            "split": self.split.how,
            "rows": {"table": self.rows, **next(iter(self.heads.values())).rows},
            "config": self.config.model_dump(),
            "metrics": {n: _finite(r.metrics[learner]["test"]) for n, r in self.heads.items()},
            "policy_passed": self.verdict.passed if learner == "xgboost" else None,
        }


def _finite(metrics: dict[str, float]) -> dict[str, float | None]:
    return {k: (v if math.isfinite(v) else None) for k, v in metrics.items()}


def train(
    frame: pd.DataFrame,
    contract: Contract,
    *,
    policy: PromotionPolicy | None = None,
    config: TrainConfig | None = None,
    heads: Sequence[str] | None = None,
    champion: Path | None = None,
    features: FeatureSet | None = None,
    split: Split | None = None,
) -> TrainResult:
    """Train each head the contract defines on ``frame`` (already conformed to the contract).

    ``features`` and ``split`` default to :func:`fit_feature_set` and :func:`time_split` of ``frame``;
    a pipeline passes the ones its features step decided, so heads trained apart share them.
    """
    started = time.perf_counter()
    config = config or TrainConfig()
    planned, notes = plan_heads(contract, heads)
    # fail fast on a target absent from the table, then on one the split leaves too few rows or a single
    # class, before any fitting
    labels = {head.name: head_labels(frame, head) for head in planned}
    split = split if split is not None else time_split(frame, contract, seed=config.seed)
    _check_split(split, len(frame))
    parts = {"train": split.train, "validation": split.valid, "test": split.test}
    for head in planned:
        check_parts(head, labels[head.name], parts)
    features = features if features is not None else fit_feature_set(frame.iloc[split.train], contract)
    X = design_matrix(frame, features)
    fitted: dict[str, dict[str, HeadModel]] = {}
    seconds: dict[str, dict[str, float]] = {}
    for head in planned:
        fitted[head.name], seconds[head.name], head_notes = _fit_head(
            head, labels[head.name], X, split, config
        )
        notes.extend(head_notes)
    result = measure(
        frame,
        contract,
        features=features,
        split=split,
        models=fitted,
        policy=policy,
        config=config,
        seconds=seconds,
        notes=notes,
        champion=champion,
    )
    result.seconds = time.perf_counter() - started
    return result


def measure(
    frame: pd.DataFrame,
    contract: Contract,
    *,
    features: FeatureSet,
    split: Split,
    models: Mapping[str, Mapping[str, HeadModel]],
    policy: PromotionPolicy | None = None,
    config: TrainConfig | None = None,
    seconds: Mapping[str, dict[str, float]] | None = None,
    notes: Sequence[str] = (),
    champion: Path | None = None,
) -> TrainResult:
    """Score fitted heads (``models[head]["xgboost" | "sklearn"]``) on the split and judge them by the policy.

    The evaluation half of :func:`train`, on its own so a pipeline can fit heads in parallel tasks and
    measure them together.
    """
    started = time.perf_counter()
    config = config or TrainConfig()
    policy = policy or load_policy()
    _check_split(split, len(frame))
    X = design_matrix(frame, features)
    results: dict[str, HeadResult] = {}
    for name, learners in models.items():
        head = learners["xgboost"].head
        y = head_labels(frame, head)
        results[name] = _measure_head(
            head, dict(learners), y, X, split, config, dict((seconds or {}).get(name, {}))
        )
    verdict = evaluate(
        policy,
        {n: r.test_metrics() for n, r in results.items()},
        train_metrics={n: r.metrics["xgboost"]["train"] for n, r in results.items()},
        tasks={n: r.head.task.value for n, r in results.items()},
    )
    result = TrainResult(
        contract=contract,
        features=features,
        split=split,
        heads=results,
        notes=list(notes),
        verdict=verdict,
        policy=policy,
        config=config,
        rows=len(frame),
        seconds=0.0,
        trained_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    if champion is not None:
        _challenge(result, frame, champion)
    result.seconds = time.perf_counter() - started
    return result


def _check_split(split: Split, rows: int) -> None:
    top = max((int(p.max()) for p in (split.train, split.valid, split.test) if len(p)), default=-1)
    if top >= rows:
        raise TrainingError(
            f"the split refers to row {top:,} of a table of {rows:,} rows: it belongs to another table"
        )


def _fit_head(
    head: Head, y: F64, X: pd.DataFrame, split: Split, config: TrainConfig
) -> tuple[dict[str, HeadModel], dict[str, float], list[str]]:
    """Fit both learners of one head on its labels ``y`` (NaN: unlabelled): models, seconds, notes."""
    labelled = np.isfinite(y)
    train_rows = split.train[labelled[split.train]]
    valid_rows = split.valid[labelled[split.valid]]
    notes: list[str] = []
    missing = int((~labelled).sum())
    if missing:
        notes.append(f"head {head.name}: {missing:,} rows without a label left out")

    # half of the validation rows stop the boosting, the other half calibrates a classifier
    stop_rows, cal_rows = valid_rows, valid_rows[:0]
    if head.classification and config.calibrate:
        shuffled = np.random.default_rng(config.seed).permutation(valid_rows)
        half = len(shuffled) // 2
        stop_rows, cal_rows = np.sort(shuffled[:half]), np.sort(shuffled[half:])
        if np.unique(y[cal_rows]).size < 2 or np.unique(y[stop_rows]).size < 2:
            stop_rows, cal_rows = valid_rows, valid_rows[:0]
            notes.append(f"head {head.name}: not calibrated: a validation half holds a single class")

    X_tr, y_tr = X.iloc[train_rows], y[train_rows]
    X_stop, y_stop = X.iloc[stop_rows], y[stop_rows]
    seconds: dict[str, float] = {}
    models: dict[str, HeadModel] = {}
    for name, fit in (("xgboost", fit_primary), ("sklearn", fit_baseline)):
        t = time.perf_counter()
        try:
            model = fit(head, config, X_tr, y_tr, X_stop, y_stop)
        except EngageError:
            raise
        except (ValueError, TypeError) as e:  # a learner refusing this data: name the head
            raise TrainingError(f"head {head.name}: {name} cannot fit this data: {e}", head=head.name) from e
        if len(cal_rows):
            notes.append(calibrate(model, X.iloc[cal_rows], y[cal_rows], config.seed))
        seconds[name] = time.perf_counter() - t
        models[name] = model
    return models, seconds, notes


def _measure_head(
    head: Head,
    models: dict[str, HeadModel],
    y: F64,
    X: pd.DataFrame,
    split: Split,
    config: TrainConfig,
    seconds: dict[str, float],
) -> HeadResult:
    """Score both learners of one head on the test rows (and a train sample) and measure them."""
    labelled = np.isfinite(y)
    train_rows = split.train[labelled[split.train]]
    valid_rows = split.valid[labelled[split.valid]]
    test_rows = split.test[labelled[split.test]]
    # every test row is scored once (the labelled ones are measured); train metrics use a seeded sample
    X_all_test = X.iloc[split.test]
    scored = {name: m.predict(X_all_test) for name, m in models.items()}
    measured = labelled[split.test]
    y_te = y[test_rows]
    predictions = {name: p[measured] for name, p in scored.items()}
    sample = train_rows
    if len(sample) > TRAIN_METRIC_ROWS:
        sample = np.sort(
            np.random.default_rng(config.seed).choice(train_rows, TRAIN_METRIC_ROWS, replace=False)
        )
    X_sample, y_sample = X.iloc[sample], y[sample]
    metrics: dict[str, dict[str, dict[str, float]]] = {}
    for name, m in models.items():
        metrics[name] = {
            "train": head_metrics(head, y_sample, m.predict(X_sample)),
            "test": head_metrics(head, y_te, predictions[name]),
        }
        if head.classification and m.calibrator is not None:
            from engage.evaluation import expected_calibration_error

            metrics[name]["test"]["ece_uncalibrated"] = expected_calibration_error(
                y_te, m.raw(X_all_test)[measured]
            )
    return HeadResult(
        head=head,
        primary=models["xgboost"],
        baseline=models["sklearn"],
        rows={"train": len(train_rows), "validation": len(valid_rows), "test": len(test_rows)},
        test_rows=test_rows,
        y_test=y_te,
        all_test_predictions=scored,
        predictions=predictions,
        metrics=metrics,
        seconds=seconds,
    )


def _challenge(result: TrainResult, frame: pd.DataFrame, champion: Path) -> None:
    """Score the production bundle on this run's test rows, head by head."""
    primary = {n: result.policy.primary_metric(r.head.task.value) for n, r in result.heads.items()}
    comparison = ChampionComparison(
        champion=str(champion),
        primary_metric=primary,
        champion_metrics={},
        challenger_metrics={},
        min_improvement=result.policy.champion.min_improvement,
    )
    try:
        bundle = load_bundle(champion)
        shared = [n for n in result.heads if n in bundle.heads]
        if not shared:
            raise TrainingError("it has none of this run's heads")
        for name in shared:
            r = result.heads[name]
            rows = frame.iloc[r.test_rows]
            pred = bundle.heads[name].predict(design_matrix(rows, bundle.features))
            comparison.champion_metrics[name] = head_metrics(r.head, r.y_test, pred)
            comparison.challenger_metrics[name] = r.test_metrics()
            result.champion_predictions[name] = pred
    except EngageError as e:
        comparison.problem = str(e)
        comparison.champion_metrics.clear()
        comparison.challenger_metrics.clear()
        result.champion_predictions.clear()
    result.champion = comparison
