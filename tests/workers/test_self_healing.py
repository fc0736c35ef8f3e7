"""Self-healing: no process death leaves work stuck, and /readyz says the truth.

Each test kills or stops real processes of a real `fitserve serve` and watches what the service does.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from pathlib import Path

from tests.conftest import descendants, parent_of, pool_of, processes_only, wait_until, worker_pids
from tests.specs import FAST_FAULTS, KILLABLE_EPOCHS, long_job, tiny_regression
from tests.workers.test_pool import assert_contiguous_curve, wait_for_epoch

LEASE, SWEEP = float(FAST_FAULTS["FITSERVE_LEASE_SECONDS"]), float(FAST_FAULTS["FITSERVE_SWEEP_SECONDS"])


def pool_pid(srv) -> int:
    """The pool's supervisor: the child of `serve` that has worker processes under it."""
    [pid] = {pool_of(worker) for worker in worker_pids(srv.proc.pid)}
    return pid


def live_workers(srv) -> list[dict]:
    return srv.client.get("/v1/workers").json()["workers"]


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


def long_epoch_job(rows: int, epochs: int = 1) -> dict:
    """Mini-batches of one row: a single epoch is `rows` optimizer steps."""
    return tiny_regression(
        epochs=epochs, batch_size=1, optimizer={"kind": "sgd", "lr": 0.001},
        data={"source": "synthetic", "generator": "linear", "n": rows},
    )


@processes_only
def test_a_killed_pool_supervisor_is_restarted_and_the_new_pool_runs_a_sweep_without_loading_torch(make_server):
    """The pool only supervises and sweeps: it keeps torch (~200 MB) out, through a TPE sweep's rounds, which the
    pool's sweep advances; its workers load it. Killed, it is restarted, and that pool is the one checked."""
    from tests.service.api.test_sweeps import CUBIC, submit_sweep, sweep_body, wait_sweep

    srv = make_server(workers=1, **FAST_FAULTS).start()
    [before] = live_workers(srv)
    orphan = before["pid"]
    os.kill(pool_pid(srv), signal.SIGKILL)
    # the orphaned worker exits by itself; the restarted pool registers a worker of its own
    wait_for(lambda: orphan not in worker_pids(srv.proc.pid) and not Path(f"/proc/{orphan}").exists(), 15, "orphan exits")
    [after] = wait_for(lambda: [w for w in live_workers(srv) if w["pid"] != orphan] or None, 30, "a new worker")
    assert after["id"] != before["id"] and after["kind"] == "pool"
    assert re.search(r"fitserve-pool \(pid \d+\) died with exit code -9 .* restarting in", srv.read_log())

    body = sweep_body({"lr": {"distribution": "log_uniform", "low": 0.001, "high": 0.03}}, base={**CUBIC, "epochs": 5},
                      search="tpe", count=3, search_seed=1, tpe={"rounds": 2})
    done = wait_sweep(srv, submit_sweep(srv, body)["id"])
    assert done["status"] == "succeeded" and done["progress"]["succeeded"] == 6, done
    assert [w["pid"] for w in live_workers(srv)] == [after["pid"]]  # never two pools' workers at once
    [worker] = worker_pids(srv.proc.pid)
    pool = pool_of(worker)
    assert b"spawn_main" in Path(f"/proc/{pool}/cmdline").read_bytes()  # the pool, a child of the API
    assert "libtorch" in Path(f"/proc/{worker}/maps").read_text()  # the check sees torch where it is
    assert "libtorch" not in Path(f"/proc/{pool}/maps").read_text()


def test_every_child_of_serve_killed_at_once_the_job_resumes_from_its_checkpoint(make_server):
    srv = make_server(workers=1, **FAST_FAULTS).start()
    job = srv.submit(long_job(KILLABLE_EPOCHS))
    wait_for_epoch(srv, job["id"], 500)
    wait_for(lambda: srv.query("SELECT epoch FROM checkpoints WHERE job_id = :id", id=job["id"]), 30, "a checkpoint")
    killed = descendants(srv.proc.pid)
    assert len(killed) >= 2  # the pool and its worker at least (and the resource tracker, where it runs)
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    done = srv.wait_for(job["id"], timeout=90)
    assert done["status"] == "succeeded" and done["attempt"] == 2, done
    assert done["interruptions"] == 1  # the whole process tree died: not the job's doing, no attempt spent
    resumed = re.search(rf"job {job['id']} resumes from its checkpoint at epoch (\d+)", srv.read_log())
    assert resumed and int(resumed.group(1)) > 0
    assert_contiguous_curve(srv, job["id"], KILLABLE_EPOCHS)  # no point twice, none missing
    assert not set(killed) & set(descendants(srv.proc.pid))


@processes_only
def test_a_killed_fork_server_costs_no_attempt_and_the_pool_forks_workers_from_a_new_one(make_server):
    """The fork server the workers come from is a process of its own (it holds torch): killed, its workers look
    dead to the pool, which stops them (each hands its job back), and starts new ones from a new fork server."""
    srv = make_server(workers=1, **FAST_FAULTS).start()
    job = srv.submit(long_job(KILLABLE_EPOCHS))
    wait_for_epoch(srv, job["id"], 200)
    [worker] = worker_pids(srv.proc.pid)
    fork_server = parent_of(worker)
    os.kill(fork_server, signal.SIGKILL)
    wait_for(lambda: not Path(f"/proc/{worker}").exists(), 30, "the old worker stopped")
    [new] = wait_for(lambda: [p for p in worker_pids(srv.proc.pid) if p != worker] or None, 30, "a new worker")
    assert parent_of(new) != fork_server
    done = srv.wait_for(job["id"], timeout=90)
    assert done["status"] == "succeeded" and done["attempt"] == 2, done
    assert done["interruptions"] == 1  # not the job's doing: no attempt spent
    assert "fork server died" in srv.read_log()
    assert_contiguous_curve(srv, job["id"], KILLABLE_EPOCHS)
    assert worker_pids(srv.proc.pid) == [new]  # one worker for the one slot, never the old one beside it


def test_a_stopped_pool_loses_its_job_to_the_api_and_readyz_follows_the_workers(make_server):
    srv = make_server(workers=1, **FAST_FAULTS).start()
    assert srv.client.get("/readyz").status_code == 200
    job = srv.submit(long_job(KILLABLE_EPOCHS))
    wait_for_epoch(srv, job["id"], 200)
    pool = descendants(srv.proc.pid)
    srv.freeze(pool)
    stopped_at = time.monotonic()
    try:
        # no process but the API runs: it alone requeues the job, within a lease and a sweep
        srv.wait_for(job["id"], statuses={"queued"}, timeout=LEASE + SWEEP + 5)
        assert time.monotonic() - stopped_at < LEASE + SWEEP + 3
        unready = wait_for(lambda: (r := srv.client.get("/readyz")).status_code == 503 and r, LEASE + 3, "readyz 503")
        assert "no worker has heartbeated" in unready.json()["detail"]
    finally:
        for pid in pool:
            # no worker lives now; the supervisor in `serve` starts a new pool. A process killed may be gone
            # (reaped) before its SIGCONT, or before its SIGKILL where a parent's death took it along
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                os.kill(pid, signal.SIGCONT)
    wait_for(lambda: srv.client.get("/readyz").status_code == 200, 30, "readyz 200 after the restart")
    assert srv.cli("--url", str(srv.client.base_url), "workers").count(" pool ") == 1
    done = srv.wait_for(job["id"], timeout=90)
    assert done["status"] == "succeeded" and done["attempt"] == 2
    assert done["interruptions"] == 1  # the lease expired: not counted against max_attempts


def test_a_long_epoch_is_cancelled_within_two_seconds(make_app):
    srv = make_app(workers=1, FITSERVE_LEASE_SECONDS="6").start()
    job = srv.submit(long_epoch_job(200_000))
    srv.wait_until(job["id"], lambda j: j["status"] == "running" and j["execution"], timeout=60)
    # inside the epoch's steps: its worker renews the lease a third of FITSERVE_LEASE_SECONDS after the claim
    lease = "SELECT lease_expires_at FROM jobs WHERE id = :id"
    claimed = srv.query(lease, id=job["id"])
    wait_until(lambda: srv.query(lease, id=job["id"]) != claimed, 30, "the lease renewed inside the epoch")
    asked = time.monotonic()
    assert srv.client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200
    done = srv.wait_for(job["id"], timeout=10)
    assert done["status"] == "cancelled"
    assert time.monotonic() - asked < 2.0
    assert done["progress"]["epoch"] == 0  # it was stopped inside its only epoch


@processes_only(prefer="postgresql")
def test_sigterm_inside_a_long_epoch_exits_within_the_limit_and_the_job_resumes(make_server):
    shutdown = 10.0  # the default: the worker hands its job back well before (it is killed at this limit)
    srv = make_server(workers=1, FITSERVE_SHUTDOWN_SECONDS=str(shutdown), **FAST_FAULTS).start()
    job = srv.submit(long_epoch_job(12_000, epochs=2))  # the stop lands inside epoch 2, after epoch 1's checkpoint
    wait_for_epoch(srv, job["id"], 1)
    wait_for(lambda: srv.query("SELECT epoch FROM checkpoints WHERE job_id = :id", id=job["id"]), 30, "a checkpoint")
    [(checkpointed,)] = srv.query("SELECT epoch FROM checkpoints WHERE job_id = :id", id=job["id"])
    started = time.monotonic()
    assert srv.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < shutdown
    [(status, error)] = srv.query("SELECT status, error FROM jobs WHERE id = :id", id=job["id"])
    assert status == "queued" and error.startswith("worker shut down")  # handed back, not rescued after a kill

    srv.start()
    done = srv.wait_for(job["id"], timeout=120)
    assert done["status"] == "succeeded" and done["attempt"] == 2
    resumed = re.search(rf"job {job['id']} resumes from its checkpoint at epoch (\d+)", srv.read_log())
    assert resumed and int(resumed.group(1)) >= checkpointed >= 1  # the interrupted epoch started again
    assert_contiguous_curve(srv, job["id"], 2)


@processes_only
def test_a_worker_killed_with_a_cancel_pending_ends_the_job_cancelled(make_server):
    # a dead local worker is rescued at once, with no lease to wait out: a long lease keeps a busy machine's slow
    # renewal from requeueing the job before the test's kill. PostgreSQL's idle-in-transaction limit (a lease by
    # default) stays short: the worker may be frozen holding the job's row, which the cancel waits for.
    faults = {**FAST_FAULTS, "FITSERVE_LEASE_SECONDS": "60", "FITSERVE_DB_IDLE_IN_TRANSACTION_SECONDS": "3"}
    srv = make_server(workers=1, **faults).start()
    job = srv.submit(long_job(KILLABLE_EPOCHS))
    wait_for_epoch(srv, job["id"], 200)
    [pid] = worker_pids(srv.proc.pid)
    srv.freeze([pid])  # it cannot see the cancel: only the rescue decides
    attempt = srv.client.get(f"/v1/jobs/{job['id']}").json()["attempt"]
    assert srv.client.post(f"/v1/jobs/{job['id']}/cancel").json()["cancel_requested"] is True
    os.kill(pid, signal.SIGKILL)
    done = srv.wait_for(job["id"], timeout=30)
    assert done["status"] == "cancelled" and done["attempt"] == attempt
    assert "worker process died" in done["error"]
    [(status,)] = srv.query("SELECT status FROM jobs WHERE id = :id", id=job["id"])
    assert status == "cancelled"  # never requeued


def metric(srv, name: str) -> dict[str, float]:
    """Samples of one Prometheus metric: labels text -> value."""
    samples = {}
    for line in srv.client.get("/metrics").text.splitlines():
        if line.startswith(name) and not line.startswith(f"{name}_"):
            labels, value = line[len(name):].rsplit(" ", 1)
            samples[labels] = float(value)
    return samples


def test_queued_work_with_no_worker_fails_readiness_and_shows_in_metrics(make_app):
    api = make_app(workers=0, FITSERVE_READY_QUEUE_SECONDS="1").start()
    assert api.client.get("/readyz").status_code == 200  # an API alone is ready while nothing waits
    job = api.submit(tiny_regression(epochs=5))
    unready = wait_for(lambda: (r := api.client.get("/readyz")).status_code == 503 and r, 10, "readyz 503")
    assert "no worker lives" in unready.json()["detail"]
    assert metric(api, "fitserve_workers") == {}
    assert metric(api, "fitserve_oldest_queued_job_age_seconds")[""] >= 1.0

    pool = make_app(workers=1).start()  # workers of their own on the same database take the job
    assert pool.wait_for(job["id"], timeout=60)["status"] == "succeeded"
    assert api.client.get("/readyz").status_code == 200
    assert metric(api, "fitserve_workers") == {'{device="cpu",state="idle"}': 1.0}
    assert metric(api, "fitserve_oldest_queued_job_age_seconds")[""] == 0.0
