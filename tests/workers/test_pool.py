"""Worker processes: atomic claims, restarts, SIGTERM hand-back with checkpoints, SIGKILL rescue."""

import functools
import io
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from service.schemas.spec import JobSpec
from service.settings import Settings
from tests.conftest import ROOT, processes_only, wait_until, worker_pids
from tests.specs import FAST_FAULTS, KILLABLE_EPOCHS, long_job, tiny_regression
from workers.attempt import prepare
from workers.engines.eager import Trainer
from workers.pool import Pool
from workers.run import train_here


def wait_for_epoch(srv, job_id: str, epoch: int) -> dict:
    return srv.wait_until(job_id, lambda job: job["progress"]["epoch"] >= epoch, timeout=60)


def assert_contiguous_curve(srv, job_id: str, epochs: int) -> list[float]:
    """Every epoch's point once, in order; their losses."""
    page = srv.client.get(f"/v1/jobs/{job_id}/metrics", params={"max_points": 100_000}).json()
    assert [p["epoch"] for p in page["points"]] == list(range(1, epochs + 1))
    return [p["loss"] for p in page["points"]]


@functools.cache
def uninterrupted_losses(epochs: int) -> list[float]:
    """long_job(epochs)'s curve trained here without a stop, by the workers' own run (workers/run.py)."""
    spec = JobSpec.model_validate(long_job(epochs))
    net, data = prepare(spec, torch.device("cpu"))
    return [p.loss for p in train_here(Trainer(spec, net, data, torch.device("cpu"))).points["0"]]


def assert_same_curve(losses: list[float], epochs: int) -> None:
    """The whole curve of an interrupted and resumed job is the uninterrupted one's (it reaches 0 near the end:
    the last loss alone would prove nothing)."""
    assert losses == pytest.approx(uninterrupted_losses(epochs), rel=1e-5, abs=1e-9)


def test_queued_jobs_survive_a_restart(make_app):
    api_only = make_app(workers=0).start()
    ids = [api_only.submit(tiny_regression(epochs=20))["id"] for _ in range(3)]
    assert api_only.stop() == 0
    with_workers = make_app(workers=1).start()
    for job_id in ids:
        assert with_workers.wait_for(job_id)["status"] == "succeeded"


def test_a_workers_row_names_the_job_it_trains_and_clears_once_the_worker_is_idle(make_app):
    """The claim names the job in the worker's row (one transaction); the next claim, finding none, clears it."""
    srv = make_app(workers=1).start()
    job = srv.submit(long_job(epochs=4000))
    wait_for_epoch(srv, job["id"], 100)
    assert srv.query("SELECT job_id FROM workers") == [(job["id"],)]
    assert srv.wait_for(job["id"])["status"] == "succeeded"
    deadline = time.monotonic() + 10
    while srv.query("SELECT job_id FROM workers") != [(None,)]:
        assert time.monotonic() < deadline, srv.query("SELECT job_id FROM workers")
        time.sleep(0.05)


def start_extra_pool(srv, tmp_path, workers: int) -> subprocess.Popen:
    """`fitserve worker` on the server's database: a second pool, as on another machine."""
    return subprocess.Popen(
        [sys.executable, "-m", "fitserve.cli", "worker", "--workers", str(workers)],
        cwd=ROOT,
        env=srv.env,
        stdout=open(tmp_path / "extra-worker.log", "ab"),
        stderr=subprocess.STDOUT,
    )


def test_four_workers_claim_each_of_200_jobs_exactly_once(make_server, tmp_path):
    # 200 submits at once and the polls after them: past the default burst of one caller
    # one job a claim (auto-batching off): with it on, one worker may take a whole batch of these
    fast = {"FITSERVE_RATE_LIMIT_BURST": "100000", "FITSERVE_RATE_LIMIT_PER_SECOND": "100000", "FITSERVE_AUTO_BATCH": "off"}
    srv = make_server(workers=2, **fast).start()
    extra = start_extra_pool(srv, tmp_path, workers=2)
    try:
        # every worker registered before the first job: the test is about claims, not about start-up times
        srv.wait_until_workers(4)
        ids = [srv.submit(tiny_regression(epochs=1))["id"] for _ in range(200)]
        for job_id in ids:
            assert srv.wait_for(job_id, timeout=300)["status"] == "succeeded"
    finally:
        extra.send_signal(signal.SIGTERM)
        assert extra.wait(30) == 0
    attempts = srv.query("SELECT attempt, count(*) FROM jobs GROUP BY attempt")
    [(workers,)] = srv.query("SELECT count(DISTINCT worker_id) FROM jobs")
    assert attempts == [(1, 200)]  # every job claimed exactly once
    assert workers == 4  # and all four workers took part
    assert "database is locked" not in srv.read_log()


def test_a_stalled_worker_loses_its_job_and_cannot_write_to_it(make_server, tmp_path):
    srv = make_server(workers=1, **FAST_FAULTS).start()
    job = srv.submit(long_job(KILLABLE_EPOCHS))
    wait_for_epoch(srv, job["id"], 300)
    [stalled] = worker_pids(srv.proc.pid)
    srv.freeze([stalled])
    extra = start_extra_pool(srv, tmp_path, workers=1)
    try:
        done = srv.wait_for(job["id"], timeout=120)  # rescued after the lease (3 s), finished elsewhere
        os.kill(stalled, signal.SIGCONT)
        srv.wait_until(job["id"], lambda _: f"job {job['id']} attempt 1: lost" in srv.read_log(), timeout=30)
    finally:
        os.kill(stalled, signal.SIGCONT)
        extra.send_signal(signal.SIGTERM)
        extra.wait(30)
    assert done["status"] == "succeeded" and done["attempt"] == 2
    after = srv.client.get(f"/v1/jobs/{job['id']}").json()
    assert after["status"] == "succeeded" and after["attempt"] == 2 and after["progress"]["epoch"] == KILLABLE_EPOCHS
    assert_same_curve(assert_contiguous_curve(srv, job["id"], KILLABLE_EPOCHS), KILLABLE_EPOCHS)


@processes_only
def test_sigterm_hands_the_job_back_and_it_resumes_from_its_checkpoint(make_server):
    srv = make_server(workers=1, **FAST_FAULTS).start()
    job = srv.submit(long_job(KILLABLE_EPOCHS))
    wait_for_epoch(srv, job["id"], 500)
    started = time.monotonic()
    assert srv.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 15
    [(status, epoch)] = srv.query("SELECT status, epoch FROM jobs WHERE id = :id", id=job["id"])
    [(checkpoint_epoch,)] = srv.query("SELECT epoch FROM checkpoints WHERE job_id = :id", id=job["id"])
    assert status == "queued" and 0 < checkpoint_epoch == epoch < KILLABLE_EPOCHS

    srv.start()
    done = srv.wait_for(job["id"])
    assert done["status"] == "succeeded" and done["attempt"] == 2 and done["interruptions"] == 1
    assert_same_curve(assert_contiguous_curve(srv, job["id"], KILLABLE_EPOCHS), KILLABLE_EPOCHS)


@processes_only(prefer="postgresql")
def test_a_killed_worker_is_replaced_and_its_job_rescued(make_server):
    srv = make_server(workers=1, **FAST_FAULTS).start()
    job = srv.submit(long_job(KILLABLE_EPOCHS))
    wait_for_epoch(srv, job["id"], 1000)
    srv.wait_until(job["id"], lambda _: srv.query("SELECT epoch FROM checkpoints WHERE job_id = :id", id=job["id"]))
    [(checkpointed,)] = srv.query("SELECT epoch FROM checkpoints WHERE job_id = :id", id=job["id"])
    [pid] = worker_pids(srv.proc.pid)
    os.kill(pid, signal.SIGKILL)
    done = srv.wait_for(job["id"], timeout=90)
    assert done["status"] == "succeeded", done
    assert done["attempt"] == 2 and done["interruptions"] == 0  # its worker died under it: counted
    resumed = re.search(rf"job {job['id']} resumes from its checkpoint at epoch (\d+)", srv.read_log())
    assert resumed and int(resumed.group(1)) >= checkpointed > 0
    assert_contiguous_curve(srv, job["id"], KILLABLE_EPOCHS)
    assert pid not in worker_pids(srv.proc.pid)


@processes_only
def test_a_job_that_keeps_killing_its_worker_fails_after_max_attempts(make_server):
    srv = make_server(workers=1, FITSERVE_MAX_ATTEMPTS="2", **FAST_FAULTS).start()
    job = srv.submit(long_job(10_000_000 // 20))
    for attempt in (1, 2):
        srv.wait_until(job["id"], lambda j, attempt=attempt: j["status"] == "running" and j["attempt"] == attempt)
        for pid in worker_pids(srv.proc.pid):
            os.kill(pid, signal.SIGKILL)
    done = srv.wait_for(job["id"], timeout=60)
    assert done["status"] == "failed"
    assert "worker process died" in done["error"] and "each of its attempts" in done["error"]


@processes_only
def test_a_job_that_runs_out_of_memory_fails_and_the_worker_takes_the_next(make_server):
    # the submit check would refuse this job: lift it, so the worker's own cap is what stops it
    srv = make_server(workers=1, FITSERVE_WORKER_MEMORY_BYTES=str(3 * 1024**3), FITSERVE_MAX_JOB_BYTES=str(2**50)).start()
    # 1M rows through a 4096-wide layer: 16 GB of activations, far past the 3 GB cap
    greedy = tiny_regression(
        model={"kind": "mlp", "in_features": 1, "hidden": [4096], "out_features": 1},
        data={"source": "synthetic", "generator": "linear", "n": 1_000_000},
        epochs=1,
    )
    job = srv.train(greedy)
    [pid] = worker_pids(srv.proc.pid)
    assert job["status"] == "failed"
    assert job["error"].startswith("out of memory")
    assert srv.train(tiny_regression(epochs=5))["status"] == "succeeded"
    assert worker_pids(srv.proc.pid) == [pid]  # the same worker process, still alive


def test_data_that_is_not_finite_fails_its_job_with_the_reason(make_app):
    """Uploads refuse NaN and infinity; the worker still checks, for rows stored before that check."""
    srv = make_app(workers=1).start()
    dataset = srv.client.post("/v1/datasets", files={"file": ("d.csv", b"a,y\n1,2\n2,4\n3,6\n")},
                              data={"target": "y"}).json()
    buf = io.BytesIO()
    np.savez(buf, x=np.array([[1.0], [np.nan], [3.0]], dtype=np.float32), y=np.array([2.0, 4.0, 6.0], dtype=np.float32))
    srv.query("UPDATE datasets SET data = :data WHERE id = :id", data=buf.getvalue(), id=dataset["id"])
    job = srv.train(tiny_regression(data={"source": "dataset", "dataset_id": dataset["id"]}))
    assert job["status"] == "failed"
    assert "NaN or infinity" in job["error"] and "x" in job["error"]
    too_big = srv.client.post("/v1/datasets", files={"file": ("d.csv", b"a,y\n1e39,2\n2,4\n")}, data={"target": "y"})
    assert too_big.status_code == 422 and "float32" in too_big.json()["detail"][0]["msg"]


def test_an_idle_worker_is_woken_by_a_submit_instead_of_its_next_poll(make_server):
    """With a 60 s poll, work submitted to an idle pool still starts at once, a job's and a sweep's members alike;
    stopping stays prompt."""
    srv = make_server(workers=1, FITSERVE_POLL_SECONDS="60").start()
    first = srv.submit(tiny_regression(epochs=5))
    assert srv.wait_for(first["id"], timeout=60)["status"] == "succeeded"
    for kind in ("job", "sweep"):
        # idle: its claim found nothing, and it waits for a wake-up (its listener was open before its first claim)
        wait_until(lambda: [w["state"] for w in srv.client.get("/v1/workers").json()["workers"]] == ["idle"], 30,
                   f"the worker idle before the {kind}")
        if kind == "job":
            job_id = srv.submit(tiny_regression(epochs=5))["id"]
        else:
            sweep = srv.client.post("/v1/sweeps", json={"base": tiny_regression(epochs=5), "space": {"lr": [0.01, 0.02]}})
            assert sweep.status_code == 201, sweep.text
            job_id = srv.client.get(f"/v1/sweeps/{sweep.json()['id']}").json()["leaderboard"][0]["job_id"]
        job = srv.wait_for(job_id, timeout=20)
        assert job["status"] == "succeeded", kind
    started = time.monotonic()
    assert srv.stop() == 0
    assert time.monotonic() - started < 8


def test_workers_per_gpu_sets_the_default_pool_size(monkeypatch):
    import torch

    from workers import devices

    gpus = devices.visible_gpus()
    assert gpus == (torch.cuda.device_count() if torch.cuda.is_available() else 0) == devices.count_gpus()
    assert devices.default_workers(4) == (4 * gpus if gpus else 1)  # a CPU-only machine runs one worker
    # where a GPU driver may be, the pool asks a child process; its answer is the same
    runs, run = [], subprocess.run
    monkeypatch.setattr(devices, "GPU_DEVICE_FILES", ("/dev/null",))
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: runs.append(a) or run(*a, **k))
    assert devices.count_gpus() == gpus and len(runs) == 1


def test_a_worker_that_loses_its_listen_connection_keeps_working_and_listens_again(make_server, backend):
    if backend != "postgresql":
        pytest.skip("LISTEN/NOTIFY wake-ups are PostgreSQL's")
    srv = make_server(workers=1, FITSERVE_POLL_SECONDS="60").start()
    assert srv.wait_for(srv.submit(tiny_regression(epochs=5))["id"], timeout=60)["status"] == "succeeded"
    workers = worker_pids(srv.proc.pid)
    dropped = srv.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = current_database() AND query LIKE 'LISTEN%'"
    )
    assert dropped == [(True,)]
    listening = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'"
                 " AND pid <> pg_backend_pid()")
    # the worker sees the loss within a wait slice, and listens on a new connection at the next
    wait_until(lambda: srv.query(listening) == [(1,)], 30, "the worker listening again", srv.read_log)
    job = srv.wait_for(srv.submit(tiny_regression(epochs=5))["id"], timeout=20)  # woken: the poll is 60 s
    assert job["status"] == "succeeded"
    assert worker_pids(srv.proc.pid) == workers  # the same worker process, never restarted
    assert "lost the LISTEN connection" in srv.read_log()


def test_orphans_of_a_dead_fork_server_are_stopped_together_within_one_shutdown_wait(monkeypatch):
    """Workers outliving their fork server are stopped as at shutdown; ones that ignore SIGTERM are killed after
    SHUTDOWN_SECONDS, counted once for all of them, not once each (a pool of N would stall N times as long)."""
    monkeypatch.setenv("FITSERVE_SHUTDOWN_SECONDS", "3")
    ignoring = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(1, flush=True); time.sleep(60)"
    procs = [subprocess.Popen([sys.executable, "-c", ignoring], stdout=subprocess.PIPE) for _ in range(3)]
    for proc in procs:
        proc.stdout.readline()  # SIGTERM is ignored from here on
    pool = Pool(0, Settings())
    started = time.monotonic()
    pool.stop_orphans([proc.pid for proc in procs])
    took = time.monotonic() - started
    assert [proc.wait(10) for proc in procs] == [-signal.SIGKILL] * 3
    assert 3 <= took < 2 * 3, f"{took:.1f} s for three orphans"
