"""The engine's own guards, on a real PostgreSQL server: a session left idle inside a transaction is ended."""

import time

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from service.db import make_engine
from service.settings import get_settings
from tests.conftest import POSTGRES_URL, postgres_unreachable


def test_postgresql_ends_a_session_idle_in_a_transaction_and_frees_its_locks(monkeypatch):
    if reason := postgres_unreachable():
        pytest.skip(reason)
    monkeypatch.setenv("FITSERVE_DB_IDLE_IN_TRANSACTION_SECONDS", "0.5")
    get_settings.cache_clear()
    engine = make_engine(POSTGRES_URL)
    other = create_engine(POSTGRES_URL)  # a plain session, to look at the lock from outside
    try:
        with engine.connect() as frozen, other.connect() as conn:
            assert frozen.execute(text("SHOW idle_in_transaction_session_timeout")).scalar() == "500ms"
            frozen.execute(text("SELECT pg_advisory_xact_lock(4242)"))  # held until its transaction ends
            time.sleep(1.5)  # frozen: no statement, transaction open
            # the server ended that session, and the lock went with it
            assert conn.execute(text("SELECT pg_try_advisory_xact_lock(4242)")).scalar() is True
            with pytest.raises(DBAPIError):
                frozen.execute(text("SELECT 1"))
    finally:
        engine.dispose()
        other.dispose()
        get_settings.cache_clear()
