"""Apply the Alembic migrations from code (on start, and for `fitserve db upgrade`)."""

import sys
from functools import cache
from pathlib import Path

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from alembic import command

ROOT = Path(__file__).resolve().parents[1]  # a checkout (or an editable install); site-packages for a wheel
# SQLite's name search (alembic 0022): the FTS5 table (with the shadow tables it keeps) and the names' keys, which
# the models do not describe (repositories/job_search.py reads them)
SQLITE_SEARCH_TABLES = ("job_name_trigrams", "job_names")


@cache
def migrations_home() -> Path:
    """The folder holding `alembic.ini` and `alembic/`: the checkout's, else where a wheel installed them
    (pyproject.toml's data-files: <prefix>/share/fitserve, the prefix of this code's site-packages)."""
    site_prefix = ROOT.parents[2] if ROOT.parent.name.startswith("python") else ROOT
    for home in (ROOT, site_prefix / "share" / "fitserve", Path(sys.prefix) / "share" / "fitserve"):
        if (home / "alembic" / "env.py").is_file():
            return home
    raise RuntimeError(f"fitserve's migrations (alembic/env.py) are neither beside {ROOT} nor under share/fitserve")


def alembic_config(database_url: str) -> Config:
    home = migrations_home()
    config = Config(str(home / "alembic.ini"))
    config.set_main_option("script_location", str(home / "alembic"))
    config.attributes["database_url"] = database_url
    return config


@cache
def head_revisions() -> frozenset[str]:
    """The revisions `head` names, read from the migration scripts once a process (each parse reads them all)."""
    return frozenset(ScriptDirectory.from_config(alembic_config("")).get_heads())


def current_revisions(database_url: str) -> frozenset[str]:
    """The revisions the database is at (none for an empty one)."""
    from service.db import make_engine

    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            return frozenset(MigrationContext.configure(connection).get_current_heads())
    finally:
        engine.dispose()


def upgrade(database_url: str, revision: str = "head") -> None:
    """Migrate to `revision`; a database already at head is only read (every start and `fitserve keys` asks for
    head, and Alembic's own run parses every script and env.py again each time: ~20 ms against ~3 ms)."""
    if revision == "head" and current_revisions(database_url) == head_revisions():
        return
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


def in_models(name: str | None, type_: str, parent_names: dict) -> bool:
    """Alembic's include_name when it compares a database with the models: all but SQLite's name search tables."""
    return not (type_ == "table" and name is not None and name.startswith(SQLITE_SEARCH_TABLES))
