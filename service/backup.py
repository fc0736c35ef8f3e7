"""`fitserve db backup`: a consistent copy of a live SQLite database, made with SQLite's online backup API.

The copy is read in one step, so it is one snapshot: in WAL mode that read blocks no writer, and no
write restarts it (a backup taken in small steps starts over whenever another connection writes).
"""

import os
import sqlite3
from pathlib import Path

from sqlalchemy.engine import make_url

POSTGRES_ADVICE = """PostgreSQL is backed up with its own tools, while the service runs:
    pg_dump --format=custom --file {path} "{url}"
and restored into an empty database with
    pg_restore --dbname "postgresql://…/fitserve" {path}
(see README, Operations: Backups)"""


class BackupError(Exception):
    """The database cannot be backed up this way; the message says what to do instead."""


def backup(database_url: str, path: Path) -> int:
    """Copy the database to `path` (a new file); returns the number of jobs the copy holds."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        plain = url.set(drivername=url.get_backend_name()).render_as_string(hide_password=True)
        raise BackupError(POSTGRES_ADVICE.format(path=path, url=plain))
    if not url.database or url.database == ":memory:" or not Path(url.database).exists():
        raise BackupError(f"no SQLite database file at {url.database!r}")
    if path.exists():
        raise BackupError(f"{path} exists; choose a new path")
    partial = path.with_name(f".{path.name}.partial")
    source = sqlite3.connect(f"file:{url.database}?mode=ro", uri=True, timeout=30)
    target = sqlite3.connect(partial)
    try:
        source.backup(target)  # all pages in one step: one snapshot
        target.execute("PRAGMA journal_mode=DELETE")  # a copy is one file, with no -wal beside it
        jobs = target.execute("SELECT count(*) FROM jobs").fetchone()[0]
    finally:
        target.close()
        source.close()
    os.replace(partial, path)
    return jobs
