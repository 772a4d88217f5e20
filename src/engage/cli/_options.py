"""Parsing of option values shared by several commands, with errors that name the option."""

from __future__ import annotations

from datetime import UTC, datetime

from engage.errors import ConfigError

#: the ``--db`` and ``--actor`` options of the governance commands (audit, review, subject, token, governance)
DB_HELP = "Governance database URL (default: $ENGAGE_GOVERNANCE_DATABASE_URL, else sqlite:///artifacts/governance.db)."
ACTOR_HELP = "Who does this, recorded on the audit trail (default: $USER)."


def current_hour() -> datetime:
    """The default snapshot time: now, floored to the hour (UTC), so a rerun within the hour is identical."""
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def parse_rates(values: list[str], option: str) -> dict[str, float]:
    """``KIND=RATE`` pairs."""
    rates: dict[str, float] = {}
    for item in values:
        kind, sep, rate = item.partition("=")
        try:
            if not sep:
                raise ValueError
            rates[kind.strip()] = float(rate)
        except ValueError:
            raise ConfigError(f"{option}: expected KIND=RATE such as bad_email=0.01, got {item!r}") from None
    return rates


def actor_name(actor: str | None) -> str:
    """Who a command acts as on the audit trail: ``--actor``, else the login name, else ``engage``."""
    if actor and actor.strip():
        return actor.strip()
    import getpass

    try:
        return getpass.getuser() or "engage"
    except (KeyError, OSError):
        return "engage"
