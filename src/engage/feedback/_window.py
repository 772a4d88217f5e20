"""One window of the feedback loop from where it is kept: what ``engage feedback`` and the
``engage-feedback`` pipeline's step both judge."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._report import LiveReport

__all__ = ["report_window"]


def report_window(
    events_uri: str,
    outcomes_uri: str | Path,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    contract: str | Path | None = None,
    policy: str | Path | None = None,
    reference_uri: str | Path | None = None,
) -> LiveReport:
    """The live report of the events logged in ``[since, until)`` (the event store at ``events_uri``)
    joined with the outcomes table, judged by ``policy`` (None: the shipped contract and policy; a bad
    one fails before any table is read); ``reference_uri``: the model's predictions on training rows
    for prediction drift."""
    from engage.contract import load_contract
    from engage.policy import load_policy
    from engage.tables import read_table

    from ._report import live_report
    from ._store import read_events

    spec, rules = load_contract(contract), load_policy(policy)
    events = read_events(events_uri, since, until)
    reference = read_table(reference_uri) if reference_uri else None
    return live_report(events, read_table(outcomes_uri), spec, rules, reference)
