"""job_params: each job's spec values, a row each, so a `?filter=` params term reads an index, not every spec

Revision ID: 0038
Revises: 0037
Create Date: 2026-12-07

A row per number or string of a job's spec at a path a filter can name (dotted keys of letters, digits and _,
list indexes 0-15, at most 8 of them), with the job's owner copied (it never changes). Existing jobs get theirs
here, as service/repositories/job_params.py writes them for new jobs (the rules are copied: a migration keeps
what it did). The index is built after the fill, not updated row by row.

The fill walks the specs in SQL (a recursive walk of SQLite's json_each, PostgreSQL's jsonb_each and
jsonb_array_elements), a range of jobs a statement: reading each spec into Python took about 8 minutes (SQLite)
and 25 (PostgreSQL) at a million jobs. This revision was released with that Python fill; it was changed after
release only because the rows it writes are the same, row for row (tests/test_migrations.py compares the two
on specs made to differ: nested lists, long strings, booleans, odd keys, long lists, deep nesting). The few specs
SQL could not read as Python does (SQLite: not valid JSON to it, e.g. a NaN; either back end: a \\u0000 escape,
which SQLite cuts a string at and PostgreSQL's jsonb refuses) are still walked in Python. On PostgreSQL the
foreign key is added after the fill (its check of each inserted row was a third of the fill's time).
"""

import re

import sqlalchemy as sa

from alembic import op

revision = "0038"
down_revision = "0037"
branch_labels = None
depends_on = None

jobs = sa.table("jobs", sa.column("id", sa.String), sa.column("owner_id", sa.String), sa.column("spec", sa.JSON))
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
LIST_INDEXES, MAX_PATH_SEGMENTS, MAX_PATH_CHARS, MAX_STRING_CHARS = 16, 8, 256, 256
BATCH = 10_000  # jobs a statement: the walk's queue stays small
COLUMNS = ("job_id", "path", "num_value", "text_value", "owner_id")

# the specs each back end's walk reads as Python does
WALKABLE = {
    "sqlite": r"json_valid(spec) AND instr(spec, '\u0000') = 0",
    "postgresql": r"strpos(spec::text, '\u0000') = 0",
}
# a job's values as spec_params finds them, for the jobs in (:after, :upto]; a node is (path, depth, value)
WALK = {
    "sqlite": f"""
WITH RECURSIVE node(job_id, owner_id, path, depth, type, value) AS (
    SELECT id, owner_id, '', 0, json_type(spec), spec FROM jobs
    WHERE id > :after AND id <= :upto AND {WALKABLE["sqlite"]}
    UNION ALL
    SELECT n.job_id, n.owner_id, CASE n.depth WHEN 0 THEN e.key ELSE n.path || '.' || e.key END, n.depth + 1,
           e.type, e.value
    FROM node AS n, json_each(n.value) AS e
    WHERE n.type IN ('object', 'array') AND n.depth < {MAX_PATH_SEGMENTS}
      AND (n.type = 'array' AND e.key < {LIST_INDEXES}
           OR n.type = 'object' AND e.key GLOB '[A-Za-z_]*' AND e.key NOT GLOB '*[^A-Za-z0-9_]*')
)
INSERT INTO job_params ({", ".join(COLUMNS)})
SELECT job_id, path, CASE WHEN type IN ('integer', 'real') THEN CAST(value AS REAL) END,
       CASE WHEN type = 'text' THEN value END, owner_id
FROM node
WHERE depth > 0 AND length(path) <= {MAX_PATH_CHARS}
  AND (type IN ('integer', 'real') OR type = 'text' AND length(value) <= {MAX_STRING_CHARS})
""",
    "postgresql": f"""
WITH RECURSIVE node(job_id, owner_id, path, depth, value) AS (
    SELECT id, owner_id, '', 0, spec::jsonb FROM jobs
    WHERE id > :after AND id <= :upto AND {WALKABLE["postgresql"]}
    UNION ALL
    SELECT n.job_id, n.owner_id, CASE n.depth WHEN 0 THEN c.key ELSE n.path || '.' || c.key END, n.depth + 1,
           c.value
    FROM node AS n CROSS JOIN LATERAL (
        SELECT key, value FROM jsonb_each(CASE jsonb_typeof(n.value) WHEN 'object' THEN n.value END)
        WHERE key ~ '^[A-Za-z_][A-Za-z0-9_]*$'
        UNION ALL
        SELECT (i - 1)::text, value
        FROM jsonb_array_elements(CASE jsonb_typeof(n.value) WHEN 'array' THEN n.value END) WITH ORDINALITY AS a(value, i)
        WHERE i <= {LIST_INDEXES}
    ) AS c
    WHERE n.depth < {MAX_PATH_SEGMENTS}
)
INSERT INTO job_params ({", ".join(COLUMNS)})
SELECT job_id, path, CASE jsonb_typeof(value) WHEN 'number' THEN value::float8 END,
       CASE jsonb_typeof(value) WHEN 'string' THEN value #>> '{{}}' END, owner_id
FROM node
WHERE depth > 0 AND length(path) <= {MAX_PATH_CHARS}
  AND (jsonb_typeof(value) = 'number' OR jsonb_typeof(value) = 'string' AND length(value #>> '{{}}') <= {MAX_STRING_CHARS})
""",
}


def spec_params(spec) -> list[tuple[str, float | None, str | None]]:
    found = []

    def visit(value, path: tuple[str, ...]) -> None:
        if isinstance(value, dict):
            items = [(key, item) for key, item in value.items() if NAME.fullmatch(key)]
        elif isinstance(value, list):
            items = [(str(index), item) for index, item in enumerate(value[:LIST_INDEXES])]
        else:
            text = ".".join(path)
            if len(text) > MAX_PATH_CHARS or isinstance(value, bool):
                return
            if isinstance(value, int | float):
                found.append((text, float(value), None))
            elif isinstance(value, str) and len(value) <= MAX_STRING_CHARS:
                found.append((text, None, value))
            return
        if len(path) < MAX_PATH_SEGMENTS:
            for key, item in items:
                visit(item, (*path, key))

    visit(spec, ())
    return found


def fill_by_sql(bind) -> None:
    """The walkable specs' rows, BATCH jobs a statement, in key order."""
    walk, after = sa.text(WALK[bind.dialect.name]), ""
    while True:
        upto = bind.execute(sa.text("SELECT max(id) FROM (SELECT id FROM jobs WHERE id > :after ORDER BY id"
                                    " LIMIT :batch) AS batch"), {"after": after, "batch": BATCH}).scalar()
        if upto is None:
            return
        bind.execute(walk, {"after": after, "upto": upto})
        after = upto


def fill_by_python(bind, job_params) -> None:
    """The rows of the specs the SQL walk leaves (few or none)."""
    left = bind.execute(sa.select(jobs.c.id, jobs.c.owner_id, jobs.c.spec)
                        .where(sa.text(f"NOT ({WALKABLE[bind.dialect.name]})"))).all()
    rows = [dict(zip(COLUMNS, (job.id, path, number, text, job.owner_id), strict=True))
            for job in left for path, number, text in spec_params(job.spec)]
    if rows:
        bind.execute(sa.insert(job_params), rows)


def upgrade() -> None:
    bind = op.get_bind()
    # PostgreSQL checks the key of each row the fill inserts (a third of its time); added after, in one join
    key_after = bind.dialect.name == "postgresql"
    job_params = op.create_table(
        "job_params",
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("path", sa.String(length=256), nullable=False),
        sa.Column("num_value", sa.Float(), nullable=True),
        sa.Column("text_value", sa.String(length=256), nullable=True),
        sa.Column("owner_id", sa.String(length=32), nullable=True),
        *([] if key_after else [sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE")]),
        sa.PrimaryKeyConstraint("job_id", "path"),
    )
    fill_by_sql(bind)
    fill_by_python(bind, job_params)
    if key_after:
        # the name PostgreSQL gives the key declared in the table, as it was before
        op.create_foreign_key("job_params_job_id_fkey", "job_params", "jobs", ["job_id"], ["id"], ondelete="CASCADE")
    op.create_index("ix_job_params_owner_id_path_value", "job_params",
                    ["owner_id", "path", "num_value", "text_value", "job_id"])


def downgrade() -> None:
    op.drop_index("ix_job_params_owner_id_path_value", table_name="job_params")
    op.drop_table("job_params")
