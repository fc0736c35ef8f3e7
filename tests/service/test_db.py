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


def test_sqlite_writers_of_one_process_take_turns_without_sqlite_sleeps(tmp_path):
    """A writer that waits for another thread's transaction starts as soon as it commits (no 1-100 ms retry
    sleeps), rollback and close free the turn too, and reads never wait."""
    import threading

    engine = make_engine(f"sqlite:///{tmp_path}/turns.db")
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (n INTEGER)"))
        started: list[float] = []
        holder = engine.connect()
        holder.execute(text("INSERT INTO t VALUES (1)"))  # holds the write turn (BEGIN IMMEDIATE)

        def second_writer() -> None:
            with engine.begin() as conn:
                started.append(time.perf_counter())
                conn.execute(text("INSERT INTO t VALUES (2)"))

        waiter = threading.Thread(target=second_writer)
        waiter.start()
        time.sleep(0.3)
        assert started == []  # it waits its turn
        with engine.connect().execution_options(fitserve_read_only=True) as reader:
            assert reader.execute(text("SELECT count(*) FROM t")).scalar() == 0  # reads don't wait
        released = time.perf_counter()
        holder.commit()
        waiter.join(5)
        assert started and started[0] - released < 0.05, started[0] - released

        holder.execute(text("INSERT INTO t VALUES (3)"))
        holder.rollback()  # a rollback frees the turn
        holder.execute(text("INSERT INTO t VALUES (4)"))
        holder.close()  # so does closing a connection mid-transaction
        with engine.begin() as conn:
            assert sorted(conn.execute(text("SELECT n FROM t")).scalars()) == [1, 2]
    finally:
        engine.dispose()


def test_a_sqlite_writer_starts_within_a_millisecond_or_two_of_another_processs_commit(tmp_path):
    """Another process's write transaction (here a plain sqlite3 connection, which shares no lock of ours) is
    waited out by retrying BEGIN IMMEDIATE often, not by SQLite's sleeps of up to 100 ms: the writer starts
    right after the commit, every time."""
    import sqlite3
    import threading

    path = tmp_path / "processes.db"
    engine = make_engine(f"sqlite:///{path}")
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (n INTEGER)"))
        delays = []
        for n in range(5):
            other.execute("BEGIN IMMEDIATE")
            started: list[float] = []

            def writer() -> None:
                with engine.begin() as conn:
                    started.append(time.perf_counter())
                    conn.execute(text("INSERT INTO t VALUES (:n)"), {"n": n})

            thread = threading.Thread(target=writer)
            thread.start()
            time.sleep(0.25)  # SQLite's own wait would be sleeping 100 ms at a time by now
            assert started == []
            released = time.perf_counter()
            other.execute("COMMIT")
            thread.join(5)
            delays.append(started[0] - released)
        assert max(delays) < 0.02, delays
        assert other.execute("SELECT count(*) FROM t").fetchone()[0] == 5
    finally:
        other.close()
        engine.dispose()


def test_a_sqlite_delete_does_not_write_the_pages_it_frees(tmp_path):
    """Deleting a 400 KB blob frees its ~100 overflow pages without writing them (secure_delete=FAST): the WAL
    gets the few pages the delete changes, not the freed ones zeroed."""
    path = tmp_path / "freed.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB)"))
            conn.execute(text("INSERT INTO blobs VALUES (1, :data)"), {"data": bytes(range(256)) * 1600})
        raw = engine.raw_connection()  # autocommit: a checkpoint cannot run inside a transaction
        raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        raw.close()
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM blobs"))
        page = 4096 + 24  # a WAL frame: the page and its header
        assert (path.parent / "freed.db-wal").stat().st_size // page < 10
    finally:
        engine.dispose()
