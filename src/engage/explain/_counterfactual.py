"""Counterfactuals with DiCE (Mothilal et al. 2020): the smallest changes that bring a prediction into range.

Only the contract's mutable features vary: protected attributes and age are never model inputs, and
features marked ``mutable: false`` (country, signup channel, tenure) are held fixed. DiCE's random
search proposes candidates within the ranges seen in the reference rows; Engage then re-scores every
candidate with the model itself, keeps only those inside the requested range that change nothing
immutable, and orders them by how few features they change. When none survive, the result says so
explicitly ("no counterfactual found within budget") rather than raising.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from engage.encoding import Encoder
from engage.errors import ExplainError

__all__ = ["NOT_FOUND", "counterfactuals"]

F64 = npt.NDArray[np.float64]
NOT_FOUND = "no counterfactual found within budget ({samples} random candidates per round, {vary} features free to vary)"
_OUTCOME = "__engage_prediction__"


@contextlib.contextmanager
def _quiet_seeded(seed: int) -> Iterator[None]:
    """Silence DiCE (it prints and warns) and seed the global numpy generator it draws from; restore it."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),  # its tqdm progress bars
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        np.random.set_state(state)


class _Model:
    """The head as DiCE's sklearn backend sees it: ``predict`` on a table of raw values."""

    def __init__(self, encoder: Encoder, predict: Callable[[F64], F64]) -> None:
        self.encoder, self._predict = encoder, predict

    def predict(self, frame: pd.DataFrame) -> F64:
        return self._predict(self.encoder.frame(frame))


def counterfactuals(
    encoder: Encoder,
    predict: Callable[[F64], F64],
    background: F64,
    x: F64,
    *,
    filled: F64,
    desired: tuple[float, float],
    vary: list[str],
    total: int,
    samples: int,
    seed: int,
    plausible: Callable[[pd.DataFrame], npt.NDArray[np.bool_]],
) -> dict[str, Any]:
    """Counterfactuals of one encoded row ``x`` whose prediction lands in ``desired`` (inclusive).

    DiCE searches from ``filled`` (``x`` with empty values filled: it cannot handle them); the changes
    it proposes are then applied to ``x`` itself, so every counterfactual is scored as the customer's
    own row with only the named features changed.
    """
    import dice_ml
    from raiutils.exceptions import UserConfigValidationException

    lo, hi = desired
    current = float(predict(x.reshape(1, -1))[0])
    result: dict[str, Any] = {
        "desired_range": [lo, hi],
        "prediction": current,
        "features_varied": vary,
        "counterfactuals": [],
    }
    if lo <= current <= hi:
        return {**result, "found": True, "reason": "the prediction is already in the desired range"}
    if not vary:
        return {**result, "found": False, "reason": "no feature is mutable: nothing may change"}

    names = encoder.names
    numeric = [n for j, n in enumerate(names) if j not in encoder.categorical]
    # the row itself is a reference row too, so DiCE knows each of its levels
    reference_rows = np.vstack([background, filled.reshape(1, -1)])
    reference = pd.DataFrame(encoder.values(reference_rows), columns=names)
    reference[_OUTCOME] = predict(reference_rows)
    query = pd.DataFrame(encoder.values(filled), columns=names)
    with _quiet_seeded(seed):
        data = dice_ml.Data(dataframe=reference, continuous_features=numeric, outcome_name=_OUTCOME)
        model = dice_ml.Model(model=_Model(encoder, predict), backend="sklearn", model_type="regressor")
        search = dice_ml.Dice(data, model, method="random")
        try:
            found = search.generate_counterfactuals(
                query,
                total_CFs=total,
                desired_range=[lo, hi],
                features_to_vary=vary,
                sample_size=samples,
                random_seed=seed,
                verbose=False,
            )
            proposals = found.cf_examples_list[0].final_cfs_df
        except UserConfigValidationException:  # DiCE's way of saying that nothing was found
            proposals = None
        except ValueError as e:  # DiCE's own checks of the query (a level its reference rows lack)
            raise ExplainError(f"counterfactual search refused the row: {' '.join(map(str, e.args))}") from e
    scale = _scale(background)
    kept = _verified(encoder, predict, x, filled, proposals, (lo, hi), vary, plausible, scale)[:total]
    if not kept:
        return {**result, "found": False, "reason": NOT_FOUND.format(samples=samples, vary=len(vary))}
    return {**result, "found": True, "reason": None, "counterfactuals": kept}


def _scale(background: F64) -> F64:
    """Per feature, the spread that makes changes comparable: interquartile range, else std, else 1."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # all-empty columns
        q75, q25 = np.nanpercentile(background, [75, 25], axis=0)
        spread = np.where(q75 - q25 > 0, q75 - q25, np.nanstd(background, axis=0))
    return np.where(np.isfinite(spread) & (spread > 0), spread, 1.0)


def _verified(
    encoder: Encoder,
    predict: Callable[[F64], F64],
    x: F64,
    filled: F64,
    proposals: pd.DataFrame | None,
    desired: tuple[float, float],
    vary: list[str],
    plausible: Callable[[pd.DataFrame], npt.NDArray[np.bool_]],
    scale: F64,
) -> list[dict[str, Any]]:
    """Re-score DiCE's proposals; keep those in range, changing only mutable features, keeping the
    contract's row rules; order by fewest changes, then smallest scaled distance."""
    if proposals is None or len(proposals) == 0:
        return []
    proposed = encoder.frame(proposals[encoder.names])
    row0, start = x.ravel(), filled.ravel()
    changed = ~np.isclose(proposed, start, equal_nan=True)
    candidates = np.where(changed, proposed, row0)  # the customer's own row, with DiCE's changes
    scores = predict(candidates)
    readable = encoder.values(candidates)
    allowed = plausible(pd.DataFrame(readable, columns=encoder.names))
    original = encoder.values(x)[0]
    fixed = [j for j, n in enumerate(encoder.names) if n not in vary]
    numeric = np.array([j not in encoder.categorical for j in range(len(encoder.names))])
    out: list[dict[str, Any]] = []
    for i, (row, score) in enumerate(zip(candidates, scores, strict=True)):
        if not (desired[0] <= score <= desired[1]) or not allowed[i]:
            continue
        if not np.allclose(row[fixed], row0[fixed], equal_nan=True):
            continue
        new = readable[i]
        changes = {n: {"from": original[n], "to": new[n]} for n in encoder.names if new[n] != original[n]}
        if not changes:
            continue
        moved = np.abs(np.nan_to_num(row - row0)) / scale
        distance = float(np.sum(np.where(numeric, moved, moved > 0)))
        out.append({"changes": changes, "prediction": float(score), "distance": distance})
    unique = {tuple(sorted((k, str(v["to"])) for k, v in c["changes"].items())): c for c in out}
    return sorted(unique.values(), key=lambda c: (len(c["changes"]), c["distance"]))
