"""Waking idle workers when work is queued, instead of leaving them to their next poll.

Workers still poll every POLL_SECONDS (the wake-up is a shortcut, never needed for correctness), but
a job submitted to an idle pool starts within milliseconds instead of up to a poll later.

- PostgreSQL: `NOTIFY fitserve_queue` in the submitting transaction (delivered on commit, to workers
  on any machine); each worker LISTENs on a connection of its own.
- SQLite (one machine): each idle worker binds a Unix datagram socket in a directory named after the
  database file; after a submitting commit, the API sends one byte to every socket there. A socket
  whose worker is gone refuses the byte and is removed.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import select
import socket
import tempfile
import threading
import time
import uuid
from pathlib import Path

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

log = logging.getLogger("fitserve.wakeup")
CHANNEL = "fitserve_queue"
PENDING = "fitserve_wake_workers"
STOP_SLICE = 0.25  # seconds an idle worker may take to see a shutdown


@functools.lru_cache(maxsize=8)
def socket_dir(database_url: str) -> Path:
    """Where a SQLite database's idle workers listen: short enough for a Unix socket path."""
    database = Path(make_url(database_url).database or "").resolve()
    digest = hashlib.sha256(str(database).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"fitserve-wake-{digest}"


def is_sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def work_queued(session: Session) -> None:
    """Mark the session's transaction as one that queues work: idle workers are woken when it commits."""
    if is_sqlite(session):
        session.info[PENDING] = str(session.get_bind().url)
    else:
        session.execute(text(f"NOTIFY {CHANNEL}"))


@event.listens_for(Session, "after_commit")
def _wake_after_commit(session: Session) -> None:
    url = session.info.pop(PENDING, None)
    if url is not None:
        wake_sqlite_workers(url)


@event.listens_for(Session, "after_rollback")
def _forget_on_rollback(session: Session) -> None:
    session.info.pop(PENDING, None)


def wake_sqlite_workers(database_url: str) -> None:
    directory = socket_dir(database_url)
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
        sender.setblocking(False)
        for entry in entries:
            try:
                sender.sendto(b"\0", entry.path)
            except (ConnectionRefusedError, FileNotFoundError):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)  # its worker is gone
            except BlockingIOError:
                pass  # its queue is full: it has been woken already


class Listener:
    """What an idle worker waits on: a wake-up, or `timeout` seconds, whichever comes first."""

    def __init__(self, database_url: str):
        self.url = database_url
        self.sock: socket.socket | None = None
        self.conn = None
        if make_url(database_url).get_backend_name() == "sqlite":
            self.open_socket()
        else:
            self.open_listen()

    def open_socket(self) -> None:
        directory = socket_dir(self.url)
        directory.mkdir(mode=0o700, exist_ok=True)
        self.path = directory / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.setblocking(False)

    def open_listen(self) -> None:
        import psycopg

        url = make_url(self.url).set(drivername="postgresql")
        self.conn = psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)
        self.conn.execute(f"LISTEN {CHANNEL}")

    def wait(self, timeout: float, stop: threading.Event) -> bool:
        """True when woken; False after `timeout`, or soon after `stop` is set (looked at every STOP_SLICE)."""
        deadline = time.monotonic() + timeout
        while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
            if self.woken(min(left, STOP_SLICE)):
                return True
        return False

    def woken(self, timeout: float) -> bool:
        """Wait up to `timeout` for a wake-up; drain every one that arrived, so one commit wakes a worker once."""
        if self.sock is not None:
            ready, _, _ = select.select([self.sock], [], [], timeout)
            while ready:
                try:
                    self.sock.recv(16)
                except BlockingIOError:
                    break
            return bool(ready)
        return self.notified(timeout)

    def notified(self, timeout: float) -> bool:
        """PostgreSQL: a NOTIFY within `timeout`; a lost connection is reopened at the next wait, polling meanwhile."""
        import psycopg

        try:
            if self.conn is None:
                self.open_listen()
            return any(True for _ in self.conn.notifies(timeout=timeout, stop_after=1))
        except psycopg.OperationalError as exc:
            log.warning("wake-ups: lost the LISTEN connection (%s); polling until it is back", exc)
            with contextlib.suppress(psycopg.Error):
                if self.conn is not None:
                    self.conn.close()
            self.conn = None
            time.sleep(timeout)
            return False

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        if self.conn is not None:
            self.conn.close()
