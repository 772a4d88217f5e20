"""The rollout policy: how long a canary is watched, how often, and the thresholds it must stay within.

Every field has a default (docs/rollout.md says why each is what it is). A policy file is YAML: either a
``rollout:`` section or the fields at its top level. The promotion policy (policies/promotion_policy.yml)
is strict and has no such section, so the rollout policy is its own file.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from engage.errors import ConfigError

__all__ = ["RolloutPolicy", "load_rollout_policy", "parse_duration", "promql_duration"]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str, what: str = "duration") -> float:
    """``90s``, ``5m``, ``1h30m``, ``500ms`` (or a bare number of seconds) in seconds, > 0."""
    value = str(text).strip()
    try:
        seconds = float(value)
    except ValueError:
        parts = _DURATION.findall(value)
        if not parts or "".join(n + u for n, u in parts) != value:
            raise ConfigError(f"{what} {text!r}: give a duration such as 500ms, 30s, 5m or 1h30m") from None
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"{what} {text!r}: must be more than 0 seconds")
    return seconds


def promql_duration(seconds: float) -> str:
    """A PromQL range (``30s``, ``1500ms``): whole milliseconds."""
    ms = round(seconds * 1000)
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


class RolloutPolicy(BaseModel):
    """What a canary must hold to be promoted. Durations are seconds (a file may write ``30s``, ``5m``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: how long the canary is watched before it is promoted
    period_seconds: float = Field(600.0, gt=0)
    #: time between two evaluations
    interval_seconds: float = Field(30.0, gt=0)
    #: the range of every rate and histogram query: at least four scrape intervals
    window_seconds: float = Field(120.0, gt=0)
    #: prediction requests the canary must have answered in the window for any check to be judged
    min_requests: float = Field(50.0, ge=1)
    #: evaluations in a row that must fail before the watch stops early with a rollback
    fail_after: int = Field(2, ge=1)
    #: largest share of the canary's prediction requests answered 5xx
    max_error_rate: float = Field(0.01, ge=0, le=1)
    #: largest p95 latency of the canary's prediction requests (the 300 ms alert of the rules)
    max_p95_seconds: float = Field(0.3, gt=0)
    #: largest ratio of the canary's p95 latency to the stable revision's
    max_p95_ratio: float = Field(1.5, ge=1)
    #: the ratio is judged only when the canary's p95 is at least this (below it, bucket noise)
    p95_ratio_floor_seconds: float = Field(0.025, ge=0)
    #: largest population stability index of a head's predictions, canary against stable
    max_psi: float = Field(0.2, gt=0)
    #: largest difference of a head's mean prediction, canary minus stable, in stable standard deviations
    max_mean_shift_sd: float = Field(0.5, gt=0)
    #: largest KS statistic of the canary's prediction drift test (its drift detector), when exported
    max_drift_statistic: float = Field(0.3, gt=0, le=1)
    #: smallest live demographic parity ratio of a revision, per head and protected attribute: the lowest
    #: group's positive rate over the highest (the four-fifths rule of the offline gate)
    min_parity_ratio: float = Field(0.8, ge=0, le=1)
    #: largest fall of the canary's parity ratio below the stable revision's, per head and attribute
    max_parity_drop: float = Field(0.15, ge=0, le=1)
    #: predictions a group needs in the window to count in a parity ratio (the offline gate's
    #: min_group_size: with fewer, three groups of equal rates fall under 0.8 often by chance)
    min_group_predictions: float = Field(1000.0, ge=1)

    @field_validator(
        "period_seconds", "interval_seconds", "window_seconds", "p95_ratio_floor_seconds", mode="before"
    )
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return parse_duration(value)
        except ConfigError as e:
            raise ValueError(str(e)) from None


def load_rollout_policy(path: str | Path | None = None, **overrides: Any) -> RolloutPolicy:
    """The policy in ``path`` (its ``rollout:`` section, else the whole file), else the defaults; then
    ``overrides`` (``period_seconds=...``) that are not None. :class:`ConfigError` names the file."""
    import yaml

    data: dict[str, Any] = {}
    where = "the rollout policy"
    if path is not None:
        where = f"rollout policy {path}"
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except OSError as e:
            raise ConfigError(f"{where}: cannot be read: {e.strerror or e}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{where}: not valid YAML: {' '.join(str(e).split())}") from None
        if loaded is None:
            loaded = {}
        if isinstance(loaded, dict) and isinstance(loaded.get("rollout"), dict):
            loaded = loaded["rollout"]
        if not isinstance(loaded, dict):
            raise ConfigError(f"{where}: expected a mapping of settings (or a rollout: section)")
        data = dict(loaded)
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return RolloutPolicy.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(map(str, err['loc'])) or '(top)'}: {err['msg']}" for err in e.errors()
        )
        raise ConfigError(f"{where}: {problems}") from None
