"""Alembic environment: the engine comes from the caller (latplan.store.db.migrate).

``render_as_batch=True`` so that ALTERs on SQLite use batch mode (copy-and-move tables).
"""

from __future__ import annotations

from alembic import context

from latplan.store.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only via `alembic` CLI, which latplan does not use
    raise RuntimeError("run migrations through latplan.store.db.migrate(engine)")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
