"""Fixtures: a real `fitserve serve` process on a free port, over a real database.

The API and worker suites (BACKEND_SUITES) run once per back end in FITSERVE_TEST_DATABASES
(`sqlite`, the default, and/or `postgresql`); every server gets a fresh database of its own: a SQLite
file, or a PostgreSQL database created on FITSERVE_TEST_POSTGRES_URL's server and dropped after.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
FINAL = {"succeeded", "failed", "cancelled"}
BACKEND_SUITES = ("tests/service", "tests/workers", "tests/test_migrations.py")
POSTGRES_URL = os.environ.get("FITSERVE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def backends_wanted() -> list[str]:
    return [name.strip() for name in os.environ.get("FITSERVE_TEST_DATABASES", "sqlite").split(",") if name.strip()]


def pytest_generate_tests(metafunc) -> None:
    """Run each test of the API and worker suites once per back end; the others on the first one only."""
    if "backend" not in metafunc.fixturenames:
        return
    in_suites = Path(metafunc.definition.path).relative_to(ROOT).as_posix().startswith(BACKEND_SUITES)
    # a module that sets ONE_BACKEND = True tests the trainer and the HTTP contract through no statement of its own
    one = getattr(metafunc.module, "ONE_BACKEND", False)
    backends = backends_wanted() if in_suites and not one else backends_wanted()[:1]
    metafunc.parametrize("backend", backends, indirect=True, scope="session")


def postgres_unreachable() -> str | None:
    """Why PostgreSQL cannot be used for tests, or None when it can."""
    try:
        engine = create_engine(POSTGRES_URL)
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:  # no driver, no server, no such role: each means "skip"
        return f"PostgreSQL not reachable at {POSTGRES_URL} ({type(exc).__name__}); set FITSERVE_TEST_POSTGRES_URL"
    return None


class Databases:
    """Fresh databases for test servers on one back end; PostgreSQL ones are dropped by `drop` or `close`."""

    def __init__(self, backend: str):
        self.backend = backend
        self.admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT") if backend == "postgresql" else None
        self.created: set[str] = set()

    def create(self, path: Path) -> str:
        """A new empty database; `path` names the SQLite file (and, for PostgreSQL, only the log)."""
        if self.admin is None:
            return f"sqlite:///{path}"
        name = f"fitserve_test_{uuid.uuid4().hex[:12]}"
        with self.admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
        self.created.add(name)
        return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)

    def drop(self, url: str) -> None:
        name = make_url(url).database
        if self.admin is not None and name in self.created:
            with self.admin.connect() as conn:
                conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            self.created.discard(name)

    def close(self) -> None:
        """Drop what is left (module fixtures' databases) once every server is gone."""
        if self.admin is not None:
            for name in list(self.created):
                self.drop(f"postgresql:///{name}")
            self.admin.dispose()


@pytest.fixture(scope="session")
def backend(request) -> str:
    """The database back end of this test run: `sqlite` or `postgresql`."""
    if request.param not in ("sqlite", "postgresql"):
        raise ValueError(f"FITSERVE_TEST_DATABASES: unknown back end {request.param!r}")
    if request.param == "postgresql" and (reason := postgres_unreachable()):
        pytest.skip(reason)
    return request.param


@pytest.fixture(scope="session")
def databases(backend) -> Databases:
    dbs = Databases(backend)
    yield dbs
    dbs.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`fitserve serve` as a subprocess; `client` speaks real HTTP to it."""

    def __init__(self, db_path: Path, workers: int = 1, host: str = "127.0.0.1", db_url: str | None = None, **env: str):
        self.db_url = db_url or f"sqlite:///{db_path}"
        self.workers = workers
        self.host = host
        self.env = {
            **os.environ,
            "FITSERVE_DATABASE_URL": self.db_url,
            "FITSERVE_REPORT_SECONDS": "0.2",
            "FITSERVE_POLL_SECONDS": "0.2",
            "FITSERVE_TORCH_THREADS": "1",  # small models on a shared 2-core machine: more threads only contend
            **env,
        }
        self.log_path = db_path.with_suffix(".log")
        self.proc: subprocess.Popen | None = None
        self.client: httpx.Client | None = None

    def start(self, timeout: float = 120.0, port: int | None = None) -> Server:
        port = port or free_port()
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fitserve.cli", "serve", "--host", self.host, "--port", str(port),
             "--workers", str(self.workers)],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.read_log()}")
            try:
                if self.client.get("/readyz").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        log = self.read_log()
        self.stop()  # a server that never became ready is not left behind
        raise RuntimeError(f"server not ready in {timeout}s:\n{log}")

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

    def create_key(self, owner: str) -> str:
        return self.cli("keys", "create", "--owner", owner).strip().splitlines()[-1]

    def read_log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def query(self, sql: str, **params) -> list[tuple]:
        """Rows of a SQL statement on this server's database, whichever the back end; committed."""
        engine = create_engine(self.db_url)
        try:
            with engine.begin() as conn:
                result = conn.execute(text(sql), params)
                return [tuple(row) for row in result] if result.returns_rows else []
        finally:
            engine.dispose()

    def wait_until(self, job_id: str, predicate, timeout: float = 120.0) -> dict:
        """Poll the job until `predicate(job)` holds; returns the job."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.client.get(f"/v1/jobs/{job_id}").json()
            if predicate(job):
                return job
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} ({job['status']}) not there after {timeout}s:\n{self.read_log()[-3000:]}")

    def wait_until_workers(self, count: int, timeout: float = 60.0) -> list[dict]:
        """Poll the worker registry until `count` workers heartbeat; returns them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            workers = self.client.get("/v1/workers").json()["workers"]
            if len(workers) >= count:
                return workers
            time.sleep(0.1)
        raise AssertionError(f"{count} workers not registered after {timeout}s:\n{self.read_log()[-3000:]}")

    def wait_for(self, job_id: str, statuses=FINAL, timeout: float = 120.0) -> dict:
        """Poll the job until its status is one of `statuses`."""
        return self.wait_until(job_id, lambda job: job["status"] in statuses, timeout)

    def submit(self, spec: dict) -> dict:
        response = self.client.post("/v1/jobs", json=spec)
        assert response.status_code == 201, response.text
        return response.json()

    def train(self, spec: dict, timeout: float = 120.0) -> dict:
        """Submit and wait until the job ends; returns the final job."""
        return self.wait_for(self.submit(spec)["id"], timeout=timeout)


@pytest.fixture(scope="session")
def server(tmp_path_factory, databases) -> Server:
    """One shared server with two workers; tests keep apart by their own job ids."""
    path = tmp_path_factory.mktemp("shared") / "fitserve.db"
    srv = Server(path, workers=2, db_url=databases.create(path)).start()
    yield srv
    srv.stop()
    databases.drop(srv.db_url)


def keyed_server(tmp_path_factory, databases: Databases, name: str, **env: str):
    """A module's server with one worker and keys for alice and bob (`srv.keys`); stopped and dropped after."""
    path = tmp_path_factory.mktemp(name) / "fitserve.db"
    srv = Server(path, workers=1, db_url=databases.create(path), **env)
    srv.keys = {who: srv.create_key(who) for who in ("alice", "bob")}
    srv.start()
    yield srv
    srv.stop()
    databases.drop(srv.db_url)


def as_(srv: Server, who: str) -> dict:
    """The Authorization header of `who`'s key on `srv`."""
    return {"Authorization": f"Bearer {srv.keys[who]}"}


@pytest.fixture
def make_server(tmp_path, databases):
    """Start servers of a test's own, on its own database (one per `db_name`); all are stopped at the end."""
    started: list[Server] = []
    urls: dict[str, str] = {}

    def make(workers: int = 1, db_name: str = "fitserve.db", **kwargs: str) -> Server:
        if db_name not in urls:
            urls[db_name] = databases.create(tmp_path / db_name)
        srv = Server(tmp_path / db_name, workers=workers, db_url=urls[db_name], **kwargs)
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()
    for url in urls.values():
        databases.drop(url)


def is_spawned_worker(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"spawn_main" in cmdline and b"resource_tracker" not in cmdline


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
    """Worker processes under a server: the spawned leaves of its process tree."""
    children = process_children()
    return [pid for pid in descendants(root_pid) if not children.get(pid) and is_spawned_worker(pid)]
