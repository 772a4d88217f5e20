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
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FeatureSet:
        data: dict[str, Any] = json.loads(text)
        return cls(
            numeric=list(data["numeric"]), categorical={k: list(v) for k, v in data["categorical"].items()}
        )


def fit_feature_set(frame: pd.DataFrame, contract: Contract) -> FeatureSet:
    """Decide the inputs from the contract and the levels from ``frame`` (the training rows)."""
    from engage.quality import prohibited_matches

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
    """The model input table: float64 numerics and fixed-level categoricals, in a fixed column order."""
    missing = [c for c in features.columns if c not in frame.columns]
    if missing:
        raise SchemaError(f"input lacks feature column(s): {', '.join(missing)}")
    out: dict[str, Any] = {}
    for name in features.numeric:
        out[name] = frame[name].to_numpy(dtype="float64", na_value=np.nan)
    for name, levels in features.categorical.items():
        text = frame[name].astype("string")  # booleans and numbers as their text, empty stays empty
        out[name] = pd.Categorical(text, categories=levels)
    return pd.DataFrame(out, index=frame.index)


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
    """Train on the earlier cohorts, validate on the next ones, test on the latest (positions into ``frame``).

    Without a ``cohort`` column in the contract, a seeded random split stands in and says so.
    """
    n = len(frame)
    n_test, n_valid = round(n * test_share), round(n * valid_share)
    if contract.cohort is not None:
        # rows without a cohort value count as the earliest; ties keep table order
        rank = frame[contract.cohort].rank(method="first", na_option="top").to_numpy()
        order = np.argsort(rank, kind="stable")
        how = f"time-aware on {contract.cohort}: train on the earliest {1 - test_share - valid_share:.0%}, validate on the next {valid_share:.0%}, test on the latest {test_share:.0%}"
    else:
        order = np.random.default_rng(seed).permutation(n)
        how = f"random (seed {seed}): the contract names no cohort column"
    test = np.sort(order[n - n_test :])
    valid = np.sort(order[n - n_test - n_valid : n - n_test])
    train = np.sort(order[: n - n_test - n_valid])
    return Split(train=train, valid=valid, test=test, how=how)
