"""The customer table's columns, in the contract's order, with the pandas dtype of each.

This package is the only place in Engage that names the columns of
``contracts/customers_contract.yml``; every other component reads them from the contract.
"""

from __future__ import annotations

from typing import Final, Literal

__all__ = [
    "CATEGORY_LEVELS",
    "COLUMNS",
    "COLUMN_KINDS",
    "MISSING_VALUE_COLUMNS",
    "ColumnKind",
]

ColumnKind = Literal["string", "datetime", "date", "category", "integer", "float", "boolean"]

CUSTOMER_ID: Final = "customer_id"
FULL_NAME: Final = "full_name"
EMAIL: Final = "email"
PHONE: Final = "phone"
SNAPSHOT_AT: Final = "snapshot_at"
SIGNUP_DATE: Final = "signup_date"
LAST_ACTIVITY_DATE: Final = "last_activity_date"
GENDER: Final = "gender"
AGE: Final = "age"
COUNTRY: Final = "country"
ACQUISITION_CHANNEL: Final = "acquisition_channel"
PLAN: Final = "plan"
DEVICE_TYPE: Final = "device_type"
EMAIL_OPT_IN: Final = "email_opt_in"
TENURE_DAYS: Final = "tenure_days"
SESSIONS_30D: Final = "sessions_30d"
SESSIONS_90D: Final = "sessions_90d"
ACTIVE_DAYS_30D: Final = "active_days_30d"
AVG_SESSION_MINUTES: Final = "avg_session_minutes"
ORDERS_90D: Final = "orders_90d"
SPEND_PRODUCTS_90D: Final = "spend_products_90d"
SPEND_SERVICES_90D: Final = "spend_services_90d"
TOTAL_SPEND_90D: Final = "total_spend_90d"
AVG_ORDER_VALUE: Final = "avg_order_value"
DISCOUNT_SHARE: Final = "discount_share"
SUPPORT_TICKETS_90D: Final = "support_tickets_90d"
PLAN_UPGRADES_12M: Final = "plan_upgrades_12m"
PLAN_DOWNGRADES_12M: Final = "plan_downgrades_12m"
DAYS_SINCE_LAST_ACTIVITY: Final = "days_since_last_activity"
NPS_SCORE: Final = "nps_score"
ENGAGEMENT_SCORE: Final = "engagement_score"
CHURNED: Final = "churned"
LTV: Final = "ltv"

COLUMN_KINDS: Final[dict[str, ColumnKind]] = {
    CUSTOMER_ID: "string",
    FULL_NAME: "string",
    EMAIL: "string",
    PHONE: "string",
    SNAPSHOT_AT: "datetime",
    SIGNUP_DATE: "date",
    LAST_ACTIVITY_DATE: "date",
    GENDER: "category",
    AGE: "integer",
    COUNTRY: "category",
    ACQUISITION_CHANNEL: "category",
    PLAN: "category",
    DEVICE_TYPE: "category",
    EMAIL_OPT_IN: "boolean",
    TENURE_DAYS: "integer",
    SESSIONS_30D: "integer",
    SESSIONS_90D: "integer",
    ACTIVE_DAYS_30D: "integer",
    AVG_SESSION_MINUTES: "float",
    ORDERS_90D: "integer",
    SPEND_PRODUCTS_90D: "float",
    SPEND_SERVICES_90D: "float",
    TOTAL_SPEND_90D: "float",
    AVG_ORDER_VALUE: "float",
    DISCOUNT_SHARE: "float",
    SUPPORT_TICKETS_90D: "integer",
    PLAN_UPGRADES_12M: "integer",
    PLAN_DOWNGRADES_12M: "integer",
    DAYS_SINCE_LAST_ACTIVITY: "integer",
    NPS_SCORE: "integer",
    ENGAGEMENT_SCORE: "float",
    CHURNED: "boolean",
    LTV: "float",
}
"""Every column of the contract, in its order, with its type."""

COLUMNS: Final[tuple[str, ...]] = tuple(COLUMN_KINDS)

GENDER_LEVELS: Final = ("female", "male", "non_binary")
CHANNEL_LEVELS: Final = ("organic", "paid_search", "paid_social", "referral", "partner")
PLAN_LEVELS: Final = ("free", "basic", "premium")
DEVICE_LEVELS: Final = ("ios", "android", "web")

CATEGORY_LEVELS: Final[dict[str, tuple[str, ...]]] = {
    GENDER: GENDER_LEVELS,
    ACQUISITION_CHANNEL: CHANNEL_LEVELS,
    PLAN: PLAN_LEVELS,
    DEVICE_TYPE: DEVICE_LEVELS,
}
"""Levels of the category columns the contract enumerates (country levels come from the country list)."""

MISSING_VALUE_COLUMNS: Final[tuple[str, ...]] = (
    TENURE_DAYS,
    ORDERS_90D,
    DAYS_SINCE_LAST_ACTIVITY,
    PLAN,
    SESSIONS_30D,
    TOTAL_SPEND_90D,
    SESSIONS_90D,
    COUNTRY,
)
"""Critical, non-nullable features a ``missing_value`` defect empties, the ones no other rule reads first."""
