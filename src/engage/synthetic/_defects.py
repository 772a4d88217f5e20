"""Injection of data-quality defects into a clean customer table, with their ground truth.

For each requested kind with rate ``r`` exactly ``round(r * rows)`` distinct rows are spoiled; the
row sets of different kinds are disjoint and the originals of duplicated rows stay clean. Each
defect breaks exactly the contract check named in ``DEFECT_CHECKS`` and nothing else that the
contract reads first:

* ``duplicate``: an exact copy of a clean row is inserted right after it (the copy is recorded);
* ``signup_after_activity``: ``signup_date`` moved after ``last_activity_date`` but not past the
  snapshot day (only rows whose last activity is before the snapshot day qualify);
* ``impossible_age``: an age outside 18..120 (-1, 0, 7, 12, 130, 150, 999);
* ``bad_email`` / ``bad_phone``: the address without domain or ``@``, with ``@@`` or a blank, or a
  dotless domain; the number in a local form without ``+``;
* ``negative_money``: a refund booked as negative service spend, the total still equal to the parts;
* ``inconsistent_total``: the total off the sum of its parts by 1 to 100;
* ``sessions_inconsistent``: more sessions in 30 days than in 90 days;
* ``bad_country``: a code that is not ISO 3166-1 alpha-2 (UK, XX, EN, EU, ZZ);
* ``missing_value``: a critical, non-nullable feature emptied; the rows are spread over as few of
  those columns as keeps each column's null share under 5 % (the ML-001 limit).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from engage.errors import ConfigError
from engage.synthetic import _columns as col
from engage.synthetic._config import DefectKind
from engage.synthetic._names import COUNTRIES
from engage.synthetic._pii import Contacts

__all__ = ["empty_defects", "inject_defects"]

I64 = NDArray[np.int64]

_IMPOSSIBLE_AGES = np.array([-1, 0, 7, 12, 130, 150, 999], dtype=np.int64)
_BAD_COUNTRIES = ("UK", "XX", "EN", "EU", "ZZ")
_NULL_SHARE_LIMIT = 0.05
_MIN_MISSING_COLUMNS = 4

# The column recorded for each kind (missing_value records the column it empties).
_KIND_COLUMN: dict[DefectKind, str] = {
    DefectKind.duplicate: col.CUSTOMER_ID,
    DefectKind.signup_after_activity: col.SIGNUP_DATE,
    DefectKind.impossible_age: col.AGE,
    DefectKind.bad_email: col.EMAIL,
    DefectKind.bad_phone: col.PHONE,
    DefectKind.negative_money: col.SPEND_SERVICES_90D,
    DefectKind.inconsistent_total: col.TOTAL_SPEND_90D,
    DefectKind.sessions_inconsistent: col.SESSIONS_30D,
    DefectKind.bad_country: col.COUNTRY,
}


def empty_defects() -> pd.DataFrame:
    """A ground-truth table without rows."""
    return _truth(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=object), [], [])


def _truth(rows: I64, ids: NDArray[np.object_], kinds: list[str], columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "row": pd.Series(rows, dtype="int64"),
            "customer_id": pd.Series(ids, dtype=object),
            "kind": pd.Series(kinds, dtype=object),
            "column": pd.Series(columns, dtype=object),
        }
    )


def _select(
    rng: np.random.Generator, frame: pd.DataFrame, counts: dict[DefectKind, int]
) -> dict[DefectKind, I64]:
    """Disjoint row sets per kind (sorted); duplicate originals are reserved too."""
    n = len(frame)
    free = np.ones(n, dtype=np.bool_)
    eligible = {
        DefectKind.signup_after_activity: frame[col.DAYS_SINCE_LAST_ACTIVITY].to_numpy(dtype=np.int64) >= 1,
    }
    # Constrained kinds first, so the unconstrained ones cannot use up their candidates.
    order = sorted(counts, key=lambda kind: (kind not in eligible, list(DefectKind).index(kind)))
    chosen: dict[DefectKind, I64] = {}
    for kind in order:
        need = counts[kind]
        pool = np.flatnonzero(free & eligible.get(kind, True))
        if need > pool.shape[0]:
            raise ConfigError(f"not enough rows to spoil {need} with {kind.value}: {pool.shape[0]} qualify")
        picked = np.sort(rng.choice(pool, size=need, replace=False)).astype(np.int64)
        free[picked] = False
        chosen[kind] = picked
    return chosen


def _replace(frame: pd.DataFrame, name: str, rows: I64, values: object) -> None:
    series = frame[name].copy()
    series.iloc[rows] = values
    frame[name] = series


def _bad_emails(rng: np.random.Generator, emails: list[str]) -> list[str]:
    variant = rng.integers(0, 5, len(emails)).tolist()
    out = []
    for email, v in zip(emails, variant, strict=True):
        local, domain = email.split("@", 1)
        if v == 0:
            out.append(f"{local}@")
        elif v == 1:
            out.append(f"{local}.{domain}")
        elif v == 2:
            out.append(f"{local}@@{domain}")
        elif v == 3:
            out.append(f"{local.replace('.', ' ', 1)}@{domain}")
        else:
            out.append(f"{local}@{domain.split('.', 1)[0]}")
    return out


def _bad_phones(rng: np.random.Generator, national: list[str], calling: list[str]) -> list[str]:
    variant = rng.integers(0, 4, len(national)).tolist()
    out = []
    for nsn, cc, v in zip(national, calling, variant, strict=True):
        if v == 0:
            out.append(f"0{nsn}")
        elif v == 1:
            out.append(f"00{cc}{nsn}")
        elif v == 2:
            out.append(f"{cc}{nsn}")
        else:
            out.append(f"({nsn[:3]}) {nsn[3:6]}-{nsn[6:]}")
    return out


def _missing_columns(count: int, rows: int) -> list[str]:
    """Which column each of ``count`` missing values empties, keeping each column under the limit."""
    cap = max(1, math.ceil(_NULL_SHARE_LIMIT * rows) - 1)
    k = min(len(col.MISSING_VALUE_COLUMNS), max(_MIN_MISSING_COLUMNS, math.ceil(count / cap)))
    return [col.MISSING_VALUE_COLUMNS[i % k] for i in range(count)]


def inject_defects(
    clean: pd.DataFrame, contacts: Contacts, rates: dict[DefectKind, float], rng: np.random.Generator
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Spoil ``clean`` as ``rates`` asks; returns the spoiled table and the ground truth."""
    n = len(clean)
    counts = {kind: round(rates[kind] * n) for kind in DefectKind if rates.get(kind, 0.0) > 0.0}
    counts = {kind: c for kind, c in counts.items() if c > 0}
    if not counts:
        return clean, empty_defects()
    need = sum(counts.values()) + counts.get(DefectKind.duplicate, 0)
    if need > n:
        raise ConfigError(f"the defect rates need {need} distinct rows but the table has {n}")
    chosen = _select(rng, clean, counts)
    frame = clean.copy()
    recorded: dict[DefectKind, list[str]] = {}
    code_to_calling = {c.code: c.calling_code for c in COUNTRIES}

    for kind in DefectKind:
        rows = chosen.get(kind)
        if rows is None:
            continue
        k = rows.shape[0]
        recorded[kind] = [_KIND_COLUMN.get(kind, "")] * k
        if kind is DefectKind.impossible_age:
            _replace(frame, col.AGE, rows, _IMPOSSIBLE_AGES[rng.integers(0, len(_IMPOSSIBLE_AGES), k)])
        elif kind is DefectKind.bad_email:
            _replace(frame, col.EMAIL, rows, _bad_emails(rng, frame[col.EMAIL].iloc[rows].tolist()))
        elif kind is DefectKind.bad_phone:
            codes = [code_to_calling[c] for c in frame[col.COUNTRY].iloc[rows].astype(str).tolist()]
            _replace(frame, col.PHONE, rows, _bad_phones(rng, contacts.national[rows].tolist(), codes))
        elif kind is DefectKind.negative_money:
            refund = np.round(rng.uniform(5.0, 80.0, k), 2)
            products = frame[col.SPEND_PRODUCTS_90D].to_numpy()[rows]
            _replace(frame, col.SPEND_SERVICES_90D, rows, -refund)
            _replace(frame, col.TOTAL_SPEND_90D, rows, np.round(products - refund, 2))
        elif kind is DefectKind.inconsistent_total:
            total = frame[col.TOTAL_SPEND_90D].to_numpy()[rows]
            _replace(frame, col.TOTAL_SPEND_90D, rows, np.round(total + rng.uniform(1.0, 100.0, k), 2))
        elif kind is DefectKind.sessions_inconsistent:
            s90 = frame[col.SESSIONS_90D].to_numpy(dtype=np.int64)[rows]
            _replace(frame, col.SESSIONS_30D, rows, s90 + rng.integers(1, 16, k))
        elif kind is DefectKind.bad_country:
            bad = np.array(_BAD_COUNTRIES, dtype=object)[rng.integers(0, len(_BAD_COUNTRIES), k)]
            used = sorted(set(bad.tolist()))
            series = frame[col.COUNTRY].cat.add_categories(used)
            series.iloc[rows] = bad
            frame[col.COUNTRY] = series
        elif kind is DefectKind.signup_after_activity:
            last = frame[col.LAST_ACTIVITY_DATE].to_numpy()[rows]
            gap = frame[col.DAYS_SINCE_LAST_ACTIVITY].to_numpy(dtype=np.int64)[rows]
            shift = rng.integers(1, gap + 1).astype("timedelta64[D]")
            _replace(frame, col.SIGNUP_DATE, rows, last + shift)
        elif kind is DefectKind.missing_value:
            names = _missing_columns(k, n)
            recorded[kind] = names
            for name in dict.fromkeys(names):
                target = rows[np.array([c == name for c in names])]
                series = frame[name].copy()
                series.iloc[target] = np.nan if series.dtype.kind == "f" else None
                frame[name] = series

    dup = chosen.get(DefectKind.duplicate, np.zeros(0, dtype=np.int64))
    # Final position of original row i: i plus the number of copies inserted before it.
    shift_before = np.searchsorted(dup, np.arange(n), side="left")
    if dup.shape[0]:
        order = np.sort(np.concatenate([np.arange(n), dup]), kind="stable")
        frame = frame.iloc[order].reset_index(drop=True)
        recorded[DefectKind.duplicate] = [col.CUSTOMER_ID] * dup.shape[0]

    positions: list[I64] = []
    kinds: list[str] = []
    columns: list[str] = []
    for kind in DefectKind:
        rows = chosen.get(kind)
        if rows is None:
            continue
        final = rows + shift_before[rows] + (1 if kind is DefectKind.duplicate else 0)
        positions.append(final.astype(np.int64))
        kinds.extend([kind.value] * rows.shape[0])
        columns.extend(recorded[kind])
    all_rows = np.concatenate(positions)
    ids = frame[col.CUSTOMER_ID].to_numpy(dtype=object)[all_rows]
    truth = _truth(all_rows, ids, kinds, columns)
    truth = truth.sort_values("row", kind="stable").reset_index(drop=True)
    return frame, truth
