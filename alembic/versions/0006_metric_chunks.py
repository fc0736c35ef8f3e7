"""metric_chunks: curve points stored a report at a time, as columns; metric_points' rows move into them

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from itertools import groupby

from alembic import op
import sqlalchemy as sa

from service import curves


revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

POINT_FIELDS = ("step", "epoch", "loss", "val_loss", "accuracy", "val_accuracy")
CHUNK_POINTS = 1024


def create_points() -> sa.Table:
    return op.create_table(
        "metric_points",
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("loss", sa.Float(), nullable=False),
        sa.Column("val_loss", sa.Float(), nullable=True),
        sa.Column("accuracy", sa.Float(), nullable=True),
        sa.Column("val_accuracy", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "step"),
    )


def create_chunks() -> sa.Table:
    return op.create_table(
        "metric_chunks",
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("first_step", sa.Integer(), nullable=False),
        sa.Column("last_step", sa.Integer(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("columns", sa.String(length=100), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "first_step"),
    )


def upgrade() -> None:
    conn = op.get_bind()
    chunks = create_chunks()
    points = sa.table("metric_points", *(sa.column(name) for name in ("job_id", *POINT_FIELDS)))
    rows = conn.execute(sa.select(points).order_by(points.c.job_id, points.c.step)).mappings()
    for job_id, job_rows in groupby(rows, key=lambda r: r["job_id"]):
        job_points = [{name: r[name] for name in POINT_FIELDS} for r in job_rows]
        for first in range(0, len(job_points), CHUNK_POINTS):
            chunk = curves.encode(curves.Columns.from_dicts(job_points[first : first + CHUNK_POINTS]))
            values = {name: getattr(chunk, name) for name in curves.Chunk.__slots__}
            conn.execute(chunks.insert().values(job_id=job_id, **values))
    op.drop_table("metric_points")


def downgrade() -> None:
    conn = op.get_bind()
    points = create_points()
    chunks = sa.table("metric_chunks", *(sa.column(name) for name in ("job_id", *curves.Chunk.__slots__)))
    for row in conn.execute(sa.select(chunks).order_by(chunks.c.job_id, chunks.c.first_step)).all():
        decoded = curves.decode(row.columns, row.data, row.count)
        values = [{"job_id": row.job_id, **{name: getattr(p, name) for name in POINT_FIELDS}} for p in decoded]
        conn.execute(points.insert(), values)
    op.drop_table("metric_chunks")
