"""workers/devices.py: what a training process sets up about its host."""

from __future__ import annotations

import subprocess
import sys
import weakref

import pytest
import torch

from modelzoo.memory import estimate_training, format_bytes
from service.models import WorkerKind
from service.schemas.spec import JobSpec
from service.settings import get_settings
from tests.conftest import processes_only, register_gpu, worker_pids
from tests.specs import tiny_regression
from workers.claims import claim
from workers.devices import gpu_memory, placement, this_node
from workers.engines.eager import Trainer
from workers.ledger import Ledger, failure
from workers.registry import Registration

# In a fresh process: where a 16 MB buffer comes from (bytes of it mapped on its own), and how much of the
# heap is handed back to the kernel when it is freed. glibc's mallinfo2 reports both.
HEAP = """
import ctypes, sys, torch
from workers.devices import keep_freed_memory
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
kept = keep_freed_memory() if sys.argv[1] == "kept" else False
before = libc.mallinfo2()
buffer = torch.empty(4_000_000)
held = libc.mallinfo2()
del buffer
after = libc.mallinfo2()
print(kept, held.hblkhd - before.hblkhd, held.arena - after.arena)
"""


def heap(mode: str) -> tuple[str, int, int]:
    out = subprocess.run([sys.executable, "-c", HEAP, mode], capture_output=True, text=True, check=True, timeout=120)
    kept, mapped, returned = out.stdout.split()
    return kept, int(mapped), int(returned)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_a_worker_keeps_a_steps_freed_buffers_for_the_next_step():
    """Plain glibc maps a fresh 16 MB buffer on its own and unmaps it at free (the next step faults it in again);
    a worker's process (workers/pool.py, the Ray task) takes it from the heap and keeps it there once freed."""
    plain, mapped, _ = heap("plain")
    assert plain == "False" and mapped >= 16_000_000  # mapped on its own
    kept, mapped, returned = heap("kept")
    assert kept == "True"
    assert mapped == 0  # from the heap
    assert returned == 0  # still the process's to reuse


FORCED_OUT_OF_MEMORY = "CUDA out of memory. Tried to allocate 2.00 GiB (forced by the test)"


@pytest.fixture
def out_of_memory(make_app, monkeypatch):
    """An in-process app of one worker whose every step raises torch's out-of-memory error (forced: no GPU here),
    but those of jobs named `next`; with weak references to the engines that raised it."""
    failing = []
    train_epoch = Trainer.train_epoch

    def step_out_of_memory(self, record):
        if self.spec.name == "next":
            return train_epoch(self, record)
        failing.append(weakref.ref(self))
        raise torch.OutOfMemoryError(FORCED_OUT_OF_MEMORY)

    monkeypatch.setattr(Trainer, "train_epoch", step_out_of_memory)
    return make_app(workers=1, FITSERVE_AUTO_BATCH="off").start(), failing


def test_a_job_that_runs_out_of_memory_fails_naming_the_device_and_its_estimate_and_the_worker_trains_the_next(
    out_of_memory,
):
    """A job out of memory fails, its message naming the device and the job's estimate; the failed run's engine is
    freed, and the same worker trains the next job."""
    srv, failing = out_of_memory
    job = srv.train(tiny_regression(name="too big", epochs=5))
    [(estimate,)] = srv.query("SELECT estimate_bytes FROM jobs WHERE id = :id", id=job["id"])
    assert job["status"] == "failed" and job["attempt"] == 1
    assert job["error"] == f"out of memory on cpu (estimate {format_bytes(estimate)}): {FORCED_OUT_OF_MEMORY}"
    assert [ref() for ref in failing] == [None]  # the failed engine and its tensors were freed
    nxt = srv.train(tiny_regression(name="next", epochs=5))
    assert nxt["status"] == "succeeded"
    assert srv.query("SELECT DISTINCT worker_id FROM jobs") == [(srv.client.get("/v1/workers").json()["workers"][0]["id"],)]


def test_members_in_turn_out_of_memory_fail_naming_the_device_and_their_estimates_and_the_worker_trains_the_next(
    out_of_memory,
):
    """An adaptive sweep's members trained in turn hold their networks together: out of memory, each fails naming
    the device and the members' estimates added up; their engines are freed and the worker trains on."""
    from tests.service.api.test_sweeps import submit_sweep, sweep_body, wait_sweep

    srv, failing = out_of_memory
    body = sweep_body({"lr": [0.01, 0.02, 0.03]}, base=tiny_regression(epochs=6), search="asha", count=3,
                      search_seed=1, asha={"min_epochs": 2, "reduction_factor": 3}, execution="one_by_one")
    done = wait_sweep(srv, submit_sweep(srv, body)["id"])
    members = srv.query("SELECT error, estimate_bytes, execution FROM jobs WHERE sweep_id = :id", id=done["id"])
    assert [execution for _, _, execution in members] == ["eager on cpu; asha rung by rung"] * 3  # in turn
    together = format_bytes(sum(estimate for _, estimate, _ in members))
    assert {error for error, _, _ in members} == {
        f"out of memory on cpu (estimate {together}): {FORCED_OUT_OF_MEMORY}"}
    assert failing and all(ref() is None for ref in failing)  # the failed engines and their tensors were freed
    assert srv.train(tiny_regression(name="next", epochs=5))["status"] == "succeeded"


def test_out_of_memory_on_a_gpu_names_its_memory_and_the_jobs_running_there(make_app):
    """What `failure` says of a job out of memory on a GPU: read from the registry (its GPU's memory, as the GPU
    worker registered it) and from the jobs placed on it by claims, the failing one included."""
    srv = make_app(workers=0, FITSERVE_LEASE_SECONDS="600", FITSERVE_AUTO_BATCH="off").start()
    ids = [srv.submit(tiny_regression(device="cuda", name=f"j{i}"))["id"] for i in range(3)]
    register_gpu("gpu-0", 24 * 1024**3)
    assert all(claim(f"gpu-0-{i}", get_settings(), gpu=0) for i in range(3))
    [(estimate,)] = srv.query("SELECT DISTINCT estimate_bytes FROM jobs")
    where = Ledger("gpu-0-0").memory_on("cuda:0", estimate, this_node())
    assert where == f" on cuda:0 (estimate {format_bytes(estimate)} of 24.0 GiB, 3 jobs on that GPU)"
    error = failure(torch.OutOfMemoryError("CUDA out of memory."), where)
    assert error == f"out of memory{where}: CUDA out of memory." and len(ids) == 3
    assert Ledger("gpu-1-0").memory_on("cuda:1", None, this_node()) == " on cuda:1 (no estimate, 0 jobs on that GPU)"


def test_a_gpu_workers_registration_reports_its_gpus_memory_and_a_cpu_worker_none(make_app, monkeypatch):
    """The probe's answer goes into the registry row at registration, the free memory again at each heartbeat."""
    srv = make_app(workers=0, FITSERVE_LEASE_SECONDS="600").start()
    answers = iter([(80 * 1024**3, 70 * 1024**3), (80 * 1024**3, 10 * 1024**3)])
    monkeypatch.setattr("workers.registry.gpu_memory", lambda gpu: next(answers) if gpu == 0 else None)
    registration = Registration("gpu-worker", WorkerKind.POOL, "cuda:0", get_settings(), gpu=0)
    registration.write()
    Registration("cpu-worker", WorkerKind.POOL, "cpu", get_settings()).write()
    rows = "SELECT id, device, gpu_total_bytes, gpu_free_bytes FROM workers ORDER BY id"
    assert srv.query(rows) == [("cpu-worker", "cpu", None, None), ("gpu-worker", "cuda:0", 80 * 1024**3, 70 * 1024**3)]
    registration.write()  # a heartbeat
    assert srv.query(rows)[1] == ("gpu-worker", "cuda:0", 80 * 1024**3, 10 * 1024**3)
    assert gpu_memory(None) is None and placement("auto", 0) == "cuda:0" and placement("auto", None) == "cpu"


@processes_only
@pytest.mark.skipif(not torch.cuda.is_available(), reason="a real CUDA out-of-memory error needs a GPU (bench/gpu.sh)")
def test_on_a_gpu_a_job_that_runs_out_of_memory_fails_and_the_worker_trains_the_next(make_server):
    """This process holds most of the GPU, as another program might: a job whose estimate fits the GPU's share
    runs out of memory for real, fails naming cuda:0 and its estimate, and the same worker process trains the next."""
    srv = make_server(workers=1, FITSERVE_MAX_JOB_BYTES=str(2**50)).start()
    [worker] = srv.wait_until_workers(1)
    total, free = worker["gpu_total_bytes"], worker["gpu_free_bytes"]
    assert worker["device"] == "cuda:0" and 0 < free <= total
    wide = {"kind": "mlp", "in_features": 1, "hidden": [4096], "out_features": 1}
    per_row = estimate_training(JobSpec.model_validate(tiny_regression(model=wide)), 1, 1, 1).activations
    rows = min(1_000_000, int(0.3 * total) // per_row)  # about 30% of the GPU: inside its share
    hog = torch.empty(max(0, free - total // 10), dtype=torch.uint8, device="cuda")  # leave the job ~10%
    greedy = tiny_regression(model=wide, data={"source": "synthetic", "generator": "linear", "n": rows}, epochs=2,
                             device="cuda", name="greedy")
    job = srv.train(greedy, timeout=300)
    [pid] = worker_pids(srv.proc.pid)
    assert job["status"] == "failed" and job["error"].startswith("out of memory on cuda:0 (estimate "), job["error"]
    assert f"of {format_bytes(total)}, 1 job on that GPU): " in job["error"]
    del hog
    torch.cuda.empty_cache()
    assert srv.train(tiny_regression(device="cuda", epochs=5), timeout=300)["status"] == "succeeded"
    assert worker_pids(srv.proc.pid) == [pid]  # the same worker process, alive
