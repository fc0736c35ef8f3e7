"""Faults of the database itself, not of a request: its disk is full, or its file is corrupt.

`database_fault` tells them from a statement's own errors by the driver's code (SQLite's SQLITE_FULL, SQLITE_CORRUPT,
SQLITE_NOTADB; PostgreSQL's SQLSTATE 53100 disk_full, XX001 and XX002 data or index corrupted) and gives the error to
answer: 507 for a full disk, 503 for a corrupt database, each saying what to do. `FAULTS` remembers the last one this
process met, so /readyz names it, and logs one line when a fault begins (not at each write that meets it).
/readyz finds a full disk before any write does: SQLite's room is measured (`sqlite_low_room`); PostgreSQL's disk
is the server's, so `SpillProbe` makes the server write a small temporary file there and meets its answer.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

from sqlalchemy import Connection
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from service.errors import DatabaseCorrupt, FitserveError, InsufficientStorage, ServerBusy
from service.settings import get_settings

SQLITE_FULL, SQLITE_CORRUPT, SQLITE_NOTADB = 13, 11, 26  # primary result codes (the low byte of an extended one)
PG_DISK_FULL = "53100"
PG_CORRUPT = ("XX001", "XX002")  # data_corrupted, index_corrupted
# a full disk is named this long after a write last met it (space may be freed meanwhile); a corrupt database until
# the process restarts, as restoring one needs a stop
FULL_REMEMBERED_SECONDS = 30.0
# SQLite: /readyz names the disk once less than this is left to the file (the disk's free space, FITSERVE_DB_MAX_BYTES)
LOW_ROOM_BYTES = 1024 * 1024
# PostgreSQL: /readyz probes the disk at most this often (about 3 ms a probe); a full disk it met stays named in
# FAULTS meanwhile, as this is under FULL_REMEMBERED_SECONDS
PROBE_SECONDS = 5.0
# a sort of 10,000 integers at work_mem's floor spills about 144 kB to a temporary file in the database's own
# tablespace (temp_tablespaces '' means it), where its tables grow: on a full disk the write fails with SQLSTATE
# 53100 "could not write to file ... No space left on device", and nothing of the database is written
PROBE_SETTINGS = ("SELECT set_config('work_mem', '64kB', true), set_config('temp_tablespaces', '', true), "
                  "set_config('statement_timeout', '1s', true)")
PROBE_SPILL = "SELECT count(*) FROM (SELECT g FROM generate_series(1, 10000) g ORDER BY g DESC) AS spilled"

log = logging.getLogger("fitserve.db")


def driver_errors(exc: BaseException):
    """`exc` and the errors it wraps (SQLAlchemy's `orig`, a `raise ... from`), the driver's among them."""
    for _ in range(5):
        if exc is None:
            return
        yield exc
        exc = getattr(exc, "orig", None) or exc.__cause__


def fault_kind(exc: BaseException) -> str | None:
    """"full", "corrupt", or None for any other error."""
    for err in driver_errors(exc):
        if isinstance(err, sqlite3.Error) and getattr(err, "sqlite_errorcode", None) is not None:
            code = err.sqlite_errorcode & 0xFF
            return {SQLITE_FULL: "full", SQLITE_CORRUPT: "corrupt", SQLITE_NOTADB: "corrupt"}.get(code)
        sqlstate = getattr(err, "sqlstate", None) or getattr(err, "pgcode", None)  # psycopg, psycopg2
        if isinstance(sqlstate, str):
            return "full" if sqlstate == PG_DISK_FULL else "corrupt" if sqlstate in PG_CORRUPT else None
    return None


def where(url: str) -> str:
    """The database as an operator finds it: a SQLite file's path, else the URL without its password."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return parsed.render_as_string(hide_password=True)
    return ":memory:" if parsed.database in (None, "", ":memory:") else str(Path(parsed.database).resolve())


def disk_full(url: str) -> InsufficientStorage:
    cap = get_settings().DB_MAX_BYTES
    if make_url(url).get_backend_name() == "sqlite":
        room = f"the file at FITSERVE_DB_MAX_BYTES={cap}, or " if cap else ""
        room += "the disk holding " + where(url)
    else:
        room = "the disk of the PostgreSQL server at " + where(url)
    return InsufficientStorage(
        f"the database's disk is full ({room}): nothing more can be written until space is freed; reads work; "
        "deleting jobs, sweeps or datasets frees space while the database can still log a delete, else free space "
        "on its disk (see README, Operations: A full disk)"
    )


def corrupt(url: str, why: str) -> DatabaseCorrupt:
    if make_url(url).get_backend_name() != "sqlite":
        return DatabaseCorrupt(
            f"the database at {where(url)} is corrupt ({why}); restore it from a pg_dump: pg_restore into an empty "
            "database, then point FITSERVE_DATABASE_URL at it (see README, Operations: Backups)"
        )
    path = where(url)
    return DatabaseCorrupt(
        f"the database {path} is corrupt ({why}); restore it from a backup (`fitserve db backup PATH` makes one): "
        f"stop fitserve, delete {path}-wal and {path}-shm, copy the backup over {path}, start fitserve again "
        "(see README, Operations: Backups)"
    )


def database_fault(exc: BaseException, url: str | None = None) -> FitserveError | None:
    """The error to answer for a fault of the database itself (of `url`, by default the settings'), or None."""
    kind = fault_kind(exc)
    if kind is None:
        return None
    url = url or get_settings().DATABASE_URL
    if kind == "full":
        return disk_full(url)
    why = next((str(e) for e in driver_errors(exc) if isinstance(e, sqlite3.Error) or hasattr(e, "sqlstate")), str(exc))
    return corrupt(url, why.strip().splitlines()[0][:200])


class FaultMemory:
    """The last database fault this process met, and when; one log line when one begins."""

    def __init__(self):
        self.lock = threading.Lock()
        self.fault: FitserveError | None = None
        self.met_at = 0.0

    def meet(self, exc: BaseException) -> FitserveError | None:
        """The fault `exc` is (then remembered, and logged if it begins one), or None for any other error."""
        fault = database_fault(exc)
        if fault is None:
            return None
        with self.lock:
            begins = self.current_locked() is None or type(self.fault) is not type(fault)
            self.fault, self.met_at = fault, time.monotonic()
        if begins:
            log.error("%s", fault.detail)
        return fault

    def current(self) -> FitserveError | None:
        with self.lock:
            return self.current_locked()

    def current_locked(self) -> FitserveError | None:
        if isinstance(self.fault, InsufficientStorage) and time.monotonic() - self.met_at > FULL_REMEMBERED_SECONDS:
            self.fault = None
        return self.fault

    def forget(self) -> None:
        with self.lock:
            self.fault = None


FAULTS = FaultMemory()
DATABASE_ERRORS = (DBAPIError, PoolTimeout)  # what `answer_for` may turn into an answer


def answer_for(exc: BaseException) -> FitserveError | None:
    """The answer to a request that met `exc` on the database's side, wherever it met it (a route, or the key's
    lookup before any route): busy (503, retry), a full disk (507), a corrupt database (503); None for any other
    error, which stays a 500."""
    return ServerBusy() if isinstance(exc, PoolTimeout) else FAULTS.meet(exc)


class SpillProbe:
    """PostgreSQL's disk as /readyz finds it: full when a spill to a temporary file there fails for want of space,
    probed at most once each PROBE_SECONDS a database."""

    def __init__(self):
        self.lock = threading.Lock()  # held while probing: concurrent /readyz calls wait for one probe's answer
        self.probed_at: dict[str, float] = {}

    def full_disk(self, conn: Connection, url: str) -> InsufficientStorage | None:
        """A full disk that a probe (now, or one within PROBE_SECONDS) met; met as a write's is, so FAULTS keeps
        it and logs it once."""
        with self.lock:
            last = self.probed_at.get(url)
            if last is not None and time.monotonic() - last < PROBE_SECONDS:
                return None  # a full disk the last probe met is FAULTS' to name
            self.probed_at[url] = time.monotonic()
            error = spill(conn)
        return FAULTS.meet(error) if error is not None and fault_kind(error) == "full" else None


def spill(conn: Connection) -> DBAPIError | None:
    """The error the probe's sort met spilling to a temporary file, or None when it had room. Only 53100 names a
    full disk: another (a temp_file_limit under the spill, the statement_timeout on a stalled disk) names nothing."""
    conn.rollback()  # the settings are the probe's own transaction's
    try:
        with conn.begin():
            conn.exec_driver_sql(PROBE_SETTINGS)
            conn.exec_driver_sql(PROBE_SPILL)
    except DBAPIError as exc:
        return exc
    return None


PROBE = SpillProbe()


def readiness_fault(conn: Connection, url: str) -> FitserveError | None:
    """The fault /readyz names: a corrupt database this process met; a full disk as SQLite's room measures it now,
    else (PostgreSQL's disk is the server's) one met within FULL_REMEMBERED_SECONDS or by the probe."""
    met = FAULTS.current()
    parsed = make_url(url)
    if isinstance(met, DatabaseCorrupt):
        return met
    if parsed.get_backend_name() == "sqlite":
        return met if parsed.database in (None, "", ":memory:") else sqlite_low_room(conn, url)
    return met or PROBE.full_disk(conn, url)


def sqlite_low_room(conn: Connection, url: str) -> InsufficientStorage | None:
    """A full disk before any write meets it: under LOW_ROOM_BYTES left on the file's disk or to its cap."""
    parsed = make_url(url)
    page_size, pages, max_pages, free_pages = (
        conn.exec_driver_sql(f"PRAGMA {name}").scalar()
        for name in ("page_size", "page_count", "max_page_count", "freelist_count")
    )
    disk = os.statvfs(Path(parsed.database).resolve().parent)
    reusable = free_pages * page_size
    room = min((max_pages - pages) * page_size + reusable, disk.f_bavail * disk.f_frsize + reusable)
    return disk_full(url) if room < LOW_ROOM_BYTES else None
