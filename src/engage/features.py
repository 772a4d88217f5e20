"""Model inputs from a contract: which columns, how encoded, and a time-aware split.

Only ``role: feature`` columns ever reach a model; protected, prohibited, PII, id, metadata and target
columns never do, and a feature named after a prohibited attribute is refused. Numeric features become
float64 (NaN for empty); categorical, string and boolean features become pandas categoricals with a
fixed list of levels (the contract's declared categories, else the levels seen in training), so xgboost
and scikit-learn's histogram gradient boosting both read them natively, and an unseen level at serving
time is simply missing.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from engage.contract import ColumnType, Contract
from engage.errors import SchemaError

__all__ = ["FeatureSet", "Split", "design_matrix", "fit_feature_set", "time_split"]


@dataclass(frozen=True)
class FeatureSet:
    """The model inputs and the levels of each categorical one, fixed at training time."""

    numeric: list[str]
    categorical: dict[str, list[str]]

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)  # order matters: it is the model's column order

    @classmethod
    def from_json(cls, text: str) -> FeatureSet:
        data: dict[str, Any] = json.loads(text)
        return cls(
            numeric=list(data["numeric"]), categorical={k: list(v) for k, v in data["categorical"].items()}
        )


def fit_feature_set(frame: pd.DataFrame, contract: Contract) -> FeatureSet:
    """Decide the inputs from the contract and the levels from ``frame`` (the training rows)."""
    from engage.contract import prohibited_matches

    banned = prohibited_matches(contract.features, contract.prohibited_attributes)
    if banned:
        raise SchemaError(
            "refusing to train on prohibited attributes: "
            + ", ".join(f"{f} ({a})" for f, a in banned.items())
        )
    numeric: list[str] = []
    categorical: dict[str, list[str]] = {}
    for name in contract.features:
        col = contract.columns[name]
        if col.type in (ColumnType.integer, ColumnType.float):
            numeric.append(name)
        elif col.type in (ColumnType.date, ColumnType.datetime):
            continue  # raw dates are not inputs; the contract derives tenure / recency features instead
        elif col.categories is not None:
            categorical[name] = list(col.categories)
        else:
            seen = frame[name].dropna().astype(str).unique().tolist()
            categorical[name] = sorted(seen)
    return FeatureSet(numeric=numeric, categorical=categorical)


def design_matrix(frame: pd.DataFrame, features: FeatureSet) -> pd.DataFrame:
    """The model input table: float64 numerics and fixed-level categoricals, in a fixed column order
    (the one encoding, :class:`engage.encoding.Encoder`, in lenient mode); :class:`SchemaError` naming a
    missing column or a value that is not a number."""
    from engage.encoding import Encoder

    return Encoder.for_model(features).design_matrix(frame)


@dataclass(frozen=True)
class Split:
    """Row positions of each part, and how the split was made (for the report)."""

    train: npt.NDArray[np.intp]
    valid: npt.NDArray[np.intp]
    test: npt.NDArray[np.intp]
    how: str


def time_split(
    frame: pd.DataFrame,
    contract: Contract,
    *,
    test_share: float = 0.2,
    valid_share: float = 0.1,
    seed: int = 0,
) -> Split:
    """Train on earlier data, test on the latest (positions into ``frame``).

    In order of preference:

    1. **Extract time** (the contract's ``event_time``) when the table holds several: the test part is
       every row from the latest extract times, at least ``test_share`` of the rows (the cut moves to
       the next earlier extract time, never through one), so the test rows are exactly what the next
       scoring run will look like, customers of every tenure. Validation (early stopping, calibration)
       is a seeded ``valid_share`` sample of the earlier rows; training gets the rest.
    2. **Cohort** (the contract's ``cohort``) on a single extract: train on the earliest signups,
       validate on the next, test on the latest. The test part is then only new customers, whose
       tenure the model never saw: an honest but pessimistic score, and the split says so.
    3. A seeded random split when the contract names neither.
    """
    n = len(frame)
    n_test, n_valid = round(n * test_share), round(n * valid_share)
    rng = np.random.default_rng(seed)
    event = contract.event_time.column if contract.event_time is not None else None
    if event is not None and event in frame.columns:
        times = pd.to_datetime(frame[event], utc=True)
        distinct = times.dropna().unique()
        if len(distinct) > 1:
            return _extract_split(times, n_test, n_valid, rng, event)
    if contract.cohort is not None:
        # rows without a cohort value count as the earliest; ties keep table order
        rank = frame[contract.cohort].rank(method="first", na_option="top").to_numpy()
        order = np.argsort(rank, kind="stable")
        how = (
            f"time-aware on {contract.cohort} (one extract): train on the earliest "
            f"{1 - test_share - valid_share:.0%}, validate on the next {valid_share:.0%}, test on the latest "
            f"{test_share:.0%} (new customers only, whose tenure training never saw)"
        )
    else:
        order = rng.permutation(n)
        how = f"random (seed {seed}): the contract names neither an event time nor a cohort column"
    test = np.sort(order[n - n_test :])
    valid = np.sort(order[n - n_test - n_valid : n - n_test])
    train = np.sort(order[: n - n_test - n_valid])
    return Split(train=train, valid=valid, test=test, how=how)


def _extract_split(
    times: pd.Series, n_test: int, n_valid: int, rng: np.random.Generator, event: str
) -> Split:
    stamps = times.to_numpy(dtype="datetime64[ns]")
    known = ~np.isnat(stamps)
    ordered = np.sort(stamps[known])
    # the latest extract times holding at least n_test rows: cut at the time of the n_test-th newest row
    cut = ordered[max(len(ordered) - max(n_test, 1), 0)]
    is_test = known & (stamps >= cut)
    earlier = np.flatnonzero(~is_test)
    picked = rng.choice(earlier, size=min(n_valid, len(earlier)), replace=False)
    is_valid = np.zeros(len(stamps), dtype=bool)
    is_valid[picked] = True
    test = np.flatnonzero(is_test)
    valid = np.flatnonzero(is_valid)
    train = np.flatnonzero(~is_test & ~is_valid)
    first = pd.Timestamp(cut).tz_localize("UTC").isoformat()
    how = (
        f"time-aware on {event}: test on the {len(np.unique(stamps[is_test]))} latest extract(s) from {first} "
        f"({len(test) / len(stamps):.0%} of rows), train on the earlier ones, validate on a seeded "
        f"{len(valid) / len(stamps):.0%} sample of them"
    )
    return Split(train=train, valid=valid, test=test, how=how)
