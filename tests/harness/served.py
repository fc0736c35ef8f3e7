"""`fitserve serve` as a real process on a free port, and the process tree it starts (for signals and kills)."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx

from fitserve.calls import KEEPALIVE_SECONDS
from tests.harness.calls import BASE_ENV, JobCalls

ROOT = Path(__file__).resolve().parents[2]


PORT_TRIES = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def record_start(seconds: float) -> None:
    """Where FITSERVE_TEST_STARTS_LOG names a file, append the current test's id and how long its start took
    (tab-separated): which tests pay for served processes."""
    log = os.environ.get("FITSERVE_TEST_STARTS_LOG")
    if log:
        test = os.environ.get("PYTEST_CURRENT_TEST", "?").rsplit(" ", 1)[0]
        with open(log, "a") as f:
            f.write(f"{test}\t{seconds:.2f}\n")


class Server(JobCalls):
    """`fitserve serve` as a subprocess; `client` speaks real HTTP to it."""

    started = 0  # processes started in this test process (the run's summary adds them up)

    def __init__(self, db_path: Path, workers: int = 1, host: str = "127.0.0.1", db_url: str | None = None, **env: str):
        self.db_url = db_url or f"sqlite:///{db_path}"
        self.workers = workers
        self.host = host
        self.env = {
            **os.environ,
            "FITSERVE_DATABASE_URL": self.db_url,
            **BASE_ENV,
            **env,
        }
        self.log_path = db_path.with_suffix(".log")
        self.proc: subprocess.Popen | None = None
        self.client: httpx.Client | None = None

    def start(self, timeout: float = 120.0, port: int | None = None) -> Server:
        """Serve on `port`, or on a free one: another process may take a free port between `free_port` and the
        server's bind, and then this one exits (address already in use) and starts again on another."""
        Server.started += 1
        began = time.monotonic()
        for _ in range(PORT_TRIES if port is None else 1):
            if self.launch(port or free_port(), began + timeout):
                record_start(time.monotonic() - began)
                return self
        raise RuntimeError(f"no free port in {PORT_TRIES} tries:\n{self.read_log()}")

    def launch(self, port: int, deadline: float) -> bool:
        """Start `serve` on `port`; True once it listens there and is ready, False if the port was taken."""
        self.log = open(self.log_path, "ab")
        logged = self.log.tell()  # where this start's lines begin: the log of an earlier start is kept above
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fitserve.cli", "serve", "--host", self.host, "--port", str(port),
             "--workers", str(self.workers)],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                                   limits=httpx.Limits(keepalive_expiry=KEEPALIVE_SECONDS))
        listening = f":{port} (Press CTRL+C to quit)"  # uvicorn's line once it holds the port: ready is ours
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                if "address already in use" in self.log_since(logged):
                    self.stop()
                    return False
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.read_log()}")
            try:
                if listening in self.log_since(logged) and self.client.get("/readyz").status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        log = self.read_log()
        self.stop()  # a server that never became ready is not left behind
        raise RuntimeError(f"server not ready in time:\n{log}")

    def log_since(self, offset: int) -> str:
        with open(self.log_path, "rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.client.close()
        self.log.close()
        self.proc = None
        return code

    def cli(self, *args: str) -> str:
        """Run a `fitserve` command against this server's database; returns what it printed."""
        done = subprocess.run(
            [sys.executable, "-m", "fitserve.cli", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def freeze(self, pids: list[int], timeout: float = 30.0) -> None:
        """SIGSTOP `pids` at a moment none of them holds SQLite's write lock.

        A process stopped inside a write transaction keeps the file's one write lock, and every other
        writer (the API's cancel and rescue too) waits on it: SQLite has no way to take it back. On
        PostgreSQL the server ends such a session after DB_IDLE_IN_TRANSACTION_SECONDS, so any moment will do.
        """
        deadline = time.monotonic() + timeout
        while True:
            for pid in pids:
                os.kill(pid, signal.SIGSTOP)
            if not self.db_url.startswith("sqlite") or self.write_lock_free():
                return
            for pid in pids:
                os.kill(pid, signal.SIGCONT)
            assert time.monotonic() < deadline, "the write lock was never free"
            time.sleep(0.01)

    def write_lock_free(self) -> bool:
        conn = sqlite3.connect(self.db_url.removeprefix("sqlite:///"), timeout=0.5, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            return True
        except sqlite3.OperationalError:  # "database is locked": a stopped process holds it
            return False
        finally:
            conn.close()


FORKSERVER = b"multiprocessing.forkserver"


def cmdline(pid: int | None) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def parent_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return None


def is_worker(pid: int) -> bool:
    """A pool's worker process: forked by the pool's fork server (a child of multiprocessing's forkserver process,
    which runs the same command line)."""
    return FORKSERVER in cmdline(pid) and FORKSERVER in cmdline(parent_of(pid))


def pool_of(worker: int) -> int:
    """The pool process a worker belongs to: its fork server's parent."""
    return parent_of(parent_of(worker))


def process_children() -> dict[int, list[int]]:
    """Every process's children, read from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return children


def descendants(root_pid: int) -> list[int]:
    """Every process under `root_pid` (a server's pool, workers, multiprocessing's resource tracker)."""
    children, found, todo = process_children(), [], [root_pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found.extend(kids)
        todo.extend(kids)
    return found


def worker_pids(root_pid: int) -> list[int]:
    """Worker processes under a server (forked by its pool's fork server)."""
    return [pid for pid in descendants(root_pid) if is_worker(pid)]
