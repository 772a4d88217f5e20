"""Personal columns: full name, e-mail address and E.164 phone number.

Names are drawn from the embedded lists (a gender-matched first-name list when gender is known, a
neutral one otherwise). The e-mail is ``first.last<n>@<domain>`` with a global webmail domain or
the country's local provider; the phone is ``+<calling code><mobile prefix><digits>``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from engage.synthetic._names import (
    COUNTRIES,
    FEMALE_FIRST,
    GLOBAL_DOMAIN_WEIGHTS,
    GLOBAL_DOMAINS,
    LAST_NAMES,
    MALE_FIRST,
    NEUTRAL_FIRST,
)

__all__ = ["Contacts", "make_contacts"]

Strings = NDArray[np.object_]


@dataclass(frozen=True)
class Contacts:
    """The personal columns of every customer, plus the parts the defect injector reuses."""

    first: Strings
    last: Strings
    email: Strings
    phone: Strings
    national: Strings  # national significant number, for local-format phone defects

    @property
    def full_name(self) -> Strings:
        """``First Last``."""
        return _join(self.first, " ", self.last)


def _join(left: Strings, sep: str, right: Strings) -> Strings:
    out = np.empty(left.shape[0], dtype=object)
    out[:] = [f"{a}{sep}{b}" for a, b in zip(left.tolist(), right.tolist(), strict=True)]
    return out


def _choose(rng: np.random.Generator, pool: tuple[str, ...], n: int) -> Strings:
    values = np.array(pool, dtype=object)
    picked: Strings = values[rng.integers(0, len(pool), n)]
    return picked


def make_contacts(rng: np.random.Generator, gender: NDArray[np.int8], country: NDArray[np.int8]) -> Contacts:
    """Draw names, e-mail addresses and phone numbers for customers of the given gender and country."""
    n = gender.shape[0]
    female = _choose(rng, FEMALE_FIRST, n)
    male = _choose(rng, MALE_FIRST, n)
    neutral = _choose(rng, NEUTRAL_FIRST, n)
    first = np.where(gender == 0, female, np.where(gender == 1, male, neutral))  # codes: female, male
    last = _choose(rng, LAST_NAMES, n)

    global_domains = np.array(GLOBAL_DOMAINS, dtype=object)
    cum = np.cumsum(GLOBAL_DOMAIN_WEIGHTS)
    domain_idx = np.searchsorted(cum / cum[-1], rng.random(n), side="right")
    local_domains = np.array([c.local_domain for c in COUNTRIES], dtype=object)
    domain = np.where(rng.random(n) < 0.15, local_domains[country], global_domains[domain_idx])
    number = rng.integers(1, 10_000, n)
    email = np.empty(n, dtype=object)
    email[:] = [
        f"{a.lower()}.{b.lower()}{k}@{d}"
        for a, b, k, d in zip(first.tolist(), last.tolist(), number.tolist(), domain.tolist(), strict=True)
    ]

    national = np.empty(n, dtype=object)
    phone = np.empty(n, dtype=object)
    u_prefix, u_digits = rng.random(n), rng.random(n)
    for code in np.unique(country).tolist():
        spec = COUNTRIES[code]
        rows = np.flatnonzero(country == code)
        prefixes = np.array(spec.mobile_prefixes, dtype=object)[
            np.minimum(
                (u_prefix[rows] * len(spec.mobile_prefixes)).astype(np.int64), len(spec.mobile_prefixes) - 1
            )
        ]
        width = spec.rest_digits
        digits = np.minimum((u_digits[rows] * 10**width).astype(np.int64), 10**width - 1)
        nsn = [f"{p}{d:0{width}d}" for p, d in zip(prefixes.tolist(), digits.tolist(), strict=True)]
        national[rows] = nsn
        phone[rows] = [f"+{spec.calling_code}{s}" for s in nsn]
    return Contacts(first=first, last=last, email=email, phone=phone, national=national)
