"""The calls a test makes on a fitserve, served (`served.Server`) or in this process (`inprocess.App`) alike."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

from sqlalchemy import create_engine, event, text

FINAL = {"succeeded", "failed", "cancelled"}
# every test fitserve's variables: quick reports and polls; one torch thread a worker (small models on a shared
# 2-core machine: more threads only contend)
# FITSERVE_COMPILE off: with `auto` every long job of the suite (cancelled or killed within seconds) would start a
# compile beside it, seconds of CPU in torch's compile processes that it never repays; the choice itself is tested in
# tests/workers/engines/test_compiled.py
BASE_ENV = {"FITSERVE_REPORT_SECONDS": "0.2", "FITSERVE_POLL_SECONDS": "0.2", "FITSERVE_TORCH_THREADS": "1",
            "FITSERVE_COMPILE": "off"}


def wait_until(condition, timeout: float, what: str, log=lambda: "", every: float = 0.05):
    """Poll `condition()` until it returns something true; returns that. Fails naming `what` (or what it returns)."""
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() >= deadline:
            what = what() if callable(what) else what
            raise AssertionError(f"{what}: not so after {timeout}s\n{log()[-3000:]}")
        time.sleep(every)


@contextlib.contextmanager
def statements_run(engine) -> Iterator[list[tuple[str, object]]]:
    """The (statement, parameters) run on `engine` inside the block by the test's own calls: in its thread, or in
    the thread a TestClient serves a request on; not those of fitserve's own threads that share the engine (all
    named `fitserve-…`: in-process workers and their leases, maintenance, webhooks, heartbeats), which may run a
    statement at any moment."""
    statements = []

    def listen(conn, cursor, statement, params, context, many):
        if not threading.current_thread().name.startswith("fitserve-"):
            statements.append((statement, params))

    event.listen(engine, "before_cursor_execute", listen)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", listen)


class JobCalls:
    """Needs `client` (an httpx client), `db_url`, `log_path` and `cli(*args)`."""

    db_url: str

    def create_key(self, owner: str) -> str:
        return self.cli("keys", "create", "--owner", owner).strip().splitlines()[-1]

    def read_log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

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
        last: dict = {}

        def holds():
            last.update(self.client.get(f"/v1/jobs/{job_id}").json())
            return predicate(last)

        wait_until(holds, timeout, lambda: f"job {job_id} ({last.get('status')})", self.read_log)
        return dict(last)

    def wait_until_workers(self, count: int, timeout: float = 60.0) -> list[dict]:
        """Poll the worker registry until `count` workers heartbeat; returns them."""

        def registered():
            workers = self.client.get("/v1/workers").json()["workers"]
            return workers if len(workers) >= count else None

        return wait_until(registered, timeout, f"{count} workers registered", self.read_log, every=0.1)

    def wait_for(self, job_id: str, statuses=FINAL, timeout: float = 120.0) -> dict:
        """Poll the job until its status is one of `statuses`."""
        return self.wait_until(job_id, lambda job: job["status"] in statuses, timeout)

    def wait_for_jobs(self, job_ids: list[str], timeout: float = 120.0) -> None:
        """Poll the database until every one of `job_ids` has ended."""
        marks = ",".join(f"'{job_id}'" for job_id in job_ids)
        sql = f"SELECT count(*) FROM jobs WHERE id IN ({marks}) AND finished_at IS NOT NULL"
        wait_until(lambda: self.query(sql)[0][0] == len(job_ids), timeout, "jobs ended", self.read_log, every=0.1)

    def submit(self, spec: dict) -> dict:
        response = self.client.post("/v1/jobs", json=spec)
        assert response.status_code == 201, response.text
        return response.json()

    def train(self, spec: dict, timeout: float = 120.0) -> dict:
        """Submit and wait until the job ends; returns the final job."""
        return self.wait_for(self.submit(spec)["id"], timeout=timeout)

    def curve(self, job_id: str) -> list[dict]:
        """Every point of the job's curve."""
        return self.client.get(f"/v1/jobs/{job_id}/metrics", params={"max_points": 100_000}).json()["points"]
