"""`fitserve db check`, and `serve`'s check at start: the database opens, is whole, and where its schema stands.

SQLite: `PRAGMA quick_check` reads every page (a corrupt header or trashed pages are named, with how to restore);
PostgreSQL: a connection and the schema's revision. Every outcome is one line.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from service.db_faults import corrupt, database_fault, where
from service.migrations import alembic_config


class CheckFailed(Exception):
    """The database cannot be used as it is; the message (one line) says why and what to do."""


def first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def check_sqlite_file(url: str, missing_ok: bool) -> str | None:
    """SQLite's quick_check of the file; what it found, or None where there is no file (yet) and `missing_ok`."""
    path = make_url(url).database
    if not path or path == ":memory:" or not Path(path).exists():
        if missing_ok:
            return None
        raise CheckFailed(f"no SQLite database file at {where(url)} (`fitserve serve` or `fitserve db upgrade` "
                          "makes one)")
    conn = sqlite3.connect(path, timeout=30)
    try:
        problems = [row[0] for row in conn.execute("PRAGMA quick_check")]
    except sqlite3.Error as exc:
        fault = database_fault(exc, url)
        raise CheckFailed(fault.detail if fault is not None else f"{where(url)}: {first_line(exc)}") from exc
    finally:
        conn.close()
    if problems != ["ok"]:
        raise CheckFailed(corrupt(url, f"quick_check: {problems[0][:150]}; {len(problems)} problem(s)").detail)
    return "passes SQLite's quick_check"


def schema_state(url: str) -> str:
    """Where the schema stands against this fitserve's migrations' head."""
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    except Exception as exc:
        fault = database_fault(exc, url)
        why = fault.detail if fault is not None else f"cannot read {where(url)}: {first_line(exc)}"
        raise CheckFailed(why) from exc
    finally:
        engine.dispose()
    if current == head:
        return f"is at the schema head ({head})"
    if current is None:
        return "has no schema yet (`fitserve db upgrade`, or `serve` at start, makes it)"
    known = {script.revision for script in ScriptDirectory.from_config(alembic_config(url)).walk_revisions()}
    if current not in known:
        raise CheckFailed(f"{where(url)} is at schema revision {current}, which this fitserve does not know "
                          f"(its head is {head}): a newer fitserve migrated it; run that one")
    return f"is at schema revision {current}, behind the head {head} (`fitserve db upgrade`, or `serve`, migrates it)"


def check_database(url: str, missing_ok: bool = False) -> str:
    """The one-line OK for `url`; raises CheckFailed with the one-line reason otherwise."""
    found = check_sqlite_file(url, missing_ok) if make_url(url).get_backend_name() == "sqlite" else "answers"
    if found is None:
        return f"no database yet at {where(url)}"
    return f"database OK: {where(url)} {found} and {schema_state(url)}"
