"""Instants given as text (command-line options, pipeline parameters), with errors that name the input."""

from __future__ import annotations

from datetime import UTC, datetime

from engage.errors import ConfigError

__all__ = ["parse_instant"]


def parse_instant(value: str | None, name: str) -> datetime | None:
    """An ISO 8601 date or date-time as an aware UTC datetime (naive values are taken as UTC); None or
    empty (a pipeline parameter left at its default): None. :class:`ConfigError` naming ``name``."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(
            f"{name}: expected an ISO 8601 date or time such as 2026-01-31T06:00:00Z, got {value!r}"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
