"""Simulation of a customer population and its aggregation to one row per customer.

The generator does not write the table's columns from a formula. It simulates customers and
then measures them the way a data warehouse would:

1. **Acquisition.** Signup days are drawn over the three years before the snapshot with growing
   acquisition (about +60 % a year) and a winter peak. Customers are numbered in signup order.
2. **Latent traits.** Each customer belongs to a segment (power, regular, casual, bargain hunter,
   dormant) whose mix depends on the cohort, and gets individual latent traits around the segment's
   values: activity level and trend, conversion per session, basket value, price sensitivity,
   support propensity, satisfaction and session depth. Country, acquisition channel, device and the
   initial plan are drawn from mixes that depend on segment, cohort, country and age.
3. **History.** Twelve 30-day periods before the snapshot are simulated one at a time with 1-D
   running aggregates (memory stays flat): the activity state moves as a mean-reverting random walk
   with a per-customer drift and an onboarding boost; active days are binomial, sessions add a
   Poisson number of repeat visits, orders convert from sessions, basket values are Gamma, discount
   use depends on price sensitivity, subscription fees follow the plan, which moves as a Markov chain
   (upgrades and downgrades), and support contacts are Poisson. The 30/90-day aggregates, recency,
   tenure, the NPS answer of surveyed customers and the e-mail opt-in are read off the simulation.
4. **Label window.** The same process runs twelve periods past the snapshot with a monthly
   cancellation hazard. ``churned`` is a cancellation or no activity in the 90-day label window,
   ``engagement_score`` summarises activity, purchases and depth in that window with noise, and
   ``ltv`` is the revenue of the next twelve periods (fees, products and services while subscribed).

Two knobs change the population on purpose. ``bias`` (protected group ``female``) lowers activity,
raises support contacts, raises the cancellation hazard beyond what the behaviour explains (label
bias) and makes the engagement score noisier for the group; at 0 gender is never read. ``drift``
shifts the latest quarter of signups (device, channel and country mixes, activity and basket
size); at 0 nothing changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from engage.synthetic._names import COUNTRIES

__all__ = ["Population", "make_streams", "simulate_population"]

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
I8 = NDArray[np.int8]
Bool = NDArray[np.bool_]

# Timeline: twelve 30-day periods of history, a 90-day label window, twelve periods for LTV.
PERIOD_DAYS = 30
HISTORY_PERIODS = 12
LABEL_PERIODS = 3
FORWARD_PERIODS = 12
SIGNUP_WINDOW_DAYS = 3 * 365
LATE_COHORT_SHARE = 0.25
_ACQUISITION_GROWTH = 1.6  # new signups per day grow by 60 % a year
_SEASON_AMPLITUDE = 0.3  # signups peak around 10 January

# Random streams, each spawned from the seed at a fixed position so that they never depend on order.
_STREAMS = (
    "signup", "latent", "gender", "age", "mix", "history", "forward", "survey", "pii", "noise", "defects"
)  # fmt: skip

# Category codes (orders as in the contract).
_FEMALE, _MALE, _NON_BINARY = 0, 1, 2
_GENDER_SHARE = np.array([0.49, 0.47, 0.015, 0.025])  # female, male, non_binary, unanswered
_IOS, _ANDROID, _WEB = 0, 1, 2
_PAID_SOCIAL, _PARTNER = 2, 4
_FREE, _BASIC, _PREMIUM = 0, 1, 2
_PLAN_FEE = np.array([0.0, 9.99, 24.99])  # per 30-day period

# Segment parameters, in the order power, regular, casual, bargain hunter, dormant.
_POWER, _DORMANT = 0, 4
_SEG_SHARE_OLD = np.array([0.09, 0.30, 0.27, 0.16, 0.18])  # mix of the oldest cohort
_SEG_SHARE_NEW = np.array([0.11, 0.31, 0.34, 0.18, 0.06])  # mix of the newest cohort
_SEG_ACTIVITY = np.array([0.1, -1.2, -2.1, -1.6, -3.4])  # logit of the daily activity probability
_SEG_TREND = np.array([0.00, -0.01, -0.03, -0.02, -0.05])  # drift of the activity walk per period
_SEG_REPEAT = np.array([0.9, 0.5, 0.3, 0.4, 0.2])  # extra sessions per active day
_SEG_CONVERSION = np.array([0.10, 0.07, 0.05, 0.09, 0.04])  # orders per session
_SEG_BASKET = np.array([55.0, 45.0, 35.0, 24.0, 30.0])  # mean order value
_SEG_PRICE_SENSITIVITY = np.array([-0.6, -0.1, 0.1, 1.2, 0.2])
_SEG_SATISFACTION = np.array([0.6, 0.2, -0.1, 0.0, -0.5])
_SEG_MINUTES = np.array([14.0, 10.0, 7.0, 8.0, 5.0])  # median session length
_SEG_OPT_IN = np.array([0.8, 0.4, 0.0, 0.6, -0.4])  # logit of the e-mail opt-in
_SEG_PLAN = np.array(
    [[0.25, 0.40, 0.35], [0.45, 0.40, 0.15], [0.70, 0.25, 0.05], [0.70, 0.27, 0.03], [0.65, 0.28, 0.07]]
)
_SEG_CHANNEL = np.array(
    [
        [0.35, 0.15, 0.10, 0.30, 0.10],
        [0.35, 0.22, 0.18, 0.15, 0.10],
        [0.25, 0.25, 0.30, 0.08, 0.12],
        [0.20, 0.30, 0.30, 0.08, 0.12],
        [0.25, 0.25, 0.30, 0.08, 0.12],
    ]
)
_COHORT_CHANNEL_TILT = np.array([-0.04, 0.0, 0.10, -0.03, -0.03])  # paid social grows over time
_PARTNER_PLAN_TILT = np.array([0.6, 1.8, 1.0])  # partner deals bundle the basic plan
# Channel effects (organic, paid_search, paid_social, referral, partner) on satisfaction and activity.
_CHANNEL_SATISFACTION = np.array([0.1, 0.0, -0.15, 0.25, 0.0])
_CHANNEL_ACTIVITY = np.array([0.1, 0.0, -0.2, 0.15, -0.1])
_ACTIVITY_SD = 0.75  # spread of the individual activity level around the segment's

# Activity dynamics: mean-reverting random walk with a per-customer drift and an onboarding boost.
_REVERSION = 0.25
_WALK_SD = 0.2
_ONBOARDING = 0.9  # extra activity logit right after signup, fading over about 1.5 periods

# Support contacts, survey answers and opt-in all reveal the latent satisfaction in part.
_TICKET_SATISFACTION = 0.8
_OPT_IN_SATISFACTION = 0.7

# Monthly cancellation hazard (logit) after the snapshot.
_HAZARD_BASE = -4.6
_HAZARD_ACTIVITY = 0.55
_HAZARD_SATISFACTION = 1.8
_HAZARD_PRICE = 1.3  # price-sensitive customers on a paid plan
_HAZARD_NEW = 2.0  # customers in their first months
_HAZARD_TICKETS = 1.3  # per log(1 + support contacts in the last 90 days)
_HAZARD_DOWNGRADE = 2.5  # a downgrade in the last 90 days

# Engagement score: activity, purchases, session depth and paid tier in the label window.
_ENGAGEMENT_WEIGHTS = (0.3, 0.1, 0.35, 0.25)
_ENGAGEMENT_NOISE = 0.03

# Bias against the protected group at bias=1 (all scaled by the knob).
_BIAS_ACTIVITY = -0.45  # activity logit
_BIAS_SUPPORT = 0.55  # log support propensity
_BIAS_HAZARD = 0.8  # cancellation logit beyond what behaviour explains (label bias)
_BIAS_NOISE = 1.5  # extra relative noise of the engagement score

# Drift of the late cohort at drift=1: device (ios, android, web), channel and country mixes, levels.
_DRIFT_DEVICE = np.array([0.30, 0.62, 0.08])
_DRIFT_CHANNEL = np.array([0.10, 0.15, 0.55, 0.05, 0.15])
_DRIFT_COUNTRY_BOOST = {"IN": 4.0, "BR": 3.0, "MX": 3.0, "ES": 1.5}
_DRIFT_ACTIVITY = 0.5
_DRIFT_BASKET = -0.35


@dataclass(frozen=True)
class Population:
    """One entry per customer, in signup order (the customer number order)."""

    signup_ago: I64
    last_activity_ago: I64
    gender: I8
    age: I64
    country: I8
    channel: I8
    plan: I8
    device: I8
    email_opt_in: Bool
    sessions_30d: I64
    sessions_90d: I64
    active_days_30d: I64
    avg_session_minutes: F64
    orders_90d: I64
    spend_products_90d: F64
    spend_services_90d: F64
    total_spend_90d: F64
    avg_order_value: F64
    discount_share: F64
    support_tickets_90d: I64
    plan_upgrades_12m: I64
    plan_downgrades_12m: I64
    nps_score: I64
    nps_missing: Bool
    engagement_score: F64
    churned: Bool
    ltv: F64


def make_streams(seed: int, extract: int = 0) -> dict[str, np.random.Generator]:
    """Independent random generators, one per purpose, all derived from ``seed`` (and ``extract`` > 0:
    the how-many-th earlier extract of a multi-snapshot table)."""
    children = np.random.SeedSequence(seed if extract == 0 else [seed, extract]).spawn(len(_STREAMS))
    return {name: np.random.default_rng(child) for name, child in zip(_STREAMS, children, strict=True)}


def _sigmoid(x: F64) -> F64:
    out: F64 = 1.0 / (1.0 + np.exp(-x))
    return out


def _pick(u: F64, probs: F64) -> I8:
    """Inverse-CDF draw of a category per row from ``probs`` (shape (k,) or (n, k)) and uniforms ``u``."""
    cum = np.cumsum(probs, axis=-1)
    cum = cum / cum[..., -1:]
    if cum.ndim == 1:
        flat: I8 = np.searchsorted(cum[:-1], u, side="right").astype(np.int8)
        return flat
    rows: I8 = (u[:, None] >= cum[:, :-1]).sum(axis=1).astype(np.int8)
    return rows


def _signup_ago(rng: np.random.Generator, n: int, snapshot: np.datetime64) -> I64:
    """Days between signup and snapshot, oldest first: growing acquisition with a winter peak."""
    ago = np.arange(SIGNUP_WINDOW_DAYS + 1)
    dates = snapshot - ago.astype("timedelta64[D]")
    day_of_year = (dates - dates.astype("datetime64[Y]")).astype(np.int64)
    season = 1.0 + _SEASON_AMPLITUDE * np.cos(2.0 * np.pi * (day_of_year - 10) / 365.25)
    growth = np.exp(-np.log(_ACQUISITION_GROWTH) * ago / 365.0)
    weights = season * growth
    cum = np.cumsum(weights)
    cum /= cum[-1]
    drawn = np.searchsorted(cum, rng.random(n), side="right").astype(np.int64)
    return np.sort(np.minimum(drawn, SIGNUP_WINDOW_DAYS))[::-1].copy()


def _gamma_total(rng: np.random.Generator, count: I64, mean: F64, shape: float) -> F64:
    """Sum of ``count`` Gamma(shape, mean/shape) amounts per row (0 when count is 0)."""
    total: F64 = rng.gamma(count * shape, 1.0) * (mean / shape)
    return total


@dataclass
class _Latent:
    """Per-customer latent traits."""

    activity: F64
    trend: F64
    repeat: F64
    conversion: F64
    basket: F64
    price_sensitivity: F64
    support: F64
    satisfaction: F64
    minutes: F64
    discount_p: F64


@dataclass
class _Profile:
    """Observed and latent attributes drawn once per customer at signup."""

    segment: I8
    country: I8
    channel: I8
    device: I8
    plan: I8


def simulate_population(
    rng: dict[str, np.random.Generator], n: int, snapshot: np.datetime64, bias: float, drift: float
) -> Population:
    """Simulate ``n`` customers observed on the ``snapshot`` day (``numpy.datetime64`` in days).

    ``rng`` holds the generators of :func:`make_streams`.
    """
    signup_ago = _signup_ago(rng["signup"], n, snapshot)
    cohort = 1.0 - signup_ago / SIGNUP_WINDOW_DAYS  # 0 oldest, 1 newest
    late = np.zeros(n, dtype=np.bool_)
    late[n - int(np.ceil(LATE_COHORT_SHARE * n)) :] = True
    shift = drift * late  # 0 outside the late cohort, and everywhere when drift is 0

    gender = _pick(rng["gender"].random(n), _GENDER_SHARE)
    gender = np.where(gender == len(_GENDER_SHARE) - 1, -1, gender).astype(np.int8)
    biased = bias * (gender == _FEMALE)  # strength of the bias per customer; all 0 when bias is 0

    age = np.minimum(18 + np.floor(rng["age"].gamma(2.3, 9.0, n)), 90).astype(np.int64)
    age_c = (age - 40.0) / 15.0

    profile = _draw_profile(rng["mix"], cohort, age_c, shift)
    value = np.array([c.value_factor for c in COUNTRIES])[profile.country]
    latent = _draw_latent(rng["latent"], profile, value, age_c, shift, biased)
    hist = _simulate_history(rng["history"], latent, signup_ago, profile.plan)
    fwd = _simulate_forward(rng["forward"], latent, signup_ago, hist, biased)

    survey = rng["survey"]
    surveyed = survey.random(n) < _sigmoid(-1.0 + 0.5 * (hist.sessions_90d > 0) + 0.1 * age_c)
    nps = np.clip(
        np.rint(7.0 + 1.7 * latent.satisfaction + 0.15 * age_c + survey.normal(0.0, 1.2, n)), 0, 10
    ).astype(np.int64)
    opt_in = survey.random(n) < _sigmoid(
        _SEG_OPT_IN[profile.segment]
        + _OPT_IN_SATISFACTION * latent.satisfaction
        + 0.15 * age_c
        - 0.3 * (profile.channel == _PAID_SOCIAL)
    )
    engagement = _engagement_score(rng["noise"], latent, fwd, biased)

    return Population(
        signup_ago=signup_ago,
        last_activity_ago=hist.last_activity_ago,
        gender=gender,
        age=age,
        country=profile.country,
        channel=profile.channel,
        plan=hist.plan,
        device=profile.device,
        email_opt_in=opt_in,
        sessions_30d=hist.sessions_30d,
        sessions_90d=hist.sessions_90d,
        active_days_30d=hist.active_days_30d,
        avg_session_minutes=hist.avg_session_minutes,
        orders_90d=hist.orders_90d,
        spend_products_90d=hist.spend_products_90d,
        spend_services_90d=hist.spend_services_90d,
        total_spend_90d=np.round(hist.spend_products_90d + hist.spend_services_90d, 2),
        avg_order_value=hist.avg_order_value,
        discount_share=hist.discount_share,
        support_tickets_90d=hist.support_tickets_90d,
        plan_upgrades_12m=hist.upgrades,
        plan_downgrades_12m=hist.downgrades,
        nps_score=nps,
        nps_missing=~surveyed,
        engagement_score=np.round(engagement, 4),
        churned=fwd.churned,
        ltv=np.round(fwd.revenue, 2),
    )


def _draw_profile(rng: np.random.Generator, cohort: F64, age_c: F64, shift: F64) -> _Profile:
    """Segment, country, channel, device and first plan; the late cohort's mixes drift by ``shift``."""
    n = cohort.shape[0]
    u_seg, u_country, u_channel, u_device, u_plan = (rng.random(n) for _ in range(5))
    segment = _pick(u_seg, (1.0 - cohort)[:, None] * _SEG_SHARE_OLD + cohort[:, None] * _SEG_SHARE_NEW)

    base_country = np.array([c.weight for c in COUNTRIES])
    drift_country = base_country * np.array([_DRIFT_COUNTRY_BOOST.get(c.code, 1.0) for c in COUNTRIES])
    drift_country /= drift_country.sum()
    international = np.array([0.0 if c.code == "US" else 1.0 for c in COUNTRIES])
    country_probs = base_country * (1.0 + 0.25 * cohort[:, None] * international)
    country_probs /= country_probs.sum(axis=1, keepdims=True)
    country = _pick(u_country, _blend(country_probs, drift_country, shift))

    channel_probs: F64 = np.maximum(_SEG_CHANNEL[segment] + np.outer(cohort, _COHORT_CHANNEL_TILT), 0.01)
    channel_probs = channel_probs / channel_probs.sum(axis=1, keepdims=True)
    channel = _pick(u_channel, _blend(channel_probs, _DRIFT_CHANNEL, shift))

    android = np.array([c.android_share for c in COUNTRIES])[country]
    web = _sigmoid(
        -1.0 + 0.45 * age_c - 0.5 * (segment == _POWER) + 0.2 * (segment == _DORMANT) - 0.5 * cohort
    )
    device_probs = np.stack([(1.0 - web) * (1.0 - android), (1.0 - web) * android, web], axis=1)
    device = _pick(u_device, _blend(device_probs, _DRIFT_DEVICE, shift))

    partner = np.where((channel == _PARTNER)[:, None], _PARTNER_PLAN_TILT, 1.0)
    plan = _pick(u_plan, _SEG_PLAN[segment] * partner)
    return _Profile(segment=segment, country=country, channel=channel, device=device, plan=plan)


def _blend(probs: F64, target: F64, shift: F64) -> F64:
    """Row-wise mix ``(1 - shift) * probs + shift * target`` (exactly ``probs`` where shift is 0)."""
    mixed: F64 = (1.0 - shift)[:, None] * probs + shift[:, None] * target
    return mixed


def _engagement_score(rng: np.random.Generator, latent: _Latent, fwd: _Forward, biased: F64) -> F64:
    """Engagement in the label window: activity, purchases, session depth and paid tier, plus noise."""
    n = biased.shape[0]
    act = 1.0 - np.exp(-fwd.active_days / 18.0)
    buy = 1.0 - np.exp(-fwd.orders / 2.5)
    depth = _sigmoid((np.log(latent.minutes) - np.log(8.0)) / 0.5) * (fwd.active_days > 0)
    w_act, w_buy, w_depth, w_tier = _ENGAGEMENT_WEIGHTS
    raw = w_act * act + w_buy * buy + w_depth * depth + w_tier * fwd.tier
    noise_sd = _ENGAGEMENT_NOISE * (1.0 + _BIAS_NOISE * biased)
    score: F64 = np.clip(raw + rng.normal(0.0, 1.0, n) * noise_sd, 0.0, 1.0)
    return score


def _draw_latent(
    rng: np.random.Generator, profile: _Profile, value: F64, age_c: F64, shift: F64, biased: F64
) -> _Latent:
    """Individual latent traits around the segment's values."""
    segment, channel, device = profile.segment, profile.channel, profile.device
    n = segment.shape[0]
    z = rng.standard_normal((9, n))
    satisfaction = _SEG_SATISFACTION[segment] + _CHANNEL_SATISFACTION[channel] + 0.9 * z[0]
    activity = (
        _SEG_ACTIVITY[segment]
        + _CHANNEL_ACTIVITY[channel]
        + 0.25 * satisfaction
        + _ACTIVITY_SD * z[1]
        + _DRIFT_ACTIVITY * shift
        + _BIAS_ACTIVITY * biased
    )
    trend = _SEG_TREND[segment] + 0.05 * z[2]
    repeat = _SEG_REPEAT[segment] * np.exp(0.4 * z[3])
    conversion = np.minimum(_SEG_CONVERSION[segment] * np.exp(0.45 * z[4]), 0.5)
    price_sensitivity = _SEG_PRICE_SENSITIVITY[segment] + 0.7 * z[5]
    basket = (
        _SEG_BASKET[segment]
        * value
        * np.exp(0.45 * z[6] - 0.12 * price_sensitivity + 0.1 * (device == _IOS) + _DRIFT_BASKET * shift)
    )
    support = -0.6 + 0.6 * z[7] + _BIAS_SUPPORT * biased
    minutes = _SEG_MINUTES[segment] * np.exp(0.45 * z[8] + 0.25 * (device == _WEB) + 0.06 * age_c)
    discount_p = _sigmoid(-1.4 + 1.1 * price_sensitivity)
    return _Latent(
        activity=activity,
        trend=trend,
        repeat=repeat,
        conversion=conversion,
        basket=basket,
        price_sensitivity=price_sensitivity,
        support=support,
        satisfaction=satisfaction,
        minutes=minutes,
        discount_p=discount_p,
    )


def _step_activity(rng: np.random.Generator, state: F64, latent: _Latent) -> F64:
    """One period of the activity walk: reversion to the customer's level, drift and a shock."""
    n = state.shape[0]
    out: F64 = (
        state + _REVERSION * (latent.activity - state) + latent.trend + _WALK_SD * rng.standard_normal(n)
    )
    return out


def _plan_step(rng: np.random.Generator, plan: I8, level: F64, latent: _Latent) -> tuple[I8, Bool, Bool]:
    """One Markov step of the plan; returns the new plan and the upgrade/downgrade flags."""
    n = plan.shape[0]
    u = rng.random(n)
    rel = level - latent.activity
    up_p = _sigmoid(-3.9 + 0.5 * (level + 1.5) + 0.8 * rel - 0.6 * latent.price_sensitivity)
    down_p = _sigmoid(-4.3 - 0.9 * rel + 0.6 * latent.price_sensitivity - 0.4 * latent.satisfaction)
    up = (u < up_p) & (plan < _PREMIUM)
    down = (u > 1.0 - down_p) & (plan > _FREE) & ~up
    new = plan + up.astype(np.int8) - down.astype(np.int8)
    jump = up & (plan == _FREE) & (rng.random(n) < 0.15)  # some free customers go straight to premium
    new = np.where(jump, _PREMIUM, new).astype(np.int8)
    return new, up, down


@dataclass
class _History:
    """What the warehouse sees at the snapshot, plus the state the forward simulation starts from."""

    last_activity_ago: I64
    plan: I8
    sessions_30d: I64
    sessions_90d: I64
    active_days_30d: I64
    avg_session_minutes: F64
    orders_90d: I64
    spend_products_90d: F64
    spend_services_90d: F64
    avg_order_value: F64
    discount_share: F64
    support_tickets_90d: I64
    upgrades: I64
    downgrades: I64
    state: F64
    downgraded_recent: Bool


def _purchases(rng: np.random.Generator, sessions: I64, latent: _Latent) -> tuple[I64, I64, F64, F64]:
    """Orders, discounted orders, product spend and service add-on spend for one period."""
    orders = rng.poisson(sessions * latent.conversion).astype(np.int64)
    discounted = rng.binomial(orders, latent.discount_p).astype(np.int64)
    full = orders - discounted
    products = _gamma_total(rng, full, latent.basket, 2.0) + _gamma_total(
        rng, discounted, 0.8 * latent.basket, 2.0
    )
    addons = rng.binomial(orders, 0.2).astype(np.int64)
    services = _gamma_total(rng, addons, np.full(orders.shape[0], 7.5), 3.0)
    return orders, discounted, products, services


def _simulate_history(rng: np.random.Generator, latent: _Latent, signup_ago: I64, plan0: I8) -> _History:
    """Twelve periods before the snapshot; returns the 30/90-day aggregates and the final state."""
    n = signup_ago.shape[0]
    state = latent.activity + 0.35 * rng.standard_normal(n)
    plan = plan0.copy()
    sessions_30 = np.zeros(n, dtype=np.int64)
    sessions_90 = np.zeros(n, dtype=np.int64)
    active_30 = np.zeros(n, dtype=np.int64)
    orders_90 = np.zeros(n, dtype=np.int64)
    discounted_90 = np.zeros(n, dtype=np.int64)
    products_90 = np.zeros(n)
    services_90 = np.zeros(n)
    tickets_90 = np.zeros(n, dtype=np.int64)
    upgrades = np.zeros(n, dtype=np.int64)
    downgrades = np.zeros(n, dtype=np.int64)
    downgraded_recent = np.zeros(n, dtype=np.bool_)
    last_end = np.full(n, -1, dtype=np.int64)  # days-ago of the end of the last active period
    last_active = np.zeros(n, dtype=np.int64)  # active days in that period
    last_exposure = np.zeros(n, dtype=np.int64)
    for t in range(HISTORY_PERIODS):
        end_ago = PERIOD_DAYS * (HISTORY_PERIODS - 1 - t)
        start_ago = end_ago + PERIOD_DAYS - 1
        exposure = np.clip(signup_ago - end_ago + 1, 0, PERIOD_DAYS)
        signup_period = (signup_ago >= end_ago) & (signup_ago <= start_ago)
        months = (signup_ago - end_ago) / PERIOD_DAYS
        level = state + _ONBOARDING * np.exp(-np.maximum(months, 0.0) / 1.5)
        p_day = _sigmoid(level)
        active = rng.binomial(exposure, p_day).astype(np.int64)
        active = np.where(signup_period, np.maximum(active, 1), active)
        seen = active > 0
        last_end = np.where(seen, end_ago, last_end)
        last_active = np.where(seen, active, last_active)
        last_exposure = np.where(seen, exposure, last_exposure)
        recent = t >= HISTORY_PERIODS - 3
        if recent:
            sessions = active + rng.poisson(active * latent.repeat).astype(np.int64)
            orders, discounted, products, addons = _purchases(rng, sessions, latent)
            fee = _PLAN_FEE[plan] * exposure / PERIOD_DAYS
            lam = (
                np.exp(latent.support - _TICKET_SATISFACTION * latent.satisfaction)
                * (0.08 + 0.05 * np.sqrt(sessions))
                * exposure
                / PERIOD_DAYS
            )
            tickets_90 += rng.poisson(lam).astype(np.int64)
            sessions_90 += sessions
            orders_90 += orders
            discounted_90 += discounted
            products_90 += products
            services_90 += addons + fee
            if t == HISTORY_PERIODS - 1:
                sessions_30 = sessions
                active_30 = active
        new_plan, up, down = _plan_step(rng, plan, level, latent)
        open_ = exposure > 0
        up &= open_
        down &= open_
        plan = np.where(open_, new_plan, plan).astype(np.int8)
        upgrades += up
        downgrades += down
        if recent:
            downgraded_recent |= down
        state = np.where(open_, _step_activity(rng, state, latent), state)

    # Recency: the latest active day within the last active period (max of its active days).
    u = rng.random(n)
    offset = np.floor(last_exposure * (1.0 - u ** (1.0 / np.maximum(last_active, 1)))).astype(np.int64)
    offset = np.minimum(offset, np.maximum(last_exposure - 1, 0))
    never = last_end < 0  # no activity in the simulated year: signed up earlier, lapsed before it
    window_start = PERIOD_DAYS * HISTORY_PERIODS
    lapsed = np.minimum(window_start + np.floor(rng.exponential(120.0, n)).astype(np.int64), signup_ago)
    last_activity_ago = np.where(never, lapsed, last_end + offset)

    with np.errstate(invalid="ignore", divide="ignore"):
        minutes_noise = rng.gamma(np.maximum(sessions_90, 1) * 2.0, 1.0) / (np.maximum(sessions_90, 1) * 2.0)
        avg_minutes = np.where(sessions_90 > 0, np.round(latent.minutes * minutes_noise, 2), np.nan)
        products_90 = np.round(products_90, 2)
        services_90 = np.round(services_90, 2)
        aov = np.where(orders_90 > 0, np.round(products_90 / orders_90, 2), np.nan)
        disc_share = np.where(orders_90 > 0, np.round(discounted_90 / orders_90, 4), np.nan)
    return _History(
        last_activity_ago=last_activity_ago,
        plan=plan,
        sessions_30d=sessions_30,
        sessions_90d=sessions_90,
        active_days_30d=active_30,
        avg_session_minutes=avg_minutes,
        orders_90d=orders_90,
        spend_products_90d=products_90,
        spend_services_90d=services_90,
        avg_order_value=aov,
        discount_share=disc_share,
        support_tickets_90d=tickets_90,
        upgrades=upgrades,
        downgrades=downgrades,
        state=state,
        downgraded_recent=downgraded_recent,
    )


@dataclass
class _Forward:
    """Label-window outcomes (active days, orders, paid tier share, churn) and 12-period revenue."""

    active_days: I64
    orders: I64
    tier: F64
    churned: Bool
    revenue: F64


def _simulate_forward(
    rng: np.random.Generator, latent: _Latent, signup_ago: I64, hist: _History, biased: F64
) -> _Forward:
    """Twelve periods after the snapshot with a monthly cancellation hazard.

    Churn is a cancellation in the label window or no active day in it; revenue counts fees while
    subscribed and the products and services bought before cancelling.
    """
    n = signup_ago.shape[0]
    state = hist.state.copy()
    plan = hist.plan.copy()
    alive = np.ones(n, dtype=np.bool_)
    cancelled = np.zeros(n, dtype=np.bool_)
    active_days = np.zeros(n, dtype=np.int64)
    orders_label = np.zeros(n, dtype=np.int64)
    tier = np.zeros(n)
    revenue = np.zeros(n)
    for t in range(FORWARD_PERIODS):
        months = (signup_ago + PERIOD_DAYS * t) / PERIOD_DAYS
        level = state + _ONBOARDING * np.exp(-months / 1.5)
        hazard = _sigmoid(
            _HAZARD_BASE
            - _HAZARD_ACTIVITY * (level + 1.5)
            - _HAZARD_SATISFACTION * latent.satisfaction
            + _HAZARD_PRICE * latent.price_sensitivity * (plan > _FREE)
            + _HAZARD_NEW * np.exp(-months / 3.0)
            + _HAZARD_TICKETS * np.log1p(hist.support_tickets_90d)
            + _HAZARD_DOWNGRADE * hist.downgraded_recent
            + _BIAS_HAZARD * biased
        )
        u = rng.random(n)
        cancel = alive & (u < hazard)
        # A cancelling customer stays for a uniform share of the period before leaving.
        exposure = np.where(cancel, np.floor(PERIOD_DAYS * u / np.maximum(hazard, 1e-12)), PERIOD_DAYS)
        exposure = (exposure * alive).astype(np.int64)
        paying = alive & ~cancel
        alive &= ~cancel
        if t < LABEL_PERIODS:
            cancelled |= cancel
        active = rng.binomial(exposure, _sigmoid(level)).astype(np.int64)
        sessions = active + rng.poisson(active * latent.repeat).astype(np.int64)
        orders, _, products, addons = _purchases(rng, sessions, latent)
        revenue += products + addons + _PLAN_FEE[plan] * paying
        if t < LABEL_PERIODS:
            active_days += active
            orders_label += orders
            tier += plan * exposure / (2.0 * PERIOD_DAYS * LABEL_PERIODS)
        new_plan, _, _ = _plan_step(rng, plan, level, latent)
        plan = np.where(alive, new_plan, plan).astype(np.int8)
        state = _step_activity(rng, state, latent)
    churned = cancelled | (active_days == 0)
    return _Forward(active_days=active_days, orders=orders_label, tier=tier, churned=churned, revenue=revenue)
