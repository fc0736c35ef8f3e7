"""api keys and idempotency keys

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from alembic import op
import sqlalchemy as sa


revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("api_keys",
    sa.Column("id", sa.String(length=16), nullable=False),
    sa.Column("owner_id", sa.String(length=32), nullable=False),
    sa.Column("name", sa.String(length=200), nullable=True),
    sa.Column("secret_sha256", sa.String(length=64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint("id")
    )
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_keys_owner_id"), ["owner_id"], unique=False)

    op.create_table("idempotency_keys",
    sa.Column("owner_id", sa.String(length=32), nullable=False),
    sa.Column("scope", sa.String(length=64), nullable=False),
    sa.Column("key", sa.String(length=255), nullable=False),
    sa.Column("fingerprint", sa.String(length=64), nullable=False),
    sa.Column("status_code", sa.Integer(), nullable=True),
    sa.Column("response", sa.JSON(), nullable=True),
    sa.Column("location", sa.String(length=200), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("owner_id", "scope", "key")
    )
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_idempotency_keys_created_at"), ["created_at"], unique=False)



def downgrade() -> None:
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_idempotency_keys_created_at"))

    op.drop_table("idempotency_keys")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_keys_owner_id"))

    op.drop_table("api_keys")
