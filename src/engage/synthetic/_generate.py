"""Entry point: simulate, assemble, spoil."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import timedelta

import numpy as np
import pandas as pd

from engage.synthetic._config import SyntheticConfig
from engage.synthetic._defects import inject_defects
from engage.synthetic._frame import build_frame, snapshot_day
from engage.synthetic._pii import Contacts, make_contacts
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
    """Generate the customer table described by ``config`` (same config, same table).

    Extracts come oldest first; the latest (at ``as_of``) uses the streams of ``seed`` itself, so a
    one-snapshot table is the latest extract of a many-snapshot one with the same seed and size.
    """
    k = config.snapshots
    sizes = [config.rows // k + (1 if i < config.rows % k else 0) for i in range(k)][::-1]
    frames: list[pd.DataFrame] = []
    contacts: list[Contacts] = []
    first_id = 1
    latest = make_streams(config.seed)
    for i, size in enumerate(sizes):
        back = k - 1 - i  # extracts before the latest one
        if size == 0:
            continue
        as_of = config.as_of - timedelta(days=config.snapshot_every_days * back)
        rng = latest if back == 0 else make_streams(config.seed, back)
        pop = simulate_population(rng, size, snapshot_day(as_of), config.bias, config.drift)
        people = make_contacts(rng["pii"], pop.gender, pop.country)
        frames.append(build_frame(pop, people, as_of, first_id=first_id))
        contacts.append(people)
        first_id += size
    clean = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    frame, defects = inject_defects(clean, _stack(contacts), config.defects, latest["defects"])
    return GeneratedTable(frame=frame, defects=defects)


def _stack(parts: list[Contacts]) -> Contacts:
    if len(parts) == 1:
        return parts[0]
    return Contacts(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Contacts)})
