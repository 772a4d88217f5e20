"""Scores of checked rows: each head's prediction as the predictor computes it, and reason codes.

For an xgboost bundle the rows go through the same calls as the predictor's batch path: the float32
matrix to ``Booster.inplace_predict`` (up to each head's best iteration), the head's own finish
(calibration, bounds), then the fairness offsets the bundle carries, applied from the row's protected
columns when the table has them all. Answers are therefore the predictor's, to the bit. A
scikit-learn bundle is scored through :meth:`ModelBundle.predict` on the decoded matrix, as the
predictor does.

Reason codes (``reasons`` > 0): the ``k`` features with the largest exact TreeSHAP attributions of one
head (xgboost's ``pred_contribs``), by size, each with its signed contribution in the head's margin space.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from engage.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from engage.contract import Contract
    from engage.encoding import Encoder
    from engage.model import ModelBundle

__all__ = ["BatchScorer", "Scores"]

F64 = npt.NDArray[np.float64]


@dataclass
class Scores:
    """Predictions of the accepted rows: output name -> values; reason codes when asked for."""

    values: dict[str, F64]
    #: (rows, k) feature indices and contributions of the top-k attributions, largest first
    reason_index: npt.NDArray[np.int32] | None = None
    reason_value: npt.NDArray[np.float32] | None = None
    notes: list[str] = field(default_factory=list)


class BatchScorer:
    """One model bundle, ready to score many partitions."""

    def __init__(
        self, bundle: ModelBundle, contract: Contract, *, reasons: int = 0, reason_head: str | None = None
    ) -> None:
        from engage.encoding import Encoder

        self.bundle = bundle
        self.contract = contract
        self.encoder: Encoder = Encoder.for_model(bundle.features, contract, strict=True)
        self.outputs = {name: h.head.output for name, h in bundle.heads.items()}
        self.xgboost = all(h.learner == "xgboost" for h in bundle.heads.values())
        self.iterations = {
            name: (h.best_iteration + 1 if h.best_iteration is not None else 0)
            for name, h in bundle.heads.items()
        }
        self.boosters: dict[str, Any] = (
            {name: h.estimator.get_booster() for name, h in bundle.heads.items()} if self.xgboost else {}
        )
        self.reasons = reasons
        self.reason_head = self._reason_head(reason_head) if reasons else None
        ids = [n for n, c in contract.columns.items() if c.role.value == "id"]
        self.id_column = ids[0] if ids else None
        #: the table columns the offsets read (protected attributes); extra columns a partition carries
        self.carried = sorted(set(bundle.offset_columns) | ({self.id_column} if self.id_column else set()))
        #: the columns a part is read with: the model inputs, the id and the protected attributes (the
        #: other columns, PII among them, are never read, so never copied into the quarantine)
        self.columns = [*self.encoder.names, *(c for c in self.carried if c not in self.encoder.names)]

    def _reason_head(self, asked: str | None) -> str:
        heads = self.bundle.heads
        if not self.xgboost:
            raise ConfigError("reason codes need an xgboost bundle (exact TreeSHAP); this one is not")
        if asked is not None:
            if asked not in heads:
                raise ConfigError(f"--reason-head {asked}: the bundle's heads are {', '.join(heads)}")
            return asked
        classifiers = [n for n, h in heads.items() if h.head.classification]
        return classifiers[0] if classifiers else next(iter(heads))

    def score(self, X: npt.NDArray[np.float32], frame: pd.DataFrame) -> Scores:
        """Predictions of the checked rows ``X`` (float32, model input order); ``frame`` holds the same
        rows' other columns (the protected attributes the fairness offsets read)."""
        if self.xgboost:
            values = {
                name: self.bundle.heads[name].finish(
                    np.asarray(
                        booster.inplace_predict(X, iteration_range=(0, self.iterations[name])),
                        dtype=np.float64,
                    )
                )
                for name, booster in self.boosters.items()
            }
        else:
            predicted = self.bundle.predict(self.encoder.decode(X.astype(np.float64)))
            return Scores({str(c): predicted[c].to_numpy(dtype="float64") for c in predicted.columns})
        values, missing = self.bundle.adjust(values, frame)
        notes = [
            f"head {name}: fairness offsets not applied (the table has no {', '.join(columns)})"
            for name, columns in missing.items()
        ]
        out = Scores({self.outputs[name]: v for name, v in values.items()}, notes=notes)
        if self.reason_head is not None and len(X):
            out.reason_index, out.reason_value = self._top_reasons(X)
        return out

    def _top_reasons(
        self, X: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]:
        import xgboost

        assert self.reason_head is not None
        booster = self.boosters[self.reason_head]
        dmatrix = xgboost.DMatrix(X, feature_types=self.encoder.xgboost_types, enable_categorical=True)
        contribs = booster.predict(
            dmatrix,
            pred_contribs=True,
            iteration_range=(0, self.iterations[self.reason_head]),
            validate_features=False,
        )
        contribs = np.asarray(contribs, dtype=np.float32).reshape(len(X), -1)[:, :-1]  # no bias column
        k = min(self.reasons, contribs.shape[1])
        top = np.argpartition(-np.abs(contribs), k - 1, axis=1)[:, :k]
        picked = np.take_along_axis(contribs, top, axis=1)
        order = np.argsort(-np.abs(picked), axis=1, kind="stable")
        index = np.take_along_axis(top, order, axis=1).astype(np.int32)
        return index, np.take_along_axis(picked, order, axis=1)
