"""Rescue of stalled work, run by every long-lived fitserve process: the API, a pool, a Ray dispatcher.

No rescue depends on the worker that stalled. Each sweep
- requeues the jobs of registered workers of this host whose process is gone (at once: no lease to wait out),
- expires the registry rows of workers silent for longer than a lease,
- requeues every running job whose lease expired (a worker on another machine, a hung or stopped one).
A job whose cancel was requested is ended `cancelled` instead of requeued. Members still queued when their sweep's
max_seconds passed end `cancelled`, untrained (those running stop themselves: workers/time_limits.py).
Each sweep then applies retention (services/retention.py).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from functools import lru_cache
from pathlib import Path

from service.db import session_scope
from service.db_faults import FAULTS
from service.repositories import job_counts
from service.repositories import jobs as job_repo
from service.repositories import workers as worker_repo
from service.services.retention import apply_retention
from service.services.rounds import advance_rounds
from service.settings import Settings, get_settings

log = logging.getLogger("fitserve.rescue")


def rescue(reason: str, worker_id: str | None = None, counted: bool = True) -> list[str]:
    """Requeue (or cancel, or fail once out of attempts) the running jobs of `worker_id`, or every expired lease.
    `counted`: the cause may be the job's (its worker process died under it), and the attempt counts against
    max_attempts; else it is an interruption (FITSERVE_MAX_INTERRUPTIONS)."""
    with session_scope() as s:
        outcome = job_repo.rescue_jobs(s, reason, worker_id, counted, get_settings().MAX_INTERRUPTIONS)
    for status, job_ids in outcome.items():
        for job_id in job_ids:
            log.warning("job %s %s: %s", job_id, status, reason)
    return [job_id for job_ids in outcome.values() for job_id in job_ids]


@lru_cache
def process_scope() -> str:
    """This machine's boot and pid namespace: pids of workers registered with the same scope are ours to check."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return f"host:{socket.gethostname()}"
    return f"{boot}:{namespace}"[:100]


def process_alive(pid: int) -> bool:
    """Whether `pid` runs; a zombie (dead, not yet reaped: its parent died too) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def rescue_dead_local_workers() -> None:
    """Registered workers of this host and pid namespace whose process is gone: rescue their jobs, drop their rows."""
    with session_scope(read_only=True) as s:
        registered = worker_repo.list_in_scope(s, socket.gethostname(), process_scope())
    gone = [worker_id for worker_id, pid in registered if not process_alive(pid)]
    for worker_id in gone:
        pool = worker_repo.pool_pid(worker_id)
        if pool is not None and not process_alive(pool):  # the whole process tree went: not the job's doing
            rescue("worker process died with its pool", worker_id, counted=False)
        else:  # under its job, maybe by it (its pool has not reaped it yet)
            rescue("worker process died", worker_id)
    if gone:
        with session_scope() as s:
            worker_repo.remove(s, gone)
        log.warning("worker registry: %d dead local worker(s) removed", len(gone))


def maintain(settings: Settings) -> None:
    """The maintenance tick: dead workers' jobs rescued, expired leases and workers, sweeps past their max_seconds,
    TPE rounds, retention; the job counters' changes folded."""
    rescue_dead_local_workers()
    with session_scope() as s:
        expired = worker_repo.expire(s, settings.LEASE_SECONDS)
    for worker_id in expired:
        log.warning("worker %s expired: no heartbeat for %.0f s", worker_id, settings.LEASE_SECONDS)
    rescue("lease expired", counted=False)  # a host or a whole process gone, or a worker stopped: not the job's
    with session_scope() as s:  # sweeps past their max_seconds: members not started end (running ones stop themselves)
        ended = job_repo.end_past_deadline(s)
    if ended:
        log.info("%d queued sweep member(s) ended: their sweep's max_seconds passed", len(ended))
    advance_rounds(settings)
    apply_retention(settings)
    with session_scope() as s:
        job_counts.fold(s)


class Maintainer:
    """`maintain` every FITSERVE_SWEEP_SECONDS on a thread of its own; a failed tick (database away) is logged and
    retried."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, name="fitserve-maintenance", daemon=True)

    def start(self) -> Maintainer:
        self.thread.start()
        return self

    def run(self) -> None:
        while not self.stopping.wait(self.settings.SWEEP_SECONDS):
            try:
                maintain(self.settings)
            except Exception as exc:
                if FAULTS.meet(exc) is None:  # a full disk or a corrupt file: one line when it begins, not each tick
                    log.exception("maintenance failed; next in %.1f s", self.settings.SWEEP_SECONDS)

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(5)
