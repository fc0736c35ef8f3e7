"""What the benchmarks share: a `fitserve serve` subprocess, the tutorial specs, tables and the machine."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.json"))
FINAL = {"succeeded", "failed", "cancelled"}
READY_SECONDS = 300  # a worker's start (spawn, torch's imports) takes over a minute on a loaded shared machine


def load_example(path: Path, epochs_scale: float = 1.0) -> dict:
    spec = json.loads(path.read_text())
    spec["epochs"] = max(1, round(spec["epochs"] * epochs_scale))
    return spec


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """`fitserve serve` on a free port over its own SQLite file, as a user runs it."""

    def __init__(self, workers: int = 1, owners: tuple[str, ...] = (), root: Path = ROOT, **env: str):
        """`owners`: API keys created for these owners before the start; `submit` takes one's name. `root`: the
        source tree served (another checkout serves an earlier commit for a before/after comparison)."""
        self.root = root
        self.dir = tempfile.TemporaryDirectory(prefix="fitserve-bench-")
        self.port = free_port()
        self.env = {
            **os.environ,
            "FITSERVE_DATABASE_URL": f"sqlite:///{self.dir.name}/fitserve.db",
            # the benchmarks send faster than a caller may by default: they measure the work, not the limiter
            "FITSERVE_RATE_LIMIT_PER_SECOND": "1000000",
            "FITSERVE_RATE_LIMIT_BURST": "1000000",
            **env,
        }
        self.workers = workers
        self.owners = owners
        self.keys: dict[str, str] = {}
        self.proc: subprocess.Popen | None = None
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=60)

    def create_keys(self) -> None:
        for owner in self.owners:
            done = subprocess.run(
                [sys.executable, "-m", "fitserve.cli", "keys", "create", "--owner", owner],
                cwd=self.root, env=self.env, capture_output=True, text=True, check=True,
            )
            self.keys[owner] = done.stdout.strip().splitlines()[-1]

    def __enter__(self) -> Service:
        self.create_keys()
        cmd = [sys.executable, "-m", "fitserve.cli", "serve", "--port", str(self.port), "--workers", str(self.workers)]
        self.log = open(Path(self.dir.name) / "serve.log", "wb")
        self.proc = subprocess.Popen(cmd, cwd=self.root, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"fitserve serve exited:\n{self.read_log()}")
            try:
                if self.client.get("/readyz").status_code == 200:
                    self.warm_up()
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"fitserve serve not ready in {READY_SECONDS}s:\n{self.read_log()}")

    def warm_up(self) -> None:
        """A one-epoch job per worker, waited for: what is measured next does not pay for the workers' start
        (a process spawn, torch's imports, ~2-5 s on this machine), which the API's readiness does not wait for."""
        spec = {**load_example(EXAMPLES[0]), "epochs": 1}
        for job_id in [self.submit(spec) for _ in range(self.workers)]:
            self.wait(job_id, poll=0.05, timeout=120)

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.client.close()
        self.log.close()
        self.dir.cleanup()

    def read_log(self) -> str:
        return (Path(self.dir.name) / "serve.log").read_text(errors="replace")

    def headers(self, owner: str | None) -> dict:
        owner = owner or next(iter(self.keys), None)
        return {"Authorization": f"Bearer {self.keys[owner]}"} if owner else {}

    def submit(self, spec: dict, owner: str | None = None) -> str:
        response = self.client.post("/v1/jobs", json=spec, headers=self.headers(owner))
        response.raise_for_status()
        return response.json()["id"]

    def get(self, job_id: str, owner: str | None = None) -> dict:
        return self.client.get(f"/v1/jobs/{job_id}", headers=self.headers(owner)).json()

    def wait(self, job_id: str, poll: float = 0.01, timeout: float = 3600, owner: str | None = None) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.get(job_id, owner)
            if job["status"] in FINAL:
                if job["status"] != "succeeded":
                    raise RuntimeError(f"job {job_id} {job['status']}: {job['error']}")
                return job
            time.sleep(poll)
        raise TimeoutError(f"job {job_id} still running after {timeout}s")

    def train(self, spec: dict, poll: float = 0.25) -> tuple[float, float, dict]:
        """Submit and wait: seconds end to end, seconds the worker trained (finished_at - started_at), the job.

        End to end runs from just before the POST to the job's `finished_at` (the server's clock is this
        machine's): the poll, every `poll` seconds, neither adds its interval nor takes a core from the job.
        Polled every 10 ms, example 2 trained 1.9x slower than polled every 0.25 s (0.685 against 0.364 s on a
        quiet 2-core machine): the API answers each poll on a core the job's threads share.
        """
        start = datetime.now(timezone.utc)
        job = self.wait(self.submit(spec), poll=poll)
        wall = (datetime.fromisoformat(job["finished_at"]) - start).total_seconds()
        return wall, seconds_between(job["started_at"], job["finished_at"]), job

    def pids(self) -> dict[str, list[int]]:
        """The API process and its worker processes (children of the pool)."""
        children = child_pids(self.proc.pid)
        workers = [pid for child in children for pid in child_pids(child)]
        return {"api": [self.proc.pid], "workers": workers}


def child_pids(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def machine() -> str:
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((line.split(":", 1)[1].strip() for line in lines if "model name" in line), platform.processor())
    import torch

    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}"


def print_table(headers: list[str], rows: list[list]) -> None:
    """A Markdown table, ready for RESULTS.md."""
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")


def fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def header(title: str) -> None:
    print(f"## {title}\n\n{datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; {machine()}\n")


def load_average() -> str:
    """The 1, 5 and 15 minute load averages: the machine is shared, so every table says what it ran under."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])
