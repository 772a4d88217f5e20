"""The one entry point: :class:`Explainer` explains rows of a table for one head, by any method.

It holds the bundle, the contract (descriptions, units, which features may change) and a seeded sample
of reference rows, encodes the rows to explain once, checks the method against the model and the
licence setting, and wraps every result in the same :class:`~engage.explain.Explanation` schema.
Fitted sampling explainers are cached per head, so a server pays their set-up once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from engage.contract import Contract
from engage.encoding import Encoder, is_empty
from engage.errors import ExplainError, RequestRejected, SchemaError
from engage.training import HeadModel, ModelBundle

from ._methods import METHODS, available_methods, check_method
from ._reasons import display_name, reason_codes
from ._schema import Explanation, ExplanationMeta, Timings
from ._settings import ExplainSettings
from ._tree import ADDITIVITY_TOLERANCE, TreeShap, additivity_error

__all__ = ["MAX_ROWS", "Explainer"]

F64 = npt.NDArray[np.float64]
#: rows one call may ask of the sampling methods (TreeSHAP and reasons take any number)
MAX_ROWS = {"kernel_shap": 100, "anchors": 100, "lime": 100, "counterfactual": 20}
_Result = tuple[dict[str, Any], str | None, dict[str, Any], list[str]]


class Explainer:
    """Explanations of one model bundle, for any of its heads."""

    def __init__(
        self,
        bundle: ModelBundle,
        contract: Contract,
        background: pd.DataFrame,
        *,
        settings: ExplainSettings | None = None,
    ) -> None:
        self.bundle = bundle
        self.contract = contract
        self.settings = settings or ExplainSettings()
        self.encoder = Encoder.for_model(bundle.features, positional=False)
        if len(background) == 0:
            raise ExplainError("no reference rows: explanations need a sample of the table the model scores")
        n = min(len(background), self.settings.background_rows)
        rows = background.sample(n=n, random_state=self.settings.seed) if len(background) > n else background
        self.background = self.encoder.frame(rows)
        self._fills = self._fill_values(self.background)
        self._fitted: dict[tuple[str, str], Any] = {}
        self._trees: dict[str, TreeShap] = {}

    # ---- what can be asked ------------------------------------------------------------------------

    @property
    def heads(self) -> list[str]:
        return list(self.bundle.heads)

    @property
    def default_head(self) -> str:
        """The first classification head (the decision a customer may contest), else the first head."""
        return next((n for n, m in self.bundle.heads.items() if m.head.classification), self.heads[0])

    def methods(self) -> list[str]:
        return available_methods(self.settings)

    @property
    def immutable(self) -> list[str]:
        """Features a counterfactual holds fixed (the contract's ``mutable: false``)."""
        return [
            n
            for n in self.encoder.names
            if n in self.contract.columns and not self.contract.columns[n].mutable
        ]

    # ---- the entry point --------------------------------------------------------------------------

    def explain(
        self,
        rows: pd.DataFrame | Sequence[Mapping[str, Any]],
        *,
        method: str = "tree_shap",
        head: str | None = None,
        desired: tuple[float, float | None] | None = None,
    ) -> Explanation:
        """Explain every row for ``head`` (default :attr:`default_head`) by ``method``.

        ``rows`` is a table, or a list of mappings of column to value (a JSON request's instances: no
        pandas on that path). ``desired`` is a counterfactual's target range for the prediction
        (``None`` as the upper end: no upper limit); by default a classifier's probability below the
        decision threshold, a regression's prediction raised by ``regression_lift``.
        """
        started = time.perf_counter()
        name = head or self.default_head
        if name not in self.bundle.heads:
            raise ExplainError(f"unknown head {name!r}; this model has: {', '.join(self.heads)}")
        model = self.bundle.heads[name]
        spec = check_method(method, self.settings, learner=model.learner, head=name)
        if len(rows) == 0:
            raise SchemaError("no rows to explain")
        limit = MAX_ROWS.get(method)
        if limit is not None and len(rows) > limit:
            raise ExplainError(f"{method} explains at most {limit} rows per call; got {len(rows)}")
        given = _Rows(rows, self.encoder)
        X = given.matrix
        data, space, params, notes = self._run(method, model, X, given, desired)
        ids = given.ids(self.contract.primary_key)
        elapsed = (time.perf_counter() - started) * 1e3
        meta = ExplanationMeta(
            method=method,
            library=spec.library,
            licence=spec.licence,
            head=name,
            output=model.head.output,
            model_version=self.bundle.version or "unsaved",
            output_space=space,
            params=params,
            notes=notes,
            timings=Timings(total_ms=elapsed, rows=len(X), per_row_ms=elapsed / len(X)),
        )
        return Explanation(data={"ids": ids, **data}, meta=meta)

    def _run(
        self,
        method: str,
        model: HeadModel,
        X: F64,
        frame: _Rows,
        desired: tuple[float, float | None] | None,
    ) -> _Result:
        if method == "tree_shap":
            return self._tree_shap(model, X, frame)
        if method == "kernel_shap":
            return self._kernel_shap(model, X, frame)
        if method == "anchors":
            return self._anchors(model, X)
        if method == "lime":
            return self._lime(model, X)
        if method == "counterfactual":
            return self._counterfactual(model, X, desired)
        if method == "reasons":
            return self._reasons(model, X, frame)
        raise ExplainError(
            f"{method}: registered in METHODS ({', '.join(METHODS)}) but not wired"
        )  # pragma: no cover

    # ---- model as functions of the encoded matrix -------------------------------------------------

    def predictor(self, model: HeadModel) -> Callable[[F64], F64]:
        """The head's prediction as a function of the encoded matrix."""
        return lambda X: model.predict(self.encoder.decode(X))

    def _margin(self, model: HeadModel) -> Callable[[F64], F64]:
        return lambda X: model.margin(self.encoder.decode(X))

    def _final(self, model: HeadModel, predicted: F64, rows: _Rows, notes: list[str]) -> F64:
        """Apply the head's fairness post-processor when the rows carry its protected columns."""
        adjustment = self.bundle.adjustments.get(model.head.name)
        if adjustment is None:
            return predicted
        from engage.model import GroupOffsets

        offsets = GroupOffsets.from_json(adjustment)
        needed = [str(a["name"]) for a in offsets.attributes]
        lacking = [c for c in needed if not rows.has(c)]
        if lacking:
            notes.append(
                f"prediction excludes the fairness adjustment ({adjustment['kind']}): "
                f"the rows lack {', '.join(lacking)}"
            )
            return predicted
        notes.append(
            f"prediction includes the fairness adjustment ({adjustment['kind']}); attributions explain "
            "the model score before it"
        )
        return offsets.apply_frame(predicted, rows.frame.reset_index(drop=True))

    # ---- methods ----------------------------------------------------------------------------------

    def tree_shap(self, head: str) -> TreeShap:
        """The (cached) TreeSHAP of an xgboost head."""
        if head not in self._trees:
            self._trees[head] = TreeShap(self.bundle.heads[head], self.encoder)
        return self._trees[head]

    def _attributions(self, model: HeadModel, X: F64, frame: _Rows, *, kernel: bool) -> _Result:
        """TreeSHAP (exact) or KernelSHAP (sampled) attributions on the margin, with their additivity."""
        params: dict[str, Any]
        if kernel:
            from ._alibi import kernel_shap_values

            values, base_value = kernel_shap_values(
                self._fit(model, "kernel_shap"), X, samples=self.settings.kernel_samples
            )
            margin = self._margin(model)(X)
            base = np.full(len(X), base_value)
            params = {
                "samples": self.settings.kernel_samples,
                "background_rows": len(self._kernel_background),
            }
        else:
            values, base, margin = self.tree_shap(model.head.name).shap_values(X)
            base_value = float(base[0])
            params = {"algorithm": "exact TreeSHAP (xgboost pred_contribs)"}
        # TreeSHAP is exact; KernelSHAP's efficiency constraint makes its values add up too
        error = additivity_error(values, base, margin)
        notes: list[str] = []
        score = (
            model.from_margin(margin) if model.learner == "xgboost" else model.predict(self.encoder.decode(X))
        )
        predicted = self._final(model, score, frame, notes)
        data = {
            "feature_names": self.encoder.names,
            "base_value": base_value,
            "values": values.tolist(),
            "margin": margin.tolist(),
            "prediction": predicted.tolist(),
            "additivity": {
                "max_abs_error": error,
                "tolerance": ADDITIVITY_TOLERANCE,
                "ok": error <= ADDITIVITY_TOLERANCE,
            },
        }
        return data, model.margin_space, params, notes

    def _tree_shap(self, model: HeadModel, X: F64, frame: _Rows) -> _Result:
        return self._attributions(model, X, frame, kernel=False)

    def _kernel_shap(self, model: HeadModel, X: F64, frame: _Rows) -> _Result:
        return self._attributions(model, X, frame, kernel=True)

    @property
    def _rules_kept(self) -> list[str]:
        from engage.quality import rows_breaking_rules

        probe = pd.DataFrame(self.encoder.values(self.background[:1]), columns=self.encoder.names)
        return rows_breaking_rules(probe, self.contract, now=datetime.now(UTC))[1]

    @property
    def _kernel_background(self) -> F64:
        return self.background[: self.settings.kernel_background_rows]

    def _reasons(self, model: HeadModel, X: F64, frame: _Rows) -> _Result:
        if model.learner != "xgboost":
            check_method("kernel_shap", self.settings, learner=model.learner, head=model.head.name)
        kernel = model.learner != "xgboost"
        data, space, params, notes = self._attributions(model, X, frame, kernel=kernel)
        values = np.asarray(data["values"], dtype="float64")
        rows = []
        for i, readable in enumerate(self.encoder.values(X)):
            rows.append(
                {
                    "prediction": data["prediction"][i],
                    "reasons": reason_codes(
                        self.contract,
                        model.head.name,
                        self.encoder.names,
                        values[i],
                        readable,
                        top=self.settings.top_features,
                    ),
                }
            )
        params = {
            **params,
            "top": self.settings.top_features,
            "from": "kernel_shap" if kernel else "tree_shap",
        }
        return (
            {"display_name": display_name(self.contract, model.head.name), "rows": rows},
            space,
            params,
            notes,
        )

    def _anchors(self, model: HeadModel, X: F64) -> _Result:
        from ._alibi import anchor

        explainer, decide, classes = self._fit(model, "anchors")
        filled, notes = self._impute(X)
        rows = []
        for x in filled:
            found = anchor(explainer, x, threshold=self.settings.anchor_threshold)
            rows.append({"decision": classes[int(decide(x.reshape(1, -1))[0])], **found})
        params = {"threshold": self.settings.anchor_threshold, "classes": classes}
        return {"rows": rows}, "decision", params, notes

    def _lime(self, model: HeadModel, X: F64) -> _Result:
        from ._lime import lime_row

        explainer = self._fit(model, "lime")
        filled, notes = self._impute(X)
        rows = [
            lime_row(
                explainer,
                x,
                self.predictor(model),
                classification=model.head.classification,
                features=self.settings.top_features,
                samples=self.settings.lime_samples,
            )
            for x in filled
        ]
        params = {"samples": self.settings.lime_samples, "features": self.settings.top_features}
        return {"rows": rows}, "prediction", params, notes

    def _counterfactual(
        self, model: HeadModel, X: F64, desired: tuple[float, float | None] | None
    ) -> _Result:
        from ._counterfactual import counterfactuals

        filled, notes = self._impute(X)
        predict = self.predictor(model)
        vary = [n for n in self.encoder.names if n not in self.immutable]
        rows = []
        for x, x_filled, current in zip(X, filled, predict(X), strict=True):
            lo, hi = desired if desired is not None else self._default_target(model, float(current))
            found = counterfactuals(
                self.encoder,
                predict,
                self._filled_background,
                x,
                filled=x_filled,
                desired=(lo, math.inf if hi is None else hi),
                vary=vary,
                total=self.settings.counterfactuals,
                samples=self.settings.counterfactual_samples,
                seed=self.settings.seed,
                plausible=self._plausible,
            )
            found["desired_range"] = [lo, hi]
            rows.append(found)
        params = {
            "samples": self.settings.counterfactual_samples,
            "total": self.settings.counterfactuals,
            "held_fixed": self.immutable,
            "rules_kept": self._rules_kept,
        }
        return {"rows": rows}, "prediction", params, notes

    def _plausible(self, frame: pd.DataFrame) -> npt.NDArray[np.bool_]:
        """Rows that keep the contract's row rules (a counterfactual must describe a possible customer)."""
        from engage.quality import rows_breaking_rules

        broken, _ = rows_breaking_rules(frame, self.contract, now=datetime.now(UTC))
        return ~broken

    def _default_target(self, model: HeadModel, current: float) -> tuple[float, float | None]:
        if model.head.classification:
            return 0.0, self.settings.decision_threshold
        from engage.contract import Distribution

        lift = 1.0 + self.settings.regression_lift
        if model.head.distribution is Distribution.unit_interval:
            return min(current * lift, 1.0), 1.0
        if current <= 0:
            reference = float(np.median(self.predictor(model)(self.background)))
            return max(reference, 1e-9), None
        return current * lift, None

    # ---- fitted sampling explainers, reference rows -----------------------------------------------

    def _fit(self, model: HeadModel, method: str) -> Any:
        key = (model.head.name, method)
        if key in self._fitted:
            return self._fitted[key]
        seed = self.settings.seed
        if method == "kernel_shap":
            from ._alibi import fit_kernel_shap

            fitted: Any = fit_kernel_shap(
                self._margin(model), self.encoder.names, self._kernel_background, seed=seed
            )
        elif method == "anchors":
            from ._alibi import fit_anchors

            classify, classes = self._decision(model)
            fitted = (
                fit_anchors(
                    classify, self.encoder.names, self.encoder.categorical, self._filled_background, seed=seed
                ),
                classify,
                classes,
            )
        else:
            from ._lime import fit_lime

            fitted = fit_lime(
                self.encoder.names,
                self.encoder.categorical,
                self._filled_background,
                classification=model.head.classification,
                seed=seed,
            )
        self._fitted[key] = fitted
        return fitted

    def _decision(self, model: HeadModel) -> tuple[Callable[[F64], npt.NDArray[np.int64]], list[str]]:
        """The decision an anchor pins: above / below the threshold, or the tercile of a regression."""
        predict = self.predictor(model)
        what = display_name(self.contract, model.head.name)
        if model.head.classification:
            t = self.settings.decision_threshold
            return (
                lambda X: (predict(X) >= t).astype("int64"),
                [f"{what} below {t:g}", f"{what} at or above {t:g}"],
            )
        edges = np.quantile(predict(self._filled_background), [1 / 3, 2 / 3])
        return (
            lambda X: np.digitize(predict(X), edges).astype("int64"),
            [
                f"low {what} (below {edges[0]:.3g})",
                f"middle {what} ({edges[0]:.3g} to {edges[1]:.3g})",
                f"high {what} (at or above {edges[1]:.3g})",
            ],
        )

    def _fill_values(self, background: F64) -> F64:
        """Per feature: the median of a numeric one, the most common level of a categorical one."""
        fills = np.zeros(background.shape[1])
        for j in range(background.shape[1]):
            known = background[~np.isnan(background[:, j]), j]
            if len(known) == 0:
                continue
            if j in self.encoder.categorical:
                levels, counts = np.unique(known, return_counts=True)
                fills[j] = levels[np.argmax(counts)]
            else:
                fills[j] = np.median(known)
        return fills

    @property
    def _filled_background(self) -> F64:
        return np.where(np.isnan(self.background), self._fills, self.background)

    def _impute(self, X: F64) -> tuple[F64, list[str]]:
        """Empty values filled from the reference rows (LIME, anchors and DiCE need complete rows)."""
        empty = np.isnan(X)
        if not empty.any():
            return X, []
        names = [self.encoder.names[j] for j in np.flatnonzero(empty.any(axis=0))]
        note = f"empty values of {', '.join(names)} were filled from the reference rows for this method"
        return np.where(empty, self._fills, X), [note]


class _Rows:
    """The rows of one request: a table, or mappings (a JSON request's instances), and their matrix."""

    def __init__(self, rows: pd.DataFrame | Sequence[Mapping[str, Any]], encoder: Encoder) -> None:
        if isinstance(rows, pd.DataFrame):
            self._frame: pd.DataFrame | None = rows
            self._records: Sequence[Mapping[str, Any]] = ()
            self.matrix = encoder.frame(rows)
        else:
            self._frame, self._records = None, rows
            try:
                self.matrix = encoder.rows(rows)
            except RequestRejected as e:
                raise SchemaError(e.message) from None

    @property
    def frame(self) -> pd.DataFrame:
        if self._frame is None:
            self._frame = pd.DataFrame.from_records(list(self._records))
        return self._frame

    def has(self, column: str) -> bool:
        if self._frame is not None:
            return column in self._frame.columns
        return all(column in r for r in self._records)

    def ids(self, keys: list[str]) -> list[Any] | None:
        """The primary key of each row (one value, or a mapping for a composite key); None without it."""
        present = [k for k in keys if self.has(k)]
        if not present:
            return None
        if self._frame is not None:
            columns = [self._frame[k].tolist() for k in present]
            values = list(zip(*columns, strict=True))
        else:
            values = [tuple(r[k] for k in present) for r in self._records]
        if len(present) == 1:
            return [None if is_empty(v[0]) else str(v[0]) for v in values]
        return [dict(zip(present, map(str, v), strict=True)) for v in values]
