"""Data drift, prediction drift and outliers of recent traffic against the training reference.

One detector holds a sliding window of the most recent rows (and, separately, of the most recent
predictions of each head) and tests it against the reference with one univariate test per feature:
Kolmogorov-Smirnov for a numeric feature, chi-square on the level counts for a categorical one, corrected
for the number of features (Bonferroni, or Benjamini-Hochberg's false discovery rate). Two backends run
the same tests on the same input and so agree: ``alibi-detect`` (its ``TabularDrift``, built once;
Business Source License 1.1) and ``scipy`` (``ks_2samp`` and ``chi2_contingency``; licence-clean).

**Missing values** are imputed, the same way in the reference and in the window, before any test: a
numeric NaN becomes the reference median of its feature, a categorical NaN (empty, or a level the
reference does not know) becomes one extra "missing or unknown" level. Dropping them instead would hide
a change in how often a feature is missing, which changes what the model sees (xgboost sends a missing
value down its default branch); imputing keeps every feature tested on every row, in one call of the
backend, and the KS or chi-square test then sees a change in the missing share as drift.

**Prediction drift**: a KS test per head of the window's predictions against the model's predictions on
the reference rows, with the same correction across heads; it is reported beside the data drift and
does not set the overall ``is_drift`` flag (that is data drift, as alibi-detect reports it).

**Outliers**: a seeded scikit-learn ``IsolationForest`` fitted on the (imputed) reference at
construction; the window's ``outlier_score`` is its mean anomaly score (``-score_samples``, higher is
more anomalous) and ``outlier_share`` the share of its rows scoring above the reference's
``outlier_quantile`` quantile (about 1 - quantile on reference-like traffic).
"""

from __future__ import annotations

import math
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from engage.errors import ConfigError, RequestRejected

from ._reference import Reference
from ._settings import DriftSettings

__all__ = ["BACKEND_NAMES", "DriftDetector", "decide"]

F64 = npt.NDArray[np.float64]
BACKEND_NAMES = {"alibi-detect": "TabularDrift", "scipy": "ks/chi2 (scipy)"}
#: the detector's reference scores: at most this many reference rows are scored for the outlier cut
OUTLIER_SCORED_ROWS = 50_000


def decide(p_values: F64, p_value: float, correction: str) -> tuple[float, npt.NDArray[np.bool_]]:
    """The corrected threshold and which tests fall below it (alibi-detect's rule, shared by both backends).

    Bonferroni: ``p_value / n``. FDR (Benjamini-Hochberg): the largest ``p_value * i / n`` that the
    i-th smallest p-value falls below; when none does, the strictest bar ``p_value / n``, which nothing
    passed. A test is flagged when its p-value is below the threshold.
    """
    n = len(p_values)
    if n == 0:
        return p_value, np.zeros(0, dtype=bool)
    if correction == "bonferroni":
        threshold = p_value / n
    else:
        bars = p_value * np.arange(1, n + 1) / n
        below = np.flatnonzero(np.sort(p_values) < bars)
        threshold = float(bars[below.max()]) if below.size else p_value / n
    return float(threshold), p_values < threshold


class _Ring:
    """A fixed-size buffer of the most recent rows (callers hold the detector's lock)."""

    def __init__(self, size: int, width: int | None) -> None:
        shape = (size,) if width is None else (size, width)
        self.data: F64 = np.empty(shape, dtype=np.float64)
        self.size = size
        self.pos = 0
        self.count = 0

    def add(self, values: F64) -> None:
        k = len(values)
        if k >= self.size:
            self.data[:] = values[k - self.size :]
            self.pos, self.count = 0, self.size
            return
        end = self.pos + k
        if end <= self.size:
            self.data[self.pos : end] = values
        else:
            first = self.size - self.pos
            self.data[self.pos :] = values[:first]
            self.data[: k - first] = values[first:]
        self.pos = end % self.size
        self.count = min(self.count + k, self.size)

    def values(self) -> F64:
        """A copy, oldest row first."""
        if self.count < self.size:
            return self.data[: self.count].copy()
        return np.concatenate((self.data[self.pos :], self.data[: self.pos]))


def resolve_backend(backend: str) -> str:
    """The backend that runs: ``auto`` is alibi-detect when it is installed, else scipy (the same tests);
    an explicit ``alibi-detect`` that is not installed is a :class:`ConfigError` saying what to do."""
    import importlib.util

    installed = importlib.util.find_spec("alibi_detect") is not None
    if backend == "auto":
        return "alibi-detect" if installed else "scipy"
    if backend == "alibi-detect" and not installed:
        raise ConfigError(
            "drift backend alibi-detect is not installed (a licence-clean install leaves it out): install "
            "'engage[alibi]', or set ENGAGE_DRIFT_BACKEND=scipy or auto (the same tests with scipy)"
        )
    return backend


class DriftDetector:
    """Tests a sliding window of traffic (or given rows) against a :class:`Reference`.

    Thread-safe: any thread may add rows and predictions while another runs :meth:`test`; a window test
    copies the window under the lock and tests the copy. ``clock`` (seconds, monotonic) is for tests.
    """

    def __init__(
        self,
        reference: Reference,
        settings: DriftSettings | None = None,
        *,
        reference_predictions: Mapping[str, npt.ArrayLike] | None = None,
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reference = reference
        self.settings = settings or DriftSettings()
        self.backend = resolve_backend(self.settings.backend)
        self.name = BACKEND_NAMES[self.backend]
        self.p_value = self.settings.p_value if self.settings.p_value is not None else reference.p_value
        self.features = list(reference.features)
        self._categorical = reference.categorical_indices
        self._numeric = [j for j in range(len(self.features)) if j not in set(self._categorical)]
        self._fill = self._fill_values(reference)
        self._x_ref = self.impute(reference.matrix)
        self._ref_predictions: dict[str, F64] = {}
        for head, values in (reference_predictions or {}).items():
            array = np.asarray(values, dtype=np.float64).ravel()
            array = array[np.isfinite(array)]
            if array.size:
                self._ref_predictions[head] = array
        self._clock = clock
        self._lock = threading.Lock()
        self._rows = _Ring(self.settings.window_size, len(self.features))
        self._predictions = {head: _Ring(self.settings.window_size, None) for head in self._ref_predictions}
        self._since_test = 0
        self._seen = 0
        self._last_test = clock()
        #: the result of the latest window test (None before the first)
        self.latest: dict[str, Any] | None = None
        self._build_backend()
        self._build_outliers(seed)

    # ---- construction ---------------------------------------------------------------------------

    def _fill_values(self, reference: Reference) -> F64:
        fill = np.zeros(len(self.features), dtype=np.float64)
        for j, name in enumerate(self.features):
            if name in reference.categorical:
                fill[j] = len(reference.categorical[name])  # the "missing or unknown" level
            else:
                column = reference.matrix[:, j]
                known = column[~np.isnan(column)]
                fill[j] = float(np.median(known)) if known.size else 0.0
        return fill

    def _build_backend(self) -> None:
        if self.backend == "alibi-detect":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                from alibi_detect.cd import TabularDrift  # type: ignore[import-untyped,unused-ignore]

                self._tabular = TabularDrift(
                    self._x_ref,
                    p_val=self.p_value,
                    categories_per_feature=dict.fromkeys(self._categorical),
                    correction=self.settings.correction,
                )
        else:
            self._ref_sorted = {j: np.sort(self._x_ref[:, j]) for j in self._numeric}
            self._ref_counts = {
                j: dict(zip(*np.unique(self._x_ref[:, j], return_counts=True), strict=True))
                for j in self._categorical
            }

    def _build_outliers(self, seed: int) -> None:
        from sklearn.ensemble import IsolationForest

        self._forest = IsolationForest(n_estimators=100, random_state=seed).fit(self._x_ref)
        scored = self._x_ref
        if len(scored) > OUTLIER_SCORED_ROWS:
            pick = np.random.default_rng(seed).choice(len(scored), OUTLIER_SCORED_ROWS, replace=False)
            scored = scored[pick]
        self._outlier_cut = float(
            np.quantile(-self._forest.score_samples(scored), self.settings.outlier_quantile)
        )

    # ---- the window -----------------------------------------------------------------------------

    def impute(self, matrix: F64) -> F64:
        """``matrix`` with NaN replaced as the module docstring says (numeric: reference median;
        categorical: the extra missing-or-unknown level)."""
        return np.where(np.isnan(matrix), self._fill, matrix)

    def add_rows(self, matrix: npt.ArrayLike) -> int:
        """Append encoded rows (see :meth:`Reference.encode`) to the window; returns how many."""
        rows = self._matrix(matrix)
        if len(rows):
            with self._lock:
                self._rows.add(rows)
                self._since_test += len(rows)
                self._seen += len(rows)
        return len(rows)

    def add_predictions(self, predictions: Mapping[str, npt.ArrayLike]) -> int:
        """Append predicted values per head (heads without reference predictions are ignored)."""
        added = 0
        parsed = {
            h: np.asarray(v, dtype=np.float64).ravel()
            for h, v in predictions.items()
            if h in self._predictions
        }
        with self._lock:
            for head, values in parsed.items():
                values = values[np.isfinite(values)]
                self._predictions[head].add(values)
                added = max(added, len(values))
        return added

    def window(self) -> F64:
        """A copy of the window's encoded rows, oldest first."""
        with self._lock:
            return self._rows.values()

    @property
    def window_rows(self) -> int:
        return self._rows.count

    @property
    def rows_seen(self) -> int:
        return self._seen

    @property
    def prediction_heads(self) -> list[str]:
        return list(self._ref_predictions)

    def due(self) -> bool:
        """A window test is due: the window holds ``min_rows`` and, since the last test (or the start),
        ``test_every_rows`` rows arrived or ``test_every_seconds`` passed with at least one new row."""
        s = self.settings
        with self._lock:
            if self._rows.count < s.min_rows or self._since_test == 0:
                return False
            return (
                self._since_test >= s.test_every_rows
                or self._clock() - self._last_test >= s.test_every_seconds
            )

    # ---- tests ----------------------------------------------------------------------------------

    def test(
        self, matrix: npt.ArrayLike | None = None, *, predictions: Mapping[str, npt.ArrayLike] | None = None
    ) -> dict[str, Any]:
        """Test ``matrix`` (with optional ``predictions`` per head) or, without it, the window (which
        restarts the cadence and sets :attr:`latest`); ``{"data", "meta"}`` as documented in the module."""
        started = time.perf_counter()
        if matrix is None:
            with self._lock:
                x = self._rows.values()
                window_predictions = {h: ring.values() for h, ring in self._predictions.items() if ring.count}
                self._since_test = 0
                self._last_test = self._clock()
        else:
            x = self._matrix(matrix)
            window_predictions = {
                h: np.asarray(p, dtype=np.float64).ravel() for h, p in (predictions or {}).items()
            }
        if len(x) == 0:
            raise RequestRejected("no rows to test", status=400, reason="no_rows")
        imputed = self.impute(x)
        p_values, distances = self._feature_scores(imputed)
        threshold, flags = decide(p_values, self.p_value, self.settings.correction)
        anomaly = -self._forest.score_samples(imputed)
        result: dict[str, Any] = {
            "data": {
                "is_drift": int(flags.any()),
                "p_val": dict(zip(self.features, map(float, p_values), strict=True)),
                "distance": dict(zip(self.features, map(float, distances), strict=True)),
                # which test each distance comes from: KS (0..1) or chi-square (unbounded)
                "test": {
                    name: "chi2" if j in self._categorical else "ks" for j, name in enumerate(self.features)
                },
                "threshold": threshold,
                "feature_drift": dict(zip(self.features, map(int, flags), strict=True)),
                "prediction_drift": self._prediction_drift(window_predictions),
                "outlier_score": float(anomaly.mean()),
                "outlier_share": float((anomaly > self._outlier_cut).mean()),
                "window_rows": len(x),
            },
            "meta": {
                "backend": self.backend,
                "name": self.name,
                "correction": self.settings.correction,
                "reference_rows": self.reference.rows,
                "duration_seconds": time.perf_counter() - started,
                "tested_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            },
        }
        if matrix is None:
            self.latest = result
        return result

    def _feature_scores(self, x: F64) -> tuple[F64, F64]:
        """p-value and statistic (KS distance, or chi-square) per feature of an imputed matrix."""
        if self.backend == "alibi-detect":
            p_values, distances = self._tabular.score(x)
        else:
            from scipy.stats import chi2_contingency, ks_2samp

            p_values, distances = np.ones(len(self.features)), np.zeros(len(self.features))
            for j in self._numeric:
                distances[j], p_values[j] = ks_2samp(self._ref_sorted[j], x[:, j], method="asymp")
            for j in self._categorical:
                levels, counts = np.unique(x[:, j], return_counts=True)
                window = dict(zip(levels, counts, strict=True))
                union = sorted(set(self._ref_counts[j]) | set(window))
                table = [[self._ref_counts[j].get(v, 0) for v in union], [window.get(v, 0) for v in union]]
                if len(union) < 2:  # one level on both sides: nothing can differ
                    distances[j], p_values[j] = 0.0, 1.0
                else:
                    distances[j], p_values[j], _, _ = chi2_contingency(table)
        p = np.nan_to_num(np.asarray(p_values, dtype=np.float64), nan=1.0)
        d = np.nan_to_num(np.asarray(distances, dtype=np.float64), nan=0.0)
        return p, d

    def _prediction_drift(self, predictions: Mapping[str, F64]) -> dict[str, dict[str, float | int]]:
        from scipy.stats import ks_2samp

        stats: dict[str, tuple[float, float]] = {}
        for head, reference in self._ref_predictions.items():
            values = predictions.get(head)
            if values is None:
                continue
            values = values[np.isfinite(values)]
            if values.size:
                result = ks_2samp(reference, values, method="asymp")
                p = float(result.pvalue)
                stats[head] = (float(result.statistic), 1.0 if math.isnan(p) else p)
        if not stats:
            return {}
        _, flags = decide(np.asarray([p for _, p in stats.values()]), self.p_value, self.settings.correction)
        return {
            head: {"distance": d, "p_val": p, "is_drift": int(flag)}
            for (head, (d, p)), flag in zip(stats.items(), flags, strict=True)
        }

    def _matrix(self, matrix: npt.ArrayLike) -> F64:
        x = np.asarray(matrix, dtype=np.float64)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != len(self.features):
            raise ValueError(f"expected rows of {len(self.features)} encoded features; got shape {x.shape}")
        return x
