"""Helpers of the governance tests."""

from __future__ import annotations

from typing import Any


def tamper(db: Any, statement: str, **params: Any) -> None:
    """Run SQL on the audit trail as someone with the table owner's rights would tamper with it: the
    append-only trigger off first (PostgreSQL: disabled for the statement; SQLite: dropped)."""
    from sqlalchemy import text

    with db.engine.begin() as connection:
        if db.sqlite:
            connection.execute(text("DROP TRIGGER IF EXISTS audit_records_no_delete"))
            connection.execute(text("DROP TRIGGER IF EXISTS audit_records_no_rewrite"))
            connection.execute(text(statement), params)
        else:
            connection.execute(text("ALTER TABLE audit_records DISABLE TRIGGER audit_records_append_only"))
            connection.execute(text(statement), params)
            connection.execute(text("ALTER TABLE audit_records ENABLE TRIGGER audit_records_append_only"))
