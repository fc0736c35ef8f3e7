"""jobs, metric points, weights, checkpoints and datasets

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from alembic import op
import sqlalchemy as sa


revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("datasets",
    sa.Column("id", sa.String(length=32), nullable=False),
    sa.Column("owner_id", sa.String(length=32), nullable=True),
    sa.Column("name", sa.String(length=200), nullable=True),
    sa.Column("format", sa.String(length=8), nullable=False),
    sa.Column("n_rows", sa.Integer(), nullable=False),
    sa.Column("sample_shape", sa.JSON(), nullable=False),
    sa.Column("n_classes", sa.Integer(), nullable=True),
    sa.Column("target_width", sa.Integer(), nullable=False),
    sa.Column("size_bytes", sa.Integer(), nullable=False),
    sa.Column("data", sa.LargeBinary(), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("id")
    )
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_datasets_owner_id"), ["owner_id"], unique=False)

    op.create_table("jobs",
    sa.Column("id", sa.String(length=32), nullable=False),
    sa.Column("owner_id", sa.String(length=32), nullable=True),
    sa.Column("name", sa.String(length=200), nullable=True),
    sa.Column("status", sa.String(length=16), nullable=False),
    sa.Column("spec", sa.JSON(), nullable=False),
    sa.Column("epochs", sa.Integer(), nullable=False),
    sa.Column("epoch", sa.Integer(), nullable=False),
    sa.Column("step", sa.Integer(), nullable=False),
    sa.Column("latest_metrics", sa.JSON(), nullable=True),
    sa.Column("attempt", sa.Integer(), nullable=False),
    sa.Column("max_attempts", sa.Integer(), nullable=False),
    sa.Column("worker_id", sa.String(length=64), nullable=True),
    sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("cancel_requested", sa.Boolean(), nullable=False),
    sa.Column("device", sa.String(length=32), nullable=True),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint("id")
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index("ix_jobs_created_at_id", ["created_at", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_jobs_owner_id"), ["owner_id"], unique=False)
        batch_op.create_index("ix_jobs_status_created_at", ["status", "created_at"], unique=False)

    op.create_table("checkpoints",
    sa.Column("job_id", sa.String(length=32), nullable=False),
    sa.Column("attempt", sa.Integer(), nullable=False),
    sa.Column("epoch", sa.Integer(), nullable=False),
    sa.Column("data", sa.LargeBinary(), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
    sa.PrimaryKeyConstraint("job_id")
    )
    op.create_table("job_weights",
    sa.Column("job_id", sa.String(length=32), nullable=False),
    sa.Column("data", sa.LargeBinary(), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
    sa.PrimaryKeyConstraint("job_id")
    )
    op.create_table("metric_points",
    sa.Column("job_id", sa.String(length=32), nullable=False),
    sa.Column("step", sa.Integer(), nullable=False),
    sa.Column("epoch", sa.Integer(), nullable=False),
    sa.Column("loss", sa.Float(), nullable=False),
    sa.Column("val_loss", sa.Float(), nullable=True),
    sa.Column("accuracy", sa.Float(), nullable=True),
    sa.Column("val_accuracy", sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
    sa.PrimaryKeyConstraint("job_id", "step")
    )


def downgrade() -> None:
    op.drop_table("metric_points")
    op.drop_table("job_weights")
    op.drop_table("checkpoints")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_status_created_at")
        batch_op.drop_index(batch_op.f("ix_jobs_owner_id"))
        batch_op.drop_index("ix_jobs_created_at_id")

    op.drop_table("jobs")
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_datasets_owner_id"))

    op.drop_table("datasets")
