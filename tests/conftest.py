"""Fixtures: fitserve over a real database, in this process (`make_app`) or as served processes (`make_server`).

- `make_app`: the real app through an ASGI client and the real worker loop on threads, in the test's own
  process (tests/harness/inprocess.py). Most API and worker tests use it: it starts in well under a second.
- `make_server`, `server`, `keyed_server`: `fitserve serve` as a real process on a free port
  (tests/harness/served.py), for what processes are the point of: signals, kills, the pool, real sockets.

The API and worker suites (BACKEND_SUITES) run once per back end in FITSERVE_TEST_DATABASES
(`sqlite`, the default, and/or `postgresql`); every app or server gets a fresh database of its own: a SQLite
file, or a PostgreSQL database created on FITSERVE_TEST_POSTGRES_URL's server and dropped after.
"""

from __future__ import annotations

import ast
import functools
import inspect
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InternalError

from tests.harness.calls import FINAL, wait_until  # noqa: F401 (tests import them from here)
from tests.harness.inprocess import App
from tests.harness.served import ROOT, Server, descendants, free_port, parent_of, pool_of, worker_pids  # noqa: F401

BACKEND_SUITES = ("tests/service", "tests/workers", "tests/test_migrations.py")
POSTGRES_URL = os.environ.get("FITSERVE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def backends_wanted() -> list[str]:
    return [name.strip() for name in os.environ.get("FITSERVE_TEST_DATABASES", "sqlite").split(",") if name.strip()]


def pytest_configure(config) -> None:
    """One torch thread in the test process, as in every worker the tests start (FITSERVE_TORCH_THREADS=1 in
    tests/harness/calls.py): small models on the shared 2-core machine only contend at more, the more so beside a
    second pytest process (a test of 0.35 s took 11-14 s at 2 threads beside one busy process). Tests of the
    thread choice set their own count."""
    import torch

    torch.set_num_threads(1)


def pytest_generate_tests(metafunc) -> None:
    """Run each test of the API and worker suites once per back end; the others, and those marked `one_backend`,
    on one: the marker's `prefer` where that back end is wanted, else the first."""
    if "backend" not in metafunc.fixturenames:
        return
    wanted = backends_wanted()
    in_suites = Path(metafunc.definition.path).relative_to(ROOT).as_posix().startswith(BACKEND_SUITES)
    one = metafunc.definition.get_closest_marker("one_backend")
    if one is not None and not one.args:
        raise ValueError(f"{metafunc.definition.nodeid}: one_backend needs its reason")
    if in_suites and one is None:
        backends = wanted
    else:
        prefer = one.kwargs.get("prefer") if one is not None else None
        backends = [prefer] if prefer in wanted else wanted[:1]
    metafunc.parametrize("backend", backends, indirect=True, scope="session")


# A served-process test whose subject is a process (a signal, a kill, a restart, a socket): its database statements
# (claims, rescues, hand-backs, checkpoints, counters) are tested on every back end by the in-process suites, so
# it runs on one. Tests where the back end changes what the processes see (concurrent claims, a stopped process
# holding locks, wake-ups) stay on every back end.
processes_only = pytest.mark.one_backend("processes are the subject; its statements run on every back end in-process")


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
    """Fresh databases for test servers on one back end; PostgreSQL ones are dropped by `drop` or `close`.

    A database is made at the schema's head by copying one this run migrated once (a SQLite file; PostgreSQL's
    CREATE DATABASE ... TEMPLATE): the migrations took 0.3-0.6 s an app, and hundreds of apps start in a run.
    Each app and server still runs `upgrade` on start, as `serve` does, and finds it at head; the migrations
    themselves are tested from empty databases (tests/test_migrations.py, `migrated=False`).
    """

    def __init__(self, backend: str):
        self.backend = backend
        self.admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT") if backend == "postgresql" else None
        self.created: set[str] = set()
        self.template: str | None = None  # the migrated SQLite file, or PostgreSQL database, copies come from

    def create(self, path: Path, migrated: bool = True, tablespace: str | None = None) -> str:
        """A new database, at the schema's head unless not `migrated` (then empty); `path` names the SQLite file
        (and, for PostgreSQL, only the log); a PostgreSQL one in `tablespace` where given."""
        if migrated and self.template is None:
            self.template = self.migrated_template(path.parent)
        if self.admin is None:
            if migrated:
                shutil.copyfile(self.template, path)
            return f"sqlite:///{path}"
        name = f"fitserve_test_{uuid.uuid4().hex[:12]}"
        with self.admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}" + (f" TEMPLATE {self.template}" if migrated else "")
                              + (f" TABLESPACE {tablespace}" if tablespace else "")))
        self.created.add(name)
        return self.url_of(name)

    @staticmethod
    def url_of(name: str) -> str:
        return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)

    def migrated_template(self, folder: Path) -> str:
        """A database migrated to head, once a run: a SQLite file with its log folded in, or a PostgreSQL database
        no connection holds (a template must have none)."""
        from service.migrations import upgrade

        if self.admin is None:
            path = folder / f"template-{uuid.uuid4().hex[:8]}.db"
            upgrade(f"sqlite:///{path}")
            with sqlite3.connect(path) as conn:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return str(path)
        name = f"fitserve_template_{uuid.uuid4().hex[:12]}"
        with self.admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
        self.created.add(name)
        upgrade(self.url_of(name))
        with self.admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"),
                         {"name": name})
        return name

    def drop(self, url: str) -> None:
        name = make_url(url).database
        if self.admin is not None and name in self.created:
            self.drop_database(name)
            self.created.discard(name)

    def drop_database(self, name: str, timeout: float = 90.0) -> None:
        """DROP DATABASE, which waits for a checkpoint of the whole server. While a test fills a tablespace's
        disk on purpose (tests/service/test_db_faults.py), the checkpointer cannot write that database's pages and
        every checkpoint fails ("checkpoint request failed") until the test frees the disk: try again until then."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self.admin.connect() as conn:
                    conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                return
            except InternalError as exc:
                if "checkpoint request failed" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

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


@pytest.fixture
def server(make_app) -> App:
    """The test's own in-process app with two workers, on a fresh database."""
    return make_app(workers=2).start()


def shared_app(workers: int = 2, **env: str):
    """A module's own `server` fixture: one in-process app for all the module's tests (per back end), for modules
    whose tests keep apart by their own job ids and compare before with after, never with an empty database.
    Assign it in the module (`server = shared_app()`); no test there may make apps of its own (one runs at a time)."""

    @pytest.fixture(scope="module")
    def server(tmp_path_factory, databases) -> App:
        path = tmp_path_factory.mktemp("shared-app") / "fitserve.db"
        app = App(path, workers=workers, db_url=databases.create(path), **env).start()
        yield app
        app.stop()
        databases.drop(app.db_url)

    return server


@pytest.fixture(scope="session")
def served(tmp_path_factory, databases) -> Server:
    """One shared served process with two workers, for what needs a real socket (streams, the CLI, other
    clients); tests keep apart by their own job ids."""
    path = tmp_path_factory.mktemp("shared") / "fitserve.db"
    srv = Server(path, workers=2, db_url=databases.create(path)).start()
    yield srv
    srv.stop()
    databases.drop(srv.db_url)


def module_server(tmp_path_factory, databases, name: str, workers: int = 0, **env: str) -> Server:
    """A served process of a module's own with `env`'s settings, on a fresh database (not started yet)."""
    path = tmp_path_factory.mktemp(name) / "fitserve.db"
    return Server(path, workers=workers, db_url=databases.create(path), **env)


def train_beside(srv: Server, *specs: dict, headers: dict | None = None, timeout: float = 120.0) -> list[dict]:
    """Train `specs` to their end on `srv`'s database, one after another, with a worker thread of this process (an
    in-process app beside it, as a second `serve` would be); the final jobs. A served process whose tests only read
    trained jobs starts without workers: a pool's start waits for torch to load, about 3x a start without."""
    app = App(srv.log_path.with_name("beside.db"), workers=1, db_url=srv.db_url).start()
    try:
        app.client.headers.update(headers or {})
        return [app.train(spec, timeout=timeout) for spec in specs]
    finally:
        app.stop()


def run_fitserve(srv, *args, timeout: float = 120) -> subprocess.CompletedProcess:
    """`fitserve ARGS` as a process of its own over `srv`'s database and variables: what it printed, its exit status."""
    command = [sys.executable, "-m", "fitserve.cli", *map(str, args)]
    return subprocess.run(command, cwd=ROOT, env={**os.environ, **srv.env}, capture_output=True, text=True,
                          timeout=timeout, check=False)


def corrupt_sqlite_file(path: str, part: str, table: str = "jobs") -> None:
    """Damage a SQLite file at rest as a failing disk would: `header` its first 100 bytes (SQLite no longer knows it),
    `pages` the root pages of `table` and its indexes, the header intact."""
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every page in the file itself
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        roots = [row[0] for row in db.execute("SELECT rootpage FROM sqlite_master WHERE tbl_name = ?", (table,)) if row[0]]
    damaged = [(0, 100)] if part == "header" else [((root - 1) * page_size, page_size) for root in roots]
    with open(path, "r+b") as f:
        for offset, length in damaged:
            f.seek(offset)
            f.write(b"\x55" * length)


def query_plans(engine, run, reads: str, settings: tuple[str, ...] = ()) -> tuple[list[str], object]:
    """The plans of the statements `run()` executes on `engine` whose text holds `reads`, one line a step: SQLite's
    EXPLAIN QUERY PLAN, PostgreSQL's EXPLAIN (planned after the `settings` statements). `run`'s result second."""
    statements = []
    listen = lambda conn, cursor, statement, params, context, many: statements.append((statement, params))
    event.listen(engine, "before_cursor_execute", listen)
    try:
        result = run()
    finally:
        event.remove(engine, "before_cursor_execute", listen)
    explain = "EXPLAIN QUERY PLAN" if engine.dialect.name == "sqlite" else "EXPLAIN"
    with engine.connect() as conn:
        for setting in settings:
            conn.exec_driver_sql(setting)
        plans = [row[-1] for statement, params in statements if reads in statement
                 for row in conn.exec_driver_sql(f"{explain} {statement}", params)]
    return plans, result


def with_keys(srv, owners=("alice", "bob")):
    """`srv` with a key made for each owner (`srv.keys`), before it starts; returns it."""
    srv.keys = {who: srv.create_key(who) for who in owners}
    return srv


@pytest.fixture
def keyed_app(make_app):
    """`keyed_app(workers=1, **env)`: a started in-process app whose database has keys for alice and bob
    (`srv.keys`), so every API call needs one."""
    return lambda workers=1, **env: with_keys(make_app(workers=workers, **env)).start()


def as_(srv: Server, who: str) -> dict:
    """The Authorization header of `who`'s key on `srv`."""
    return {"Authorization": f"Bearer {srv.keys[who]}"}


class PerTestDatabases:
    """A test's own databases by name, shared by the apps and servers it makes; dropped when it ends."""

    def __init__(self, tmp_path: Path, databases: Databases):
        self.tmp_path, self.databases, self.urls = tmp_path, databases, {}

    def url(self, name: str) -> str:
        if name not in self.urls:
            self.urls[name] = self.databases.create(self.tmp_path / name)
        return self.urls[name]

    def drop(self) -> None:
        for url in self.urls.values():
            self.databases.drop(url)


@pytest.fixture
def test_databases(tmp_path, databases):
    dbs = PerTestDatabases(tmp_path, databases)
    yield dbs
    dbs.drop()


def maker(kind, test_databases: PerTestDatabases):
    """`make(workers=1, db_name=..., **env)`: a `kind` of the test's own on its own database (one per `db_name`,
    the same for apps and servers); all it made are stopped at the end, the last made first."""
    started: list = []

    def make(workers: int = 1, db_name: str = "fitserve.db", **kwargs: str):
        path = test_databases.tmp_path / db_name
        srv = kind(path, workers=workers, db_url=test_databases.url(db_name), **kwargs)
        started.append(srv)
        return srv

    yield make
    for srv in reversed(started):
        srv.stop()


@pytest.fixture
def make_server(test_databases):
    """Served `fitserve serve` processes of the test's own (see `maker`)."""
    yield from maker(Server, test_databases)


@pytest.fixture
def make_app(test_databases):
    """In-process apps of the test's own (see `maker`); a second one on the same database while the first
    runs adds workers with settings of their own."""
    yield from maker(App, test_databases)


SERVED_FIXTURES = {"make_server", "served"}
STARTED = pytest.StashKey[dict]()


def starts_served_process(fixturedef) -> bool:
    """Whether a fixture starts `fitserve serve` processes: by name, or a module's own fixture that builds one
    (a `Server(...)`, or through `module_server(...)`)."""
    if fixturedef.argname in SERVED_FIXTURES:
        return True
    try:
        source = inspect.getsource(fixturedef.func)
    except (OSError, TypeError):
        return False
    return "Server(" in source or "module_server(" in source


def pytest_collection_modifyitems(items) -> None:
    """Mark `served` each test that needs a served process (`make test-fast` leaves them out: `-m "not served"`)."""
    for item in items:
        definitions = getattr(item, "_fixtureinfo", None)
        defs = definitions.name2fixturedefs.values() if definitions is not None else ()
        if any(starts_served_process(d) for chain in defs for d in chain):
            item.add_marker(pytest.mark.served)


# Folders whose modules share a package-scoped served process (their conftest.py's): one pytest process takes
# all their files, so the run starts it once, not once in each process that got one of the files.
SHARED_FOLDERS = ("tests/service/dashboard/",)
# The files elsewhere whose tests ask for the session's `served` (above) are handed out together as this one unit:
# it starts once per back end in the run, not once in each pytest process that got one of the files (~9 CPU-s each)
SHARED_SERVED = "tests/ (files on the session's served process)"


@functools.cache
def asks_for_served(path: str) -> bool:
    """Whether a test or fixture of the file at `path` (from the root) takes `served` as an argument."""
    try:
        tree = ast.parse((ROOT / path).read_text())
    except (OSError, SyntaxError):
        return False  # pytest reports it as it collects
    functions = (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))
    return any(arg.arg == "served" for function in functions for arg in function.args.args)


def unit_of(path: str) -> str:
    """The unit of work xdist hands to one pytest process for the test file at `path` (from the root): the file,
    or the folder of SHARED_FOLDERS it is in, or SHARED_SERVED."""
    folder = next((folder for folder in SHARED_FOLDERS if path.startswith(folder)), None)
    return folder or (SHARED_SERVED if asks_for_served(path) else path)


# Seconds each unit took in a CI run (`python -m tests.harness.durations JUNIT_XML` writes it from a run with
# --junitxml). The units are handed out longest first, so the few long files of served tests (the pool, self-healing,
# Ray, the fuzzing) do not start last and leave the other processes idle at the end. Only the order depends on it:
# a unit it does not name counts UNKNOWN_TEST_SECONDS a test.
DURATIONS = ROOT / "tests" / "durations.json"
UNKNOWN_TEST_SECONDS = 1.0


# after pytest's own order (by back end), kept within each unit, and after `-m` has deselected
@pytest.hookimpl(specname="pytest_collection_modifyitems", trylast=True)
def pytest_order_longest_units_first(config, items) -> None:
    """In an xdist worker (`make test`), order the items unit by unit, the longest unit first (DURATIONS): the
    controller hands the units out in the order the workers collected them."""
    if not hasattr(config, "workerinput"):
        return
    units = [unit_of(item.nodeid.split("::", 1)[0]) for item in items]
    known = json.loads(DURATIONS.read_text()) if DURATIONS.exists() else {}
    counts: dict[str, int] = {}
    for unit in units:
        counts[unit] = counts.get(unit, 0) + 1
    cost = {unit: known.get(unit, UNKNOWN_TEST_SECONDS * count) for unit, count in counts.items()}
    order = sorted(range(len(items)), key=lambda i: -cost[units[i]])  # stable: a unit's own order is kept
    items[:] = [items[i] for i in order]


def pytest_xdist_make_scheduler(config, log):
    """`--dist loadfile` (`make test`), with each of SHARED_FOLDERS handed out whole, as if it were one file, and
    the files on the session's `served` as one more (`unit_of`); the units in the items' order, longest first."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    config.option.loadscopereorder = False  # xdist would order the units by their count of tests

    class LoadFileOrFolder(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return unit_of(super()._split_scope(nodeid))

    return LoadFileOrFolder(config, log)


def started_counts() -> dict[str, int]:
    return {"served": Server.started, "in-process": App.started}


def pytest_sessionfinish(session) -> None:
    """An xdist worker hands its counts to the controller."""
    if hasattr(session.config, "workeroutput"):
        session.config.workeroutput["started"] = started_counts()


def pytest_testnodedown(node, error) -> None:
    totals = node.config.stash.setdefault(STARTED, {})
    for kind, count in node.workeroutput.get("started", {}).items():
        totals[kind] = totals.get(kind, 0) + count


def pytest_terminal_summary(terminalreporter, config) -> None:
    """How many served processes and in-process apps the run started: the first is what makes a run slow."""
    totals = config.stash.get(STARTED, None) or started_counts()
    terminalreporter.write_line(
        f"fitserve started: {totals.get('served', 0)} served processes, {totals.get('in-process', 0)} in-process apps"
    )


@pytest.fixture
def worker_here(make_app):
    """An in-process app without workers (for HTTP), and its settings: the test claims and trains in its own
    thread (`claim_and_train`)."""
    from service.settings import get_settings

    return make_app(workers=0).start(), get_settings()


def claim_and_train(settings, worker_id: str = "test-worker") -> None:
    """Claim what is queued in the current app's database and train it in this thread, as a worker's loop does."""
    from workers.claims import claim
    from workers.loop import train

    jobs = claim(worker_id, settings)
    assert jobs, "nothing was queued"
    train(jobs, worker_id, settings, None, threading.Event())


def train_sweep_here(srv, settings, body: dict) -> tuple[dict, list[dict]]:
    """Submit the sweep `body` to `worker_here`'s app and train it in this thread (`claim_and_train`): the sweep and
    its members, as the API shows them."""
    response = srv.client.post("/v1/sweeps", json=body)
    assert response.status_code == 201, response.text
    claim_and_train(settings)
    sweep = srv.client.get(f"/v1/sweeps/{response.json()['id']}").json()
    return sweep, [srv.client.get(f"/v1/jobs/{row['job_id']}").json() for row in sweep["leaderboard"]]


def register_gpu(worker_id: str, total: int, free: int | None = None, device: str = "cuda:0", kind=None) -> None:
    """A GPU worker's registry row in the current app's database, written by the real registration as it is on a
    GPU machine: only the probe of the GPU (none here) answers `total` and `free` bytes of memory."""
    from unittest import mock

    from service.models import WorkerKind
    from service.settings import get_settings
    from workers.registry import Registration

    kind = kind or WorkerKind.POOL
    registration = Registration(worker_id, kind, device, get_settings(), gpu=int(device.split(":")[1]))
    with mock.patch("workers.registry.gpu_memory", return_value=(total, total if free is None else free)):
        registration.write()


class Receiver:
    """A webhook receiver: a real HTTP server on a thread of this process, answering `status` after `delay` s."""

    def __init__(self, status: int = 200, delay: float = 0.0):
        self.status, self.delay, self.posts, self.answered = status, delay, [], 0
        self.release = threading.Event()  # frees a slow answer at the end of the test
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.posts.append(({k.lower(): v for k, v in self.headers.items()}, body))
                receiver.release.wait(receiver.delay)
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                receiver.answered += 1

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def events(self) -> list[tuple[str, dict]]:
        return [(headers["x-fitserve-event"], json.loads(body)) for headers, body in self.posts]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made = []

    def make(**kwargs) -> Receiver:
        made.append(Receiver(**kwargs))
        return made[-1]

    yield make
    for each in made:
        each.close()
