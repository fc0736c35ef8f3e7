"""webhooks: jobs.notify and notified_status, sweeps.notified_status; webhook_secrets, webhook_deliveries, webhook_attempts

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07

Jobs and sweeps made before this revision notify nobody (their notified_status is NULL).
"""

import sqlalchemy as sa

from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

OPEN = sa.text("notified_status IN ('queued', 'running')")


def upgrade() -> None:
    # plain ALTER TABLE, not batch mode: on SQLite batch mode rebuilds `jobs`, and dropping the old table cascades
    op.add_column("jobs", sa.Column("notify", sa.JSON(), nullable=True))
    op.add_column("jobs", sa.Column("notified_status", sa.String(length=16), nullable=True))
    op.add_column("sweeps", sa.Column("notified_status", sa.String(length=16), nullable=True))
    op.create_index("ix_jobs_notify_open", "jobs", ["notified_status", "status", "id"],
                    sqlite_where=OPEN, postgresql_where=OPEN)
    op.create_index("ix_sweeps_notify_open", "sweeps", ["notified_status", "id"], sqlite_where=OPEN, postgresql_where=OPEN)
    op.create_table(
        "webhook_secrets",
        sa.Column("owner_key", sa.String(length=32), primary_key=True),
        sa.Column("secret", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("owner_key", sa.String(length=32), nullable=False),
        sa.Column("job_id", sa.String(length=32), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=True),
        sa.Column("sweep_id", sa.String(length=32), sa.ForeignKey("sweeps.id", ondelete="CASCADE"), nullable=True),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("job_id", "event", name="uq_webhook_deliveries_job_id_event"),
        sa.UniqueConstraint("sweep_id", "event", name="uq_webhook_deliveries_sweep_id_event"),
    )
    pending = sa.text("status = 'pending'")
    op.create_index("ix_webhook_deliveries_due", "webhook_deliveries", ["next_attempt_at"],
                    sqlite_where=pending, postgresql_where=pending)
    op.create_table(
        "webhook_attempts",
        sa.Column("delivery_id", sa.String(length=32),
                  sa.ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("number", sa.Integer(), primary_key=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(length=300), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("webhook_attempts")
    op.drop_index("ix_webhook_deliveries_due", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_secrets")
    op.drop_index("ix_sweeps_notify_open", table_name="sweeps")
    op.drop_index("ix_jobs_notify_open", table_name="jobs")
    op.drop_column("sweeps", "notified_status")
    op.drop_column("jobs", "notified_status")
    op.drop_column("jobs", "notify")
