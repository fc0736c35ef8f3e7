"""SQLite: an FTS5 trigram index of the jobs' names, so `?name=` finds an owner's few matches without a walk

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07

`?name=part` is `lower(name) LIKE '%part%'`. PostgreSQL answers it from 0015's trigram index on lower(name) (the
query now reads lower(name) as that index does). SQLite gets a contentless FTS5 table with the trigram tokenizer:
its phrase query for a part finds every name holding it (any case; a superset of LIKE's matches, which the page's
query still checks). FTS5 needs integer keys that stay put, and jobs' rowids may change on VACUUM: job_names gives
each named job one (its INTEGER PRIMARY KEY). Triggers keep both in step with the jobs' inserts, renames and deletes
(cascades from sweeps included), in the transaction that makes them. PostgreSQL: nothing to do.
"""

from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

# the name's index entry goes, given what it indexed (a contentless table keeps only the index), then its key
FORGET = ("INSERT INTO job_name_trigrams (job_name_trigrams, rowid, name) SELECT 'delete', id, OLD.name"
          " FROM job_names WHERE job_id = OLD.id; DELETE FROM job_names WHERE job_id = OLD.id;")
INDEX = ("INSERT INTO job_names (job_id) SELECT NEW.id WHERE NEW.name IS NOT NULL;"
         " INSERT INTO job_name_trigrams (rowid, name) SELECT id, NEW.name FROM job_names WHERE job_id = NEW.id;")


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute("CREATE TABLE job_names (id INTEGER PRIMARY KEY, job_id VARCHAR(32) NOT NULL UNIQUE)")
    op.execute("CREATE VIRTUAL TABLE job_name_trigrams USING fts5(name, content='', columnsize=0, tokenize='trigram')")
    # one read of the jobs in their order each: a named job's key starts as its rowid of the moment
    op.execute("INSERT INTO job_names (id, job_id) SELECT rowid, id FROM jobs WHERE name IS NOT NULL")
    op.execute("INSERT INTO job_name_trigrams (rowid, name) SELECT rowid, name FROM jobs WHERE name IS NOT NULL")
    op.execute(f"CREATE TRIGGER jobs_named_insert AFTER INSERT ON jobs WHEN NEW.name IS NOT NULL BEGIN {INDEX} END")
    op.execute(f"CREATE TRIGGER jobs_named_update AFTER UPDATE OF name ON jobs WHEN OLD.name IS NOT NEW.name BEGIN"
               f" {FORGET} {INDEX} END")
    op.execute(f"CREATE TRIGGER jobs_named_delete BEFORE DELETE ON jobs WHEN OLD.name IS NOT NULL BEGIN {FORGET} END")


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for trigger in ("jobs_named_insert", "jobs_named_update", "jobs_named_delete"):
        op.execute(f"DROP TRIGGER {trigger}")
    op.execute("DROP TABLE job_name_trigrams")
    op.execute("DROP TABLE job_names")
