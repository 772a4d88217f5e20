"""Train the xgboost heads on a Dask cluster: features per partition, ``xgboost.dask``, a plain bundle.

What runs where:

* **on the workers**, partition by partition: conforming to the contract, the split (a seeded hash of
  each row's key; the time cut is decided from distributed counts), the design matrix
  (:func:`engage.features.design_matrix`, the one encoding), the labels (:func:`engage.model.head_labels`),
  the boosting (``xgboost.dask``: every worker builds histograms of its own rows, allreduced) and the
  test predictions;
* **gathered to this process** (small, and said in ``docs/distributed.md``): the per-extract-time row
  counts that place the time cut, the levels of an undeclared categorical feature, the calibration rows
  of a classifier head (half the validation part: its design matrix and label) and the
  ``(label, prediction)`` pairs of the test part, which the metrics are computed from.

The hyperparameters are :func:`engage.model._learners.xgb_params` (what ``fit_primary`` uses), early
stopping watches the validation part, classifier heads get the same isotonic calibration
(:func:`engage.model._learners.calibrate`) and metrics are :func:`engage.training.head_metrics`. The
trained booster becomes a plain ``xgboost.XGBClassifier`` / ``XGBRegressor``, so the
:class:`~engage.model.ModelBundle` saves, loads and serves exactly like an in-process one. The
scikit-learn baseline, the fairness gate and the reports are not run here (the in-process engine does).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from engage.contract import Contract
from engage.errors import EngageError, TrainingError
from engage.features import FeatureSet
from engage.model import Head, HeadModel, ModelBundle, TrainConfig, check_counts

from ._frame import conformed

if TYPE_CHECKING:
    import dask.dataframe as dd
    from distributed import Client

__all__ = ["DistributedTrainResult", "SplitPlan", "assign_parts", "plan_split", "train_distributed"]

F64 = npt.NDArray[np.float64]

#: the split's part codes in the ``__part`` column
TRAIN, STOP, CALIBRATE, TEST = 0, 1, 2, 3
PART = "__part"


def _label(head: Head) -> str:
    return f"__y_{head.name}"


@dataclass(frozen=True)
class SplitPlan:
    """How each row finds its part, from its own values only (so every partition decides alone).

    ``cut``: rows whose event time is at or after it are the test part (time-aware); None: a seeded
    hash of the row's key draws test rows with probability ``test_share``. The rest are validation
    with probability ``valid_share`` (of the rest), else train; half the validation rows (a second
    hash) calibrate a classifier, the other half stop the boosting."""

    key: list[str]
    seed: int
    event: str | None
    cut: pd.Timestamp | None
    test_share: float
    valid_share: float
    how: str


def _uniform(part: pd.DataFrame, key: list[str], seed: int, salt: int) -> F64:
    """A seeded uniform [0, 1) draw per row from the hash of its key (the same row, the same draw,
    whatever the partitioning)."""
    hash_key = f"engage{(seed * 7919 + salt) % 10**10:010d}"  # pandas wants 16 characters
    h = pd.util.hash_pandas_object(part[key], index=False, hash_key=hash_key).to_numpy(dtype=np.uint64)
    return np.asarray((h >> np.uint64(11)).astype(np.float64) / float(2**53), dtype=np.float64)


def assign_parts(part: pd.DataFrame, plan: SplitPlan) -> npt.NDArray[np.int8]:
    """The part code (``TRAIN``, ``STOP``, ``CALIBRATE``, ``TEST``) of every row of one partition."""
    u = _uniform(part, plan.key, plan.seed, 1)
    if plan.cut is not None and plan.event is not None:
        times = pd.to_datetime(part[plan.event], utc=True)
        is_test = (times >= plan.cut).fillna(False).to_numpy(dtype=bool)
        is_valid = ~is_test & (u < plan.valid_share)
    else:
        is_test = u < plan.test_share
        is_valid = ~is_test & (u < plan.test_share + plan.valid_share)
    out = np.full(len(part), TRAIN, dtype=np.int8)
    out[is_valid] = np.where(_uniform(part, plan.key, plan.seed, 2)[is_valid] < 0.5, CALIBRATE, STOP)
    out[is_test] = TEST
    return out


def plan_split(
    rows: int,
    contract: Contract,
    event_counts: pd.Series | None,
    *,
    seed: int = 0,
    test_share: float = 0.2,
    valid_share: float = 0.1,
) -> SplitPlan:
    """The split of :func:`engage.features.time_split`, decided from counts: with several extract times
    (``event_counts``: rows per event time), the test part is every row from the latest extract times
    holding at least ``test_share`` of the rows (the same cut as in-process); else a seeded hash."""
    event = contract.event_time.column if contract.event_time is not None else None
    key = list(dict.fromkeys([*contract.primary_key, *([event] if event else [])]))
    n_test = round(rows * test_share)
    if event is not None and event_counts is not None and len(event_counts) > 1:
        newest_first = event_counts.sort_index(ascending=False)
        reached = newest_first.cumsum() >= max(n_test, 1)
        cut = pd.Timestamp(newest_first.index[int(np.argmax(reached.to_numpy()))])
        cut = cut.tz_localize("UTC") if cut.tzinfo is None else cut
        test_rows = int(newest_first[newest_first.index >= cut].sum())
        earlier = rows - test_rows
        share = min(1.0, round(rows * valid_share) / earlier) if earlier else 0.0
        extracts = int((newest_first.index >= cut).sum())
        how = (
            f"time-aware on {event}: test on the {extracts} latest extract(s) from {cut.isoformat()} "
            f"({test_rows / rows:.0%} of rows), train on the earlier ones, validate on a seeded "
            f"{share * earlier / rows:.0%} hash sample of them (dask engine)"
        )
        return SplitPlan(key, seed, event, cut, test_share, share, how)
    how = (
        f"random (seed {seed}): a hash of ({', '.join(key)}) draws {test_share:.0%} test, "
        f"{valid_share:.0%} validation (dask engine; the table holds a single extract time"
        + (
            f", and the in-process cohort split on {contract.cohort} needs a global sort)"
            if contract.cohort
            else ")"
        )
    )
    return SplitPlan(key, seed, event, None, test_share, valid_share, how)


@dataclass
class DistributedTrainResult:
    """The bundle (xgboost heads), test metrics per head, rows per part, and where the time went."""

    bundle: ModelBundle
    metrics: dict[str, dict[str, float]]
    rows: dict[str, dict[str, int]]  # head -> part -> labelled rows
    split: str
    partitions: int
    seconds: dict[str, float]
    gathered_bytes: dict[str, int]  # what came back to this process, by purpose
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "engine": "dask",
            "split": self.split,
            "partitions": self.partitions,
            "rows": self.rows,
            "metrics": {
                h: {k: (v if math.isfinite(v) else None) for k, v in m.items()}
                for h, m in self.metrics.items()
            },
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "gathered_bytes": self.gathered_bytes,
            "best_iteration": {n: m.best_iteration for n, m in self.bundle.heads.items()},
            "calibrated": {n: m.calibrator is not None for n, m in self.bundle.heads.items()},
            "notes": self.notes,
        }


def train_distributed(
    ddf: dd.DataFrame,
    contract: Contract,
    client: Client,
    *,
    config: TrainConfig | None = None,
    heads: Sequence[str] | None = None,
    seed: int = 0,
) -> DistributedTrainResult:
    """Train each head ``contract`` defines (or ``heads``) on the partitions of ``ddf`` (raw, as read)
    through ``client``'s cluster. :class:`TrainingError` naming the head when a part of the split has
    too few labelled rows or a single class."""
    from engage.model import plan_heads

    started = time.perf_counter()
    config = config or TrainConfig()
    planned, notes = plan_heads(contract, heads)
    seconds: dict[str, float] = {}
    gathered: dict[str, int] = {}

    t = time.perf_counter()
    table = client.persist(conformed(ddf, contract))
    event = contract.event_time.column if contract.event_time is not None else None
    wanted: list[Any] = [table.shape[0]]
    if event is not None:
        wanted.append(table[event].value_counts(dropna=True))
    n_rows, *counted = client.compute(wanted, sync=True)
    event_counts: pd.Series | None = counted[0] if counted else None
    n_rows = int(n_rows)
    if event_counts is not None:
        gathered["event_time_counts"] = int(event_counts.memory_usage(deep=True))
    plan = plan_split(n_rows, contract, event_counts, seed=seed)
    features = _feature_set(table, contract, plan, client, gathered)
    design = client.persist(
        table.map_partitions(
            _design, features, planned, plan, meta=_design(table._meta, features, planned, plan)
        )
    )
    del table
    part_rows = _part_counts(design, planned, client)
    for head in planned:
        _check_counts(head, part_rows[head.name])
    seconds["prepare"] = time.perf_counter() - t

    models: dict[str, HeadModel] = {}
    metrics: dict[str, dict[str, float]] = {}
    rows: dict[str, dict[str, int]] = {}
    for head in planned:
        t = time.perf_counter()
        stats = part_rows[head.name]
        calibrate_half = head.classification and config.calibrate and _two_classes(stats, (STOP, CALIBRATE))
        if head.classification and config.calibrate and not calibrate_half:
            notes.append(f"head {head.name}: not calibrated: a validation half holds a single class")
        stop_parts = (STOP,) if calibrate_half else (STOP, CALIBRATE)
        model = _fit(head, config, design, features, stop_parts, client)
        seconds[f"{head.name}.fit"] = time.perf_counter() - t
        if calibrate_half:
            from engage.model._learners import calibrate

            t = time.perf_counter()
            X_cal, y_cal = _gather(design, features, head, (CALIBRATE,), client)
            gathered[f"{head.name}.calibration"] = int(X_cal.memory_usage(deep=True).sum() + y_cal.nbytes)
            notes.append(calibrate(model, X_cal, y_cal, config.seed))
            seconds[f"{head.name}.calibrate"] = time.perf_counter() - t
        t = time.perf_counter()
        y_test, pred = _test_predictions(design, features, head, model, client)
        gathered[f"{head.name}.test_pairs"] = int(y_test.nbytes + pred.nbytes)
        from engage.training import head_metrics

        metrics[head.name] = head_metrics(head, y_test, pred)
        seconds[f"{head.name}.measure"] = time.perf_counter() - t
        models[head.name] = model
        rows[head.name] = {
            "train": stats[TRAIN][0],
            "validation": stats[STOP][0] + stats[CALIBRATE][0],
            "test": stats[TEST][0],
        }
    del design
    seconds["total"] = time.perf_counter() - started
    bundle = ModelBundle(
        features=features, heads=models, metadata=_metadata(contract, config, plan, n_rows, rows, metrics)
    )
    return DistributedTrainResult(
        bundle=bundle,
        metrics=metrics,
        rows=rows,
        split=plan.how,
        partitions=ddf.npartitions,
        seconds=seconds,
        gathered_bytes=gathered,
        notes=notes,
    )


def _feature_set(
    table: dd.DataFrame, contract: Contract, plan: SplitPlan, client: Client, gathered: dict[str, int]
) -> FeatureSet:
    """:func:`engage.features.fit_feature_set` with the levels of an undeclared categorical feature
    gathered by a distributed ``unique`` over the train rows."""
    from engage.features import fit_feature_set

    declared = fit_feature_set(table._meta, contract)  # the contract's decisions; levels of undeclared: none
    undeclared = [c for c in declared.categorical if contract.columns[c].categories is None]
    if not undeclared:
        return declared
    train = table.map_partitions(_train_rows, plan, undeclared, meta=table._meta[undeclared].astype("string"))
    found = client.compute([train[c].dropna().unique() for c in undeclared], sync=True)
    levels = {c: sorted(str(v) for v in values) for c, values in zip(undeclared, found, strict=True)}
    gathered["categorical_levels"] = sum(len(v.encode()) for lv in levels.values() for v in lv)
    return FeatureSet(
        numeric=declared.numeric,
        categorical={c: levels.get(c, lv) for c, lv in declared.categorical.items()},
    )


def _train_rows(part: pd.DataFrame, plan: SplitPlan, columns: list[str]) -> pd.DataFrame:
    keep = assign_parts(part, plan) == TRAIN
    return part.loc[keep, columns].astype("string")


def _design(part: pd.DataFrame, features: FeatureSet, heads: list[Head], plan: SplitPlan) -> pd.DataFrame:
    """One partition's design matrix, each head's label (``__y_<head>``) and its part code."""
    from engage.features import design_matrix
    from engage.model import head_labels

    X = design_matrix(part, features)
    for head in heads:
        X[_label(head)] = head_labels(part, head)
    X[PART] = assign_parts(part, plan) if len(part) else np.zeros(0, dtype=np.int8)
    return X


def _part_counts(
    design: dd.DataFrame, heads: list[Head], client: Client
) -> dict[str, dict[int, tuple[int, int]]]:
    """Per head, per part: (labelled rows, positive labels)."""
    labels = [_label(h) for h in heads]
    grouped = design[[PART, *labels]].groupby(PART)
    labelled, positive = client.compute([grouped.count(), grouped.sum()], sync=True)
    out: dict[str, dict[int, tuple[int, int]]] = {}
    for h in heads:
        out[h.name] = {
            p: (
                int(labelled[_label(h)].get(p, 0)),
                int(positive[_label(h)].get(p, 0)) if h.classification else 0,
            )
            for p in (TRAIN, STOP, CALIBRATE, TEST)
        }
    return out


def _two_classes(stats: dict[int, tuple[int, int]], parts: Sequence[int]) -> bool:
    return all(0 < stats[p][1] < stats[p][0] for p in parts)


def _check_counts(head: Head, stats: dict[int, tuple[int, int]]) -> None:
    """:func:`engage.model._heads.check_parts` from counts: enough labelled rows per part, both classes."""
    counts = {
        "train": stats[TRAIN][0],
        "validation": stats[STOP][0] + stats[CALIBRATE][0],
        "test": stats[TEST][0],
    }
    check_counts(head, counts)
    if not head.classification:
        return
    positives = {
        "train": stats[TRAIN][1],
        "validation": stats[STOP][1] + stats[CALIBRATE][1],
        "test": stats[TEST][1],
    }
    for part, n in counts.items():
        if not 0 < positives[part] < n:
            raise TrainingError(
                f"head {head.name}: the {part} part holds a single class of {head.column!r}; "
                "a classifier needs both in each part",
                head=head.name,
            )


def _rows_of(design: dd.DataFrame, head: Head, parts: Sequence[int]) -> dd.DataFrame:
    y = design[_label(head)]
    return design[design[PART].isin(list(parts)) & y.notnull()]


def _fit(
    head: Head,
    config: TrainConfig,
    design: dd.DataFrame,
    features: FeatureSet,
    stop_parts: Sequence[int],
    client: Client,
) -> HeadModel:
    """``xgboost.dask`` with :func:`fit_primary`'s parameters; the booster as a plain estimator."""
    import xgboost
    import xgboost.dask as dxgb

    from engage.model._learners import xgb_params

    params = xgb_params(head, config)
    train, stop = _rows_of(design, head, (TRAIN,)), _rows_of(design, head, stop_parts)
    cols, y = features.columns, _label(head)
    estimator: Any
    if head.classification:
        distributed: Any = dxgb.DaskXGBClassifier(eval_metric="logloss", **params)
        estimator = xgboost.XGBClassifier()
    else:
        distributed = dxgb.DaskXGBRegressor(**params)
        estimator = xgboost.XGBRegressor()
    distributed.client = client
    try:
        distributed.fit(train[cols], train[y], eval_set=[(stop[cols], stop[y])], verbose=False)
    except EngageError:
        raise
    except (ValueError, TypeError) as e:
        raise TrainingError(
            f"head {head.name}: xgboost.dask cannot fit this data: {e}", head=head.name
        ) from e
    # the sklearn wrapper's own file (its parameters and classes travel in it), read by a plain wrapper
    estimator.load_model(bytearray(_model_bytes(distributed)))
    return HeadModel(
        head, "xgboost", estimator, params["objective"], best_iteration=int(distributed.best_iteration)
    )


def _model_bytes(model: Any) -> bytes:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="engage-dask-model-") as tmp:
        path = Path(tmp) / "model.ubj"
        model.save_model(path)
        return path.read_bytes()


def _gather(
    design: dd.DataFrame, features: FeatureSet, head: Head, parts: Sequence[int], client: Client
) -> tuple[pd.DataFrame, F64]:
    rows = client.compute(_rows_of(design, head, parts)[[*features.columns, _label(head)]], sync=True)
    return rows[features.columns], rows[_label(head)].to_numpy(dtype="float64")


def _test_predictions(
    design: dd.DataFrame, features: FeatureSet, head: Head, model: HeadModel, client: Client
) -> tuple[F64, F64]:
    """Predict the labelled test rows on the workers; gather the ``(label, prediction)`` pairs."""
    [shared] = client.scatter([model], broadcast=True)
    test = _rows_of(design, head, (TEST,))
    pairs = test.map_partitions(
        _predict_partition,
        shared,
        features.columns,
        _label(head),
        meta=pd.DataFrame({"y": pd.Series(dtype="float64"), "pred": pd.Series(dtype="float64")}),
    )
    out = client.compute(pairs, sync=True)
    return out["y"].to_numpy(dtype="float64"), out["pred"].to_numpy(dtype="float64")


def _predict_partition(part: pd.DataFrame, model: HeadModel, columns: list[str], label: str) -> pd.DataFrame:
    pred = model.predict(part[columns]) if len(part) else np.zeros(0)
    return pd.DataFrame({"y": part[label].to_numpy(dtype="float64"), "pred": pred}, index=part.index)


def _metadata(
    contract: Contract,
    config: TrainConfig,
    plan: SplitPlan,
    n_rows: int,
    rows: dict[str, dict[str, int]],
    metrics: dict[str, dict[str, float]],
) -> dict[str, Any]:
    from engage import __version__

    return {
        "engage_version": __version__,
        "learner": "xgboost",
        "engine": "dask",
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "contract": {"name": contract.contract, "version": contract.version},
        "split": plan.how,
        "rows": {"table": n_rows, **next(iter(rows.values()))},
        "config": config.model_dump(),
        "metrics": {
            n: {k: (v if math.isfinite(v) else None) for k, v in m.items()} for n, m in metrics.items()
        },
    }
