"""latplan.store: the tumor board's database (SQLAlchemy 2 + Alembic) and file store.

SQLite by default, PostgreSQL by URL; case files in a content-addressed store on disk.
"""

from latplan.store.blobs import BlobStore, tree_sha256
from latplan.store.config import StoreSettings
from latplan.store.db import make_engine, migrate, session_factory, transaction

__all__ = ["BlobStore", "StoreSettings", "make_engine", "migrate", "session_factory", "transaction", "tree_sha256"]
