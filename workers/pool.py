"""The worker pool: N worker processes, restarted if they die, stopped cleanly on SIGTERM.

The pool's own process also runs the maintenance loop (service.services.rescue): it requeues the jobs of a worker that
died at once, and every SWEEP_SECONDS those of dead workers and expired leases. The pool is itself
supervised by the process above it (`serve` or `worker`); a worker whose pool died hands its job
back and exits, and the restarted pool starts workers of its own.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import resource
import select
import signal
import threading
import time

from service.db import exit_without_teardown, session_scope
from service.logs import configure_logging
from service.models import WorkerKind
from service.repositories import workers as worker_repo
from service.services.rescue import Maintainer, process_alive, rescue
from service.settings import Settings, get_settings
from workers.devices import count_gpus, default_workers, keep_freed_memory, threads_per_worker
from workers.registry import Registration

log = logging.getLogger("fitserve.pool")
QUICK_DEATH_SECONDS = 10.0  # a worker that dies sooner after its start is restarted with back-off
MAX_BACKOFF_SECONDS = 10.0


def stop_on_signals(stop: threading.Event, parent: int | None = None) -> None:
    """Set `stop` at SIGTERM or SIGINT, and (given `parent`) once the process `parent` has exited, so no worker
    outlives its pool."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if parent is not None:
        threading.Thread(target=watch_parent, args=(stop, parent), name="fitserve-parent-watch", daemon=True).start()


def watch_parent(stop: threading.Event, parent: int) -> None:
    """Set `stop` when `parent` exits.

    Through a pidfd, not `getppid()`: a worker is the child of the pool's fork server, not of the pool. `parent` is
    passed in from the pool, so one that died before this process got this far is missed by neither: the pidfd
    cannot be opened.
    """
    try:
        exited = select.poll()
        exited.register(os.pidfd_open(parent), select.POLLIN)  # readable once the process has exited
    except ProcessLookupError:
        stop.set()
        return
    while not exited.poll(1000) and not stop.is_set():
        pass
    stop.set()


def cap_memory(limit: int, gpu: int | None) -> None:
    """Cap a CPU worker's address space, so a job too big for the host fails alone instead of the host."""
    if limit and gpu is None:  # CUDA reserves far more address space than it uses: no cap there
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def worker_main(worker_id: str, gpu: int | None, n_workers: int, pool_pid: int) -> None:
    """Entry point of one worker process."""
    import torch

    from workers.loop import work

    configure_logging()
    cap_memory(get_settings().WORKER_MEMORY_BYTES, gpu)
    keep_freed_memory()
    torch.set_num_threads(get_settings().TORCH_THREADS or threads_per_worker(n_workers))
    shutdown = threading.Event()
    stop_on_signals(shutdown, pool_pid)
    warm_up(torch)
    device = f"cuda:{gpu}" if gpu is not None else "cpu"
    with Registration(worker_id, WorkerKind.POOL, device, get_settings(), gpu=gpu) as registration:
        work(worker_id, get_settings(), gpu, shutdown, registration)
    exit_without_teardown(0)  # its jobs handed back, its row gone: nothing left to tear down


def warm_up(torch) -> None:
    """Pay once, before any job, what a process's first optimizer costs: ~1 s of torch's lazy imports."""
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)


# What the fork server imports once for all its workers: torch and the worker's code (~3 s a process, paid once
# a pool instead of at each worker's start and restart), and torch's compiler front end, which a process's first
# optimizer imports (warm_up).
WORKER_PRELOAD = ["workers.loop", "torch._dynamo"]


def worker_context() -> mp.context.BaseContext:
    """Workers are forked from a fork server that has imported their code (the pool's own process stays torch-free:
    the server is a process of its own). Forked before any thread pool or CUDA context exists, each starts clean.
    A fork server that died is started again at the next worker's start (multiprocessing's `ensure_running`)."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(WORKER_PRELOAD)
    return ctx


class Pool:
    def __init__(self, n_workers: int | None = None, settings: Settings | None = None):
        self.settings = settings or get_settings()
        self.gpus = count_gpus()  # torch stays out of this process: it only supervises
        self.n = n_workers if n_workers is not None else (
            self.settings.WORKERS or default_workers(self.settings.WORKERS_PER_GPU, self.gpus))
        self.ctx = worker_context()
        self.procs: dict[int, tuple[str, mp.Process]] = {}
        self.started_at: dict[int, float] = {}
        self.backoff: dict[int, float] = {}
        self.restart_at: dict[int, float] = {}
        self.stopping = threading.Event()

    def start_worker(self, slot: int) -> None:
        worker_id = worker_repo.new_worker_id()
        gpu = slot % self.gpus if self.gpus else None
        proc = self.ctx.Process(target=worker_main, args=(worker_id, gpu, self.n, os.getpid()), name=f"fitserve-worker-{slot}")
        proc.start()
        self.procs[slot] = (worker_id, proc)
        self.started_at[slot] = time.monotonic()
        log.info("worker %s started (pid %s, %s)", worker_id, proc.pid, f"cuda:{gpu}" if gpu is not None else "cpu")

    def supervise(self) -> None:
        """Run until `stopping` is set: restart dead workers and rescue their jobs; the maintenance loop beside it."""
        for slot in range(self.n):
            self.start_worker(slot)
        maintainer = Maintainer(self.settings).start()
        while not self.stopping.wait(min(1.0, self.settings.SWEEP_SECONDS)):
            dead = [(slot, worker_id, proc) for slot, (worker_id, proc) in self.procs.items()
                    if not proc.is_alive() and slot not in self.restart_at]
            if dead:
                self.reap(dead)
            self.restart_due()
        maintainer.stop()
        self.stop_workers()

    def reap(self, dead: list[tuple[int, str, mp.Process]]) -> None:
        """Workers died: rescue their jobs now and schedule their restarts, later each time a slot's worker dies young.

        A worker still alive here was forked by a fork server that died, which reads as the death of every worker it
        forked: all of them are stopped together, so the pool waits SHUTDOWN_SECONDS at most, not that per worker."""
        orphans = [proc.pid for _, _, proc in dead if process_alive(proc.pid)]
        self.stop_orphans(orphans)
        for slot, worker_id, proc in dead:
            if proc.pid in orphans:
                cause = "was stopped: the pool's fork server died"
                rescue(f"worker process {cause}", worker_id, counted=False)
            else:
                cause = f"died with exit code {proc.exitcode}"
                rescue(f"worker process died (exit code {proc.exitcode})", worker_id)
            with session_scope() as s:
                worker_repo.remove(s, [worker_id])
            lived = time.monotonic() - self.started_at[slot]
            quick = lived < QUICK_DEATH_SECONDS
            delay = min(MAX_BACKOFF_SECONDS, max(1.0, 2 * self.backoff.get(slot, 0.5))) if quick else 0.0
            self.backoff[slot] = delay
            self.restart_at[slot] = time.monotonic() + delay
            log.warning("worker %s (pid %s) %s after %.1f s; restarting in %.1f s", worker_id, proc.pid, cause, lived,
                        delay)

    def stop_orphans(self, pids: list[int]) -> None:
        """Stop workers whose fork server died, as at shutdown (SIGTERM: each hands its job back), killing those that
        outlast SHUTDOWN_SECONDS, so a slot never has two workers. They are no children of this process: polled by pid."""
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.settings.SHUTDOWN_SECONDS
        while any(process_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in pids:
            if process_alive(pid):
                os.kill(pid, signal.SIGKILL)

    def restart_due(self) -> None:
        now = time.monotonic()
        for slot, at in list(self.restart_at.items()):
            if at <= now:
                del self.restart_at[slot]
                self.start_worker(slot)

    def stop_workers(self) -> None:
        for _, proc in self.procs.values():
            if proc.is_alive():
                proc.terminate()  # SIGTERM: stop at the next step, hand the job back
        deadline = time.monotonic() + self.settings.SHUTDOWN_SECONDS
        for worker_id, proc in self.procs.values():
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join()
                rescue("worker killed at shutdown", worker_id, counted=False)


def run_pool(n_workers: int | None = None, parent_pid: int | None = None) -> None:
    """Run a pool in this process until SIGTERM or SIGINT (or, with `parent_pid`, that parent's exit)."""
    configure_logging()
    pool = Pool(n_workers)
    stop_on_signals(pool.stopping, parent_pid)
    pool.supervise()
    exit_without_teardown(0)  # every worker stopped (or killed and its jobs rescued)
