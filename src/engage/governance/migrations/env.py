"""Alembic's environment for the governance store: run by :meth:`engage.governance.Database.migrate`
with an open connection (``config.attributes["connection"]``), or by the ``alembic`` CLI with a URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool

from engage.governance._tables import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = engine_from_config(
        config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.", poolclass=pool.NullPool
    )
    with engine.connect() as conn:
        _run(conn)
