"""The real app and the real worker loop in the test's own process: no server to start, no port.

`App` answers as `tests.harness.served.Server` does (`client`, `submit`, `train`, `wait_for`, `query`, `cli`,
`read_log`), so a test that does not need processes, sockets or signals uses it in place of a server:
- the FastAPI app from `service.app.create_app`, its lifespan included, through Starlette's TestClient
  (an httpx client over ASGI) from 127.0.0.1, so loopback rules apply as they do for a served port;
- worker threads that each run `workers.loop.work`, the worker processes' own loop (claims, training,
  leases, hand-backs), registered in the worker registry, on the same database;
- settings from `FITSERVE_*` variables per app, as a served process reads them.

The app's settings and database engine are this process's (`get_settings`, `get_engine` are cached), so one
app is active at a time. A second `make_app` on the same database while one runs adds workers with
settings of their own (as a second `serve` on one database would), sharing the first's client and log; stop
it before the first (the fixtures stop the last made first).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
from pathlib import Path
from typing import ClassVar

from fastapi.testclient import TestClient

from service.db import get_engine, get_sessionmaker
from service.db_faults import FAULTS
from service.logs import FORMAT, JobIdFilter
from service.settings import Settings, get_settings
from tests.harness.calls import BASE_ENV, JobCalls


def forget_process_state() -> None:
    """Drop the cached settings, engine and sessionmakers, and the database faults met: the next use reads the
    environment anew."""
    FAULTS.forget()
    if get_engine.cache_info().currsize:
        get_engine().dispose()
    get_sessionmaker.cache_clear()
    get_engine.cache_clear()
    get_settings.cache_clear()


class WorkerThreads:
    """`count` threads running the worker loop with `settings`, each registered as a worker."""

    def __init__(self, count: int, settings: Settings):
        self.settings = settings
        self.shutdown = threading.Event()
        self.threads = [threading.Thread(target=self.run, name=f"fitserve-worker-{i}", daemon=True) for i in range(count)]
        self.failures: list[BaseException] = []

    def run(self) -> None:
        from service.models import WorkerKind
        from workers.loop import work
        from service.repositories.workers import new_worker_id
        from workers.registry import Registration

        worker_id = new_worker_id()
        try:
            with Registration(worker_id, WorkerKind.POOL, "cpu", self.settings) as registration:
                work(worker_id, self.settings, None, self.shutdown, registration)
        except BaseException as exc:  # the loop never raises in a process; here it fails the test at stop
            logging.getLogger("fitserve.worker").exception("worker %s stopped on an error", worker_id)
            self.failures.append(exc)

    def start(self) -> WorkerThreads:
        for thread in self.threads:
            thread.start()
        return self

    def stop(self, timeout: float) -> None:
        """Ask each to shut down as SIGTERM would (a running job is handed back) and wait for it."""
        self.shutdown.set()
        for thread in self.threads:
            thread.join(timeout)
        alive = [t.name for t in self.threads if t.is_alive()]
        assert not alive, f"worker threads still running {timeout}s after shutdown: {alive}"
        assert not self.failures, f"a worker thread failed: {self.failures[0]!r}"


class App(JobCalls):
    """The app and `workers` worker threads over `db_url`, in this process; see the module's docstring."""

    active: ClassVar[App | None] = None
    started: ClassVar[int] = 0  # apps opened in this test process (the run's summary adds them up)

    def __init__(self, db_path: Path, workers: int = 1, db_url: str | None = None, **env: str):
        self.db_url = db_url or f"sqlite:///{db_path}"
        self.workers = workers
        self.env = {**BASE_ENV, "FITSERVE_DATABASE_URL": self.db_url, "FITSERVE_WORKERS": str(max(workers, 1)), **env}
        self.log_path = db_path.with_suffix(".log")
        self.host: App | None = None  # the app whose client and log this one shares (it only adds workers)
        self.client: TestClient | None = None
        self.worker_threads: WorkerThreads | None = None
        self.saved_env: dict[str, str | None] = {}
        self.handler: logging.Handler | None = None
        self.saved_level = logging.NOTSET
        self.saved_threads = 1

    # ---- lifecycle

    def start(self) -> App:
        running = App.active
        if running is not None:
            assert running.db_url == self.db_url, "one in-process app at a time: stop the other first"
            self.host = running
            self.client, self.log_path = running.client, running.log_path
        else:
            self.open()
        if self.workers:
            self.worker_threads = WorkerThreads(self.workers, self.worker_settings()).start()
        return self

    def open(self) -> None:
        import torch

        from service.app import create_app
        from service.migrations import upgrade
        from workers.devices import threads_per_worker

        self.apply_env()
        self.saved_threads = torch.get_num_threads()
        torch.set_num_threads(get_settings().TORCH_THREADS or threads_per_worker(self.workers))  # as a worker process
        self.capture_log()
        upgrade(self.db_url)  # as `serve` does on start
        # raise_server_exceptions off: a fault answers 500, as over a socket
        self.client = TestClient(
            create_app(), base_url="http://127.0.0.1", raise_server_exceptions=False, client=("127.0.0.1", 50000)
        )
        self.client.__enter__()  # the lifespan: the API's maintenance loop runs as in a served app
        App.active = self
        App.started += 1

    def worker_settings(self) -> Settings:
        """The running app's settings with this one's own variables over them (a second `serve`'s)."""
        own = {name.removeprefix("FITSERVE_"): value for name, value in self.env.items() if name.startswith("FITSERVE_")}
        return Settings(**own) if self.host is not None else get_settings()

    def stop(self, timeout: float = 30.0) -> int:
        """Stop the worker threads, then close the app, even when a thread failed (that failure is raised after):
        an app left open would keep its variables in this process's environment for every later test."""
        try:
            if self.worker_threads is not None:
                threads, self.worker_threads = self.worker_threads, None
                threads.stop(timeout)
        finally:
            if App.active is self:
                self.close()
        return 0

    def close(self) -> None:
        import torch

        App.active = None
        try:
            self.client.__exit__(None, None, None)
        finally:
            torch.set_num_threads(self.saved_threads)
            self.restore_env()
            self.release_log()

    def apply_env(self) -> None:
        self.saved_env = {name: os.environ.get(name) for name in self.env}
        os.environ.update(self.env)
        forget_process_state()

    def restore_env(self) -> None:
        forget_process_state()
        for name, value in self.saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    def capture_log(self) -> None:
        """Every fitserve line of this process (API and workers) to `log_path`, as a served process writes its log."""
        self.handler = logging.FileHandler(self.log_path)
        self.handler.setFormatter(logging.Formatter(FORMAT))
        self.handler.addFilter(JobIdFilter())
        root = logging.getLogger()
        self.saved_level = root.level
        root.setLevel(logging.INFO)
        root.addHandler(self.handler)
        for noisy in ("alembic", "httpx", "matplotlib"):
            logging.getLogger(noisy).setLevel(logging.WARNING)

    def release_log(self) -> None:
        root = logging.getLogger()
        root.removeHandler(self.handler)
        root.setLevel(self.saved_level)
        self.handler.close()

    # ---- what tests call

    def cli(self, *args: str) -> str:
        """Run a `fitserve` command in this process against this app's database; returns what it printed."""
        from fitserve.cli import main

        out, err = io.StringIO(), io.StringIO()
        with contextlib.ExitStack() as stack:
            if App.active is None:  # before start (keys made first): this app's variables for the command alone
                stack.callback(self.restore_env)
                self.apply_env()
            stack.enter_context(contextlib.redirect_stdout(out))
            stack.enter_context(contextlib.redirect_stderr(err))
            code = main(list(args))
        assert code == 0, err.getvalue()
        return out.getvalue()
