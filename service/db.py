"""The database engine and the one place that opens sessions."""

import itertools
import logging
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from service.settings import Settings, get_settings

SQLITE_BUSY_MS = 30_000
# waits between a writer's tries at BEGIN IMMEDIATE while another process writes (then the last, repeated):
# a failed try costs microseconds, so a waiter can poll often enough to take a gap of a fraction of a millisecond
BEGIN_RETRY_SECONDS = (0.0001, 0.0002, 0.0005, 0.001)
READ_ONLY = "fitserve_read_only"


class QueuedWriterConnection(sqlite3.Connection):
    """A SQLite connection whose writing transactions queue on a lock shared by one engine's connections.

    SQLite makes a writer that finds the file locked sleep and retry (1, 2, 5 ... 100 ms), however soon the lock
    frees: with several threads of one process writing at once (the API under concurrent submitters), most of a
    request's time went to those sleeps. Threads of a process now wait their turn on a lock that wakes the next at
    once. The thread whose turn it is retries BEGIN IMMEDIATE itself every BEGIN_RETRY_SECONDS while another
    process (a worker, the API) writes: SQLite's own sleeps, up to 100 ms each, made a worker that met a burst of
    submits miss the short gaps between them, and the API wait out a worker's claim plus most of a sleep.
    """

    writer_lock: threading.Lock  # set per engine by make_engine's subclass

    holds_writer_lock = False

    def begin_writing(self) -> None:
        deadline = time.monotonic() + SQLITE_BUSY_MS / 1000
        if not self.writer_lock.acquire(timeout=SQLITE_BUSY_MS / 1000):
            raise sqlite3.OperationalError("database is locked (no turn to write within the busy timeout)")
        self.holds_writer_lock = True
        try:
            self.begin_immediate(deadline)
        except BaseException:
            self.end_writing()
            raise

    def begin_immediate(self, deadline: float) -> None:
        """BEGIN IMMEDIATE, retried while another process holds the write lock, until `deadline` (monotonic)."""
        self.execute("PRAGMA busy_timeout=0")  # this statement alone: the others keep SQLite's wait
        try:
            for retry in itertools.count():
                try:
                    self.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                        raise
                time.sleep(BEGIN_RETRY_SECONDS[min(retry, len(BEGIN_RETRY_SECONDS) - 1)])
        finally:
            self.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")

    def end_writing(self) -> None:
        if self.holds_writer_lock:
            self.holds_writer_lock = False
            self.writer_lock.release()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            if not self.in_transaction:
                self.end_writing()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.end_writing()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.end_writing()


def pool_options(settings: Settings) -> dict:
    """The connection pool's size, from the settings: each process has its own pool."""
    return {
        "pool_size": settings.DB_POOL_SIZE,
        "max_overflow": settings.DB_MAX_OVERFLOW,
        "pool_timeout": settings.DB_POOL_TIMEOUT_SECONDS,
    }


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    settings = get_settings()
    pool = pool_options(settings)
    if parsed.get_backend_name() == "postgresql":
        # A process stopped inside a transaction (SIGSTOP, a frozen host) keeps its row locks; the API's
        # rescue and cancel would wait on them forever. No fitserve transaction idles for a lease, so the
        # server ends such a session after one, and its locks go with it.
        idle = settings.DB_IDLE_IN_TRANSACTION_SECONDS or settings.LEASE_SECONDS
        options = f"-c idle_in_transaction_session_timeout={max(1, round(idle * 1000))}"
        # psycopg prepares a statement from its 6th run on a connection, and after 5 more PostgreSQL may keep a
        # generic plan, blind to the values: an owner's tag filter went from 20 ms to 1.5 s at the 11th call
        # (issue 30). A plan made for the values each time costs a fraction of a millisecond.
        options += " -c plan_cache_mode=force_custom_plan"
        return create_engine(url, pool_pre_ping=True, connect_args={"options": options}, **pool)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, **pool)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    else:
        pool = {}  # an in-memory database lives in one connection: no queue of connections to size
    factory = type("QueuedWriterConnection", (QueuedWriterConnection,), {"writer_lock": threading.Lock()})
    connect_args = {"timeout": SQLITE_BUSY_MS / 1000, "check_same_thread": False, "factory": factory}
    engine = create_engine(url, connect_args=connect_args, **pool)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:
        # let SQLAlchemy, not the driver, begin transactions (see _on_begin)
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        # a new file frees pages a few at a time (services/retention.py); an older one switches at its first VACUUM
        # (setting it takes the write lock even when it is set already: a new connection would wait for any writer)
        if cur.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:  # 2: INCREMENTAL
            cur.execute("PRAGMA auto_vacuum=INCREMENTAL")
        cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        # Debian's SQLite zeroes every page a delete frees (SECURE_DELETE): a retention tick wrote each deleted
        # checkpoint's overflow pages once more, to the WAL and then the file. FAST still clears deleted cells
        # in the pages it writes anyway; freed pages keep their bytes until reused or given back (retention.py)
        cur.execute("PRAGMA secure_delete=FAST")
        if settings.DB_MAX_BYTES:  # past it SQLite answers SQLITE_FULL, as on a full disk (service/db_faults.py)
            page_size = cur.execute("PRAGMA page_size").fetchone()[0]
            cur.execute(f"PRAGMA max_page_count={settings.DB_MAX_BYTES // page_size}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        # A writing transaction takes the write lock up front: a deferred one that reads and then
        # writes can fail with "database is locked" at once, without waiting out the busy timeout.
        # Read-only ones stay deferred, so in WAL mode they never wait for writers nor block them.
        if conn.get_execution_options().get(READ_ONLY):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.connection.dbapi_connection.begin_writing()

    return engine


@lru_cache
def get_engine() -> Engine:
    return make_engine(get_settings().DATABASE_URL)


def exit_without_teardown(code: int = 0) -> None:
    """End this process now that its work is done: logs and output flushed, pooled database connections closed,
    then `os._exit`, skipping the interpreter's teardown. With torch, SQLAlchemy and pydantic loaded that
    teardown (every object freed, module by module) took 0.3 s of CPU and 5-10 s of wall time on a busy 2-core
    host, for each worker, pool and API process at every shutdown and restart."""
    if get_engine.cache_info().currsize:
        get_engine().dispose()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


@lru_cache
def get_sessionmaker(read_only: bool = False) -> sessionmaker[Session]:
    engine = get_engine()
    return sessionmaker(engine.execution_options(**{READ_ONLY: True}) if read_only else engine, expire_on_commit=False)


@contextmanager
def session_scope(read_only: bool = False) -> Iterator[Session]:
    """A session whose work commits at the end, or rolls back on error; `read_only` must not write."""
    session = get_sessionmaker(read_only)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
