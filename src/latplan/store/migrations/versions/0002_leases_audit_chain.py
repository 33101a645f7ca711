"""Job leases, the audit hash chain, login back-off, idempotency keys, session idle time.

Revision ID: 0002_leases_audit_chain
Revises: 0001_initial
Create Date: 2026-12-02

- ``jobs``: ``lease_token``, ``worker_host``, ``lease_expires_at`` (a worker holds a lease it renews
  by heartbeat; only the holder may finish the job), ``requested_by`` (per-user job quota).
- ``cases.last_done_job_key``: the last finished plan stays visible while a new job runs.
- ``audit_events``: ``prev_hash``/``row_hash`` and the one-row ``audit_head``; rows written before
  this revision are chained here (the append-only triggers are dropped for that and recreated).
- ``login_throttle``: failed-login counters per account and per address (exponential back-off).
- ``idempotency_keys``; ``web_sessions.last_seen_at`` (idle timeout).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.orm import Session

from latplan.store import audit

revision = "0002_leases_audit_chain"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def _drop_audit_triggers(dialect: str) -> None:
    if dialect == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_delete")
    elif dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_change ON audit_events")
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_truncate ON audit_events")


def _create_audit_triggers(dialect: str) -> None:
    if dialect == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_events_no_{verb.lower()} BEFORE {verb} ON audit_events "
                f"BEGIN SELECT RAISE(ABORT, 'audit_events is append-only: {verb} is not allowed'); END"
            )
    elif dialect == "postgresql":
        op.execute("CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE ON audit_events "
                   "FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()")
        op.execute("CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events "
                   "FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()")


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for name, col in (("lease_token", sa.String(64)), ("worker_host", sa.String(255)),
                      ("lease_expires_at", sa.DateTime), ("requested_by", sa.Integer)):
        op.add_column("jobs", sa.Column(name, col))
    op.add_column("cases", sa.Column("last_done_job_key", sa.String(64)))
    op.add_column("web_sessions", sa.Column("last_seen_at", sa.DateTime))
    op.create_table(
        "login_throttle",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("last_failure_at", sa.DateTime),
        sa.Column("blocked_until", sa.DateTime),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.Column("scope", sa.String(40), nullable=False),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("object_id", sa.String(120)),
        sa.Column("response", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("user_id", "scope", "key", name="uq_idempotency_key"),
    )
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("last_id", sa.Integer, nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
    )
    op.add_column("audit_events", sa.Column("prev_hash", sa.String(64)))
    op.add_column("audit_events", sa.Column("row_hash", sa.String(64)))
    _drop_audit_triggers(dialect)
    with Session(bind=op.get_bind()) as s:
        audit.backfill(s)
        s.flush()
    _create_audit_triggers(dialect)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    _drop_audit_triggers(dialect)
    op.drop_table("audit_head")
    op.drop_table("idempotency_keys")
    op.drop_table("login_throttle")
    with op.batch_alter_table("audit_events") as b:
        b.drop_column("row_hash")
        b.drop_column("prev_hash")
    with op.batch_alter_table("web_sessions") as b:
        b.drop_column("last_seen_at")
    with op.batch_alter_table("cases") as b:
        b.drop_column("last_done_job_key")
    with op.batch_alter_table("jobs") as b:
        for name in ("requested_by", "lease_expires_at", "worker_host", "lease_token"):
            b.drop_column(name)
    _create_audit_triggers(dialect)
