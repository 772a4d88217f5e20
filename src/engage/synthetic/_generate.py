"""Entry point: simulate, assemble, spoil."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from engage.synthetic._config import SyntheticConfig
from engage.synthetic._defects import inject_defects
from engage.synthetic._frame import build_frame, snapshot_day
from engage.synthetic._pii import make_contacts
from engage.synthetic._population import make_streams, simulate_population

__all__ = ["GeneratedTable", "generate_customers"]


@dataclass(frozen=True)
class GeneratedTable:
    """A generated customer table and the ground truth of the defects injected into it.

    ``defects`` has one row per spoiled row: ``row`` (int64, position in ``frame``), ``customer_id``,
    ``kind`` (a :class:`DefectKind` value) and ``column`` (the column that was spoiled).
    """

    frame: pd.DataFrame
    defects: pd.DataFrame


def generate_customers(config: SyntheticConfig) -> GeneratedTable:
    """Generate the customer table described by ``config`` (same config, same table)."""
    day = snapshot_day(config.as_of)
    rng = make_streams(config.seed)
    pop = simulate_population(rng, config.rows, day, config.bias, config.drift)
    contacts = make_contacts(rng["pii"], pop.gender, pop.country)
    clean = build_frame(pop, contacts, config.as_of)
    frame, defects = inject_defects(clean, contacts, config.defects, rng["defects"])
    return GeneratedTable(frame=frame, defects=defects)
