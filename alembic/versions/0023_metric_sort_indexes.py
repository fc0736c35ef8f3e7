"""jobs by owner in the order of each sortable metric, so `?sort=loss` (val_loss, val_accuracy) reads a page, not
all the owner's jobs

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07

A sort by a metric orders by the metric of the weights the job kept: its best epoch's with early stopping, else its
latest (service/models.py `kept_metric`). Each index is on that expression itself, after the owner and before the
id, so a page and every cursor's next page are one range of it, and the jobs without the metric its NULL range. No
column to fill: building the three indexes is the upgrade's cost. The expressions are written as the query writes
them (SQLite matches an index's expression to the query's as written).
"""

from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

METRICS = ("loss", "val_loss", "val_accuracy")


def kept(name: str, postgresql: bool) -> str:
    def number(column: str) -> str:
        if postgresql:
            return f"({column} ->> '{name}')::double precision"
        return f"CAST(json_extract({column}, '$.{name}') AS FLOAT)"

    return f"coalesce({number('best_metrics')}, {number('latest_metrics')})"


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for name in METRICS:
        op.execute(f"CREATE INDEX ix_jobs_owner_id_{name} ON jobs (owner_id, {kept(name, postgresql)}, id)")


def downgrade() -> None:
    for name in METRICS:
        op.drop_index(f"ix_jobs_owner_id_{name}", table_name="jobs")
