"""A curve chunk's column names widened to 400 characters: a job's `metrics` name their own columns

Revision ID: 0034
Revises: 0033
Create Date: 2026-12-07

A classifier's chunk with every per-epoch metric names 16 columns past the 7 it had (about 145 characters), more
than VARCHAR(100) holds. PostgreSQL widens a VARCHAR in its catalog only, whatever the table's size; SQLite never
enforces a declared length, so its table stays as it was made (widening there would copy every chunk).
"""

from itertools import combinations

import sqlalchemy as sa

from alembic import op

revision = "0034"
down_revision = "0033"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    op.alter_column("metric_chunks", "columns", type_=sa.String(400), existing_type=sa.String(100),
                    existing_nullable=False)


# what a chunk could name before: step, epoch, loss and any of the optional figures, in this order
OPTIONAL = ("val_loss", "accuracy", "val_accuracy", "lr")
BEFORE = [",".join(("step", "epoch", "loss", *names)) for n in range(5) for names in combinations(OPTIONAL, n)]


def downgrade() -> None:
    # chunks with a job's `metrics` name columns the code before cannot read (nor, on PostgreSQL, fit): they go
    op.execute(sa.text("DELETE FROM metric_chunks WHERE columns NOT IN :before").bindparams(
        sa.bindparam("before", BEFORE, expanding=True)))
    if op.get_bind().dialect.name == "sqlite":
        return
    op.alter_column("metric_chunks", "columns", type_=sa.String(100), existing_type=sa.String(400),
                    existing_nullable=False)
