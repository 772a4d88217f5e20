"""The audit trail on SQLite and on a real PostgreSQL server: append, verify, tampering, purge, holds."""

from __future__ import annotations

from typing import Any


def test_smoke(governance_db: Any) -> None:
    from engage.governance import AuditTrail

    trail = AuditTrail(governance_db)
    for i in range(3):
        trail.append("x", actor="a", payload={"i": i})
    assert trail.verify().ok
