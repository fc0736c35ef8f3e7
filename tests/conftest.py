"""Fixtures: a real `fitserve serve` process on a free port, over a real SQLite file."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
FINAL = {"succeeded", "failed", "cancelled"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`fitserve serve` as a subprocess; `client` speaks real HTTP to it."""

    def __init__(self, db_path: Path, workers: int = 1, host: str = "127.0.0.1", **env: str):
        self.db_url = f"sqlite:///{db_path}"
        self.workers = workers
        self.host = host
        self.env = {
            **os.environ,
            "FITSERVE_DATABASE_URL": self.db_url,
            "FITSERVE_REPORT_SECONDS": "0.2",
            "FITSERVE_POLL_SECONDS": "0.2",
            **env,
        }
        self.log_path = db_path.with_suffix(".log")
        self.proc: subprocess.Popen | None = None
        self.client: httpx.Client | None = None

    def start(self, timeout: float = 60.0, port: int | None = None) -> Server:
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
        raise RuntimeError(f"server not ready in {timeout}s:\n{self.read_log()}")

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

    def create_key(self, owner: str) -> str:
        return self.cli("keys", "create", "--owner", owner).strip().splitlines()[-1]

    def read_log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_until(self, job_id: str, predicate, timeout: float = 120.0) -> dict:
        """Poll the job until `predicate(job)` holds; returns the job."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.client.get(f"/v1/jobs/{job_id}").json()
            if predicate(job):
                return job
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} ({job['status']}) not there after {timeout}s:\n{self.read_log()[-3000:]}")

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
def server(tmp_path_factory) -> Server:
    """One shared server with two workers; tests keep apart by their own job ids."""
    srv = Server(tmp_path_factory.mktemp("shared") / "fitserve.db", workers=2).start()
    yield srv
    srv.stop()


@pytest.fixture
def make_server(tmp_path):
    """Start servers of a test's own, on its own database file; all are stopped at the end."""
    started: list[Server] = []

    def make(workers: int = 1, db_name: str = "fitserve.db", **kwargs: str) -> Server:
        srv = Server(tmp_path / db_name, workers=workers, **kwargs)
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


def is_spawned_worker(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"spawn_main" in cmdline and b"resource_tracker" not in cmdline


def worker_pids(root_pid: int) -> list[int]:
    """Worker processes under a server: the spawned leaves of its process tree."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    leaves, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        kids = children.get(pid, [])
        if not kids and pid != root_pid and is_spawned_worker(pid):
            leaves.append(pid)
        todo.extend(kids)
    return leaves
