"""Contract rules on feature names: which features are named after a prohibited attribute."""

from __future__ import annotations

import re

__all__ = ["prohibited_matches"]

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def _tokens(name: str) -> list[str]:
    return [t for t in re.split(r"[^a-z0-9]+", _CAMEL.sub("_", name).lower()) if t]


def prohibited_matches(features: list[str], prohibited: list[str]) -> dict[str, str]:
    """Features named after a prohibited attribute: ``{feature: attribute}`` (token match, any case)."""
    found: dict[str, str] = {}
    for feature in features:
        ftoks = _tokens(feature)
        for attr in prohibited:
            atoks = _tokens(attr)
            n = len(atoks)
            if n and any(ftoks[i : i + n] == atoks for i in range(len(ftoks) - n + 1)):
                found[feature] = attr
                break
    return found
