"""Strength of association between two columns, on a 0..1 scale, with a measure fitting their types.

* numeric ~ numeric: |Spearman rho| (monotone, robust to heavy tails);
* numeric ~ categorical: the correlation ratio eta (share of the numeric variance explained by the groups);
* categorical ~ categorical: Cramer's V (scipy).

Booleans and low-cardinality integer codes are categorical. Rows with either value missing are left out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["association", "is_categorical"]


def is_categorical(s: pd.Series) -> bool:
    return (
        isinstance(s.dtype, pd.CategoricalDtype)
        or pd.api.types.is_bool_dtype(s.dtype)
        or pd.api.types.is_string_dtype(s.dtype)
        or pd.api.types.is_object_dtype(s.dtype)
    )


def association(x: pd.Series, y: pd.Series) -> tuple[float, str]:
    """Return ``(strength, measure name)`` for two aligned columns; 0.0 when it cannot be measured."""
    both = x.notna().to_numpy() & y.notna().to_numpy()
    x, y = x[both], y[both]
    if len(x) < 3:
        return 0.0, "none"
    xc, yc = is_categorical(x), is_categorical(y)
    if xc and yc:
        return _cramers_v(x, y), "cramers_v"
    if xc or yc:
        cat, num = (x, y) if xc else (y, x)
        return _correlation_ratio(cat, num), "correlation_ratio"
    return _spearman(x, y), "spearman"


def _spearman(x: pd.Series, y: pd.Series) -> float:
    rx = x.rank().to_numpy(dtype=float)
    ry = y.rank().to_numpy(dtype=float)
    if rx.std() == 0 or ry.std() == 0:
        return 0.0
    return float(abs(np.corrcoef(rx, ry)[0, 1]))


def _correlation_ratio(categories: pd.Series, values: pd.Series) -> float:
    v = values.to_numpy(dtype=float)
    scale = float(np.abs(v).max()) if len(v) else 0.0
    if 0 < scale < np.inf:
        v = v / scale  # eta does not change, and values near 1e300 no longer overflow when squared
    codes, _ = pd.factorize(categories.astype("string"))
    total = float(((v - v.mean()) ** 2).sum())
    if total == 0:
        return 0.0
    counts = np.bincount(codes)
    sums = np.bincount(codes, weights=v)
    means = sums[counts > 0] / counts[counts > 0]
    between = float((counts[counts > 0] * (means - v.mean()) ** 2).sum())
    return float(np.sqrt(between / total))


def _cramers_v(x: pd.Series, y: pd.Series) -> float:
    from scipy.stats.contingency import association as scipy_association

    xcodes, _ = pd.factorize(x.astype("string"))
    ycodes, _ = pd.factorize(y.astype("string"))
    nx, ny = xcodes.max() + 1, ycodes.max() + 1
    if nx < 2 or ny < 2:
        return 0.0
    table = np.bincount(xcodes * ny + ycodes, minlength=nx * ny).reshape(nx, ny)
    # drop empty rows/columns (a category absent from the sample)
    table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]
    return float(scipy_association(table, method="cramer"))
