"""Assembly of the customer table from the simulated population, with the contract's dtypes.

Integers are pandas ``Int64``, floats ``float64`` (NaN for null), booleans ``boolean``, categories
``category`` with the contract's levels, strings ``object``, dates ``datetime64[ns]`` at midnight and
``snapshot_at`` ``datetime64[ns, UTC]``. Columns follow the contract's order.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from engage.synthetic import _columns as col
from engage.synthetic._names import COUNTRIES
from engage.synthetic._pii import Contacts
from engage.synthetic._population import Population

__all__ = ["COUNTRY_LEVELS", "build_frame", "snapshot_day"]

COUNTRY_LEVELS: tuple[str, ...] = tuple(sorted(c.code for c in COUNTRIES))
_COUNTRY_RECODE = np.array([COUNTRY_LEVELS.index(c.code) for c in COUNTRIES], dtype=np.int8)


def snapshot_day(as_of: datetime) -> np.datetime64:
    """The calendar day (UTC) of the snapshot as ``datetime64[D]``."""
    return np.datetime64(as_of.date().isoformat(), "D")


def _int(values: NDArray[np.int64], missing: NDArray[np.bool_] | None = None) -> pd.arrays.IntegerArray:
    mask = np.zeros(values.shape[0], dtype=np.bool_) if missing is None else missing
    return pd.arrays.IntegerArray(values.astype(np.int64), mask.copy())


def _cat(codes: NDArray[np.int8], levels: tuple[str, ...]) -> pd.Categorical:
    # pandas-stubs type the codes as a sequence; a numpy array is what pandas wants and is fastest.
    return pd.Categorical.from_codes(
        cast("Sequence[int]", codes.astype(np.int8)), dtype=pd.CategoricalDtype(list(levels))
    )


def _bool(values: NDArray[np.bool_]) -> pd.arrays.BooleanArray:
    return pd.arrays.BooleanArray(values.astype(np.bool_), np.zeros(values.shape[0], dtype=np.bool_))


def build_frame(pop: Population, contacts: Contacts, as_of: datetime, *, first_id: int = 1) -> pd.DataFrame:
    """The clean customer table, one row per customer in customer number order (from ``first_id``)."""
    n = pop.age.shape[0]
    day = snapshot_day(as_of)
    signup = (day - pop.signup_ago.astype("timedelta64[D]")).astype("datetime64[ns]")
    last_activity = (day - pop.last_activity_ago.astype("timedelta64[D]")).astype("datetime64[ns]")
    stamp = pd.Timestamp(as_of)
    snapshot = pd.DatetimeIndex(np.full(n, stamp.tz_convert(None).as_unit("ns").asm8)).tz_localize("UTC")
    ids = np.empty(n, dtype=object)
    ids[:] = [f"CUST-{i:08d}" for i in range(first_id, first_id + n)]
    data: dict[str, Any] = {
        col.CUSTOMER_ID: ids,
        col.FULL_NAME: contacts.full_name,
        col.EMAIL: contacts.email,
        col.PHONE: contacts.phone,
        col.SNAPSHOT_AT: snapshot,
        col.SIGNUP_DATE: signup,
        col.LAST_ACTIVITY_DATE: last_activity,
        col.GENDER: _cat(pop.gender, col.GENDER_LEVELS),
        col.AGE: _int(pop.age),
        col.COUNTRY: _cat(_COUNTRY_RECODE[pop.country], COUNTRY_LEVELS),
        col.ACQUISITION_CHANNEL: _cat(pop.channel, col.CHANNEL_LEVELS),
        col.PLAN: _cat(pop.plan, col.PLAN_LEVELS),
        col.DEVICE_TYPE: _cat(pop.device, col.DEVICE_LEVELS),
        col.EMAIL_OPT_IN: _bool(pop.email_opt_in),
        col.TENURE_DAYS: _int(pop.signup_ago),
        col.SESSIONS_30D: _int(pop.sessions_30d),
        col.SESSIONS_90D: _int(pop.sessions_90d),
        col.ACTIVE_DAYS_30D: _int(pop.active_days_30d),
        col.AVG_SESSION_MINUTES: pop.avg_session_minutes,
        col.ORDERS_90D: _int(pop.orders_90d),
        col.SPEND_PRODUCTS_90D: pop.spend_products_90d,
        col.SPEND_SERVICES_90D: pop.spend_services_90d,
        col.TOTAL_SPEND_90D: pop.total_spend_90d,
        col.AVG_ORDER_VALUE: pop.avg_order_value,
        col.DISCOUNT_SHARE: pop.discount_share,
        col.SUPPORT_TICKETS_90D: _int(pop.support_tickets_90d),
        col.PLAN_UPGRADES_12M: _int(pop.plan_upgrades_12m),
        col.PLAN_DOWNGRADES_12M: _int(pop.plan_downgrades_12m),
        col.DAYS_SINCE_LAST_ACTIVITY: _int(pop.last_activity_ago),
        col.NPS_SCORE: _int(pop.nps_score, pop.nps_missing),
        col.ENGAGEMENT_SCORE: pop.engagement_score,
        col.CHURNED: _bool(pop.churned),
        col.LTV: pop.ltv,
    }
    return pd.DataFrame(data, columns=list(col.COLUMNS))
