"""Alembic migrations of the tumor-board store (applied on start by latplan.store.db.migrate)."""
