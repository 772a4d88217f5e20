"""The audit trail is append-only in the database itself: deletes refused, hashed columns never rewritten

A trigger on ``audit_records`` (PostgreSQL: a PL/pgSQL function; SQLite: two triggers) refuses any DELETE
and any UPDATE that changes what the chain covers (seq, at, event, actor, subject, payload_sha256,
prev_hash, hash) or puts a payload back; clearing a payload (a purge, an erasure) and the lookup key stays
allowed. Tampering then needs the table owner's rights to drop or disable the trigger first, and
``engage audit verify`` still names whatever was changed.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

#: the columns ``hash`` covers, which no UPDATE may change
_CHAINED = ("seq", "at", "event", "actor", "subject", "payload_sha256", "prev_hash", "hash")

_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION engage_audit_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'audit_records is append-only: record % cannot be deleted', OLD.seq;
    END IF;
    IF {changed} OR (NEW.payload IS NOT NULL AND NEW.payload IS DISTINCT FROM OLD.payload) THEN
        RAISE EXCEPTION 'audit_records is append-only: record % cannot be rewritten (only its payload cleared)', OLD.seq;
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql
""".format(changed=" OR ".join(f"NEW.{c} IS DISTINCT FROM OLD.{c}" for c in _CHAINED))


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        op.execute(
            "CREATE TRIGGER audit_records_append_only BEFORE UPDATE OR DELETE ON audit_records "
            "FOR EACH ROW EXECUTE FUNCTION engage_audit_append_only()"
        )
        return
    changed = " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in _CHAINED)
    op.execute(
        "CREATE TRIGGER audit_records_no_delete BEFORE DELETE ON audit_records "
        "BEGIN SELECT RAISE(ABORT, 'audit_records is append-only: records cannot be deleted'); END"
    )
    op.execute(
        "CREATE TRIGGER audit_records_no_rewrite BEFORE UPDATE ON audit_records "
        f"WHEN {changed} OR (NEW.payload IS NOT NULL AND NEW.payload IS NOT OLD.payload) "
        "BEGIN SELECT RAISE(ABORT, 'audit_records is append-only: a record cannot be rewritten "
        "(only its payload cleared)'); END"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_records_append_only ON audit_records")
        op.execute("DROP FUNCTION IF EXISTS engage_audit_append_only()")
        return
    op.execute("DROP TRIGGER IF EXISTS audit_records_no_delete")
    op.execute("DROP TRIGGER IF EXISTS audit_records_no_rewrite")
