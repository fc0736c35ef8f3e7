"""A worker process's loop: claim a job (or a sweep's queued members) and train it, until shutdown."""

import contextlib
import logging
import threading

from service.db import session_scope
from service.db_faults import FAULTS, database_fault
from service.logs import job_logging
from service.models import Job
from service.services import rounds
from service.settings import Settings
from service.wakeup import Listener
from workers.attempt import run_attempt
from workers.auto_batch import run_batch
from workers.claims import claim
from workers.groups import run_sweep_members
from workers.ledger import Ledger, Member
from workers.registry import Registration

log = logging.getLogger("fitserve.worker")
# the longest wait between a worker's tries while the database's disk is full: each try that claims a job and meets
# it again hands the job back, an interruption (FITSERVE_MAX_INTERRUPTIONS), so tries space out to one a minute
MAX_FAULT_PAUSE_SECONDS = 60.0


def start_next_round(sweep_id: str, settings: Settings) -> None:
    """A TPE sweep whose round just ended: its next round at once, rather than at the next maintenance loop pass."""
    try:
        with session_scope() as s:
            rounds.start_next_round(s, sweep_id, settings)
    except Exception:  # the maintenance loops try again
        log.exception("sweep %s: the next round could not be made", sweep_id)


def work(
    worker_id: str, settings: Settings, gpu: int | None, shutdown: threading.Event, registration: Registration
) -> None:
    """Claim and train jobs until `shutdown` is set; idle, wait for a wake-up or the next poll."""
    listener, pause = Listener(settings.DATABASE_URL), 0.0
    try:
        while not shutdown.is_set():
            try:
                # the claim names its job as this worker's current one; the job done, the worker shows it until
                # the next claim, which names the next job, or finds none and clears it (two writes less a job)
                jobs = claim(worker_id, settings, registration, gpu)
                if jobs:
                    train(jobs, worker_id, settings, gpu, shutdown)
                else:
                    if registration.job_id is not None:
                        registration.set_job(None)
                    listener.wait(settings.POLL_SECONDS, shutdown)
                pause = 0.0
            except Exception as exc:  # the database's disk full, its file corrupt: logged once, tried again later
                if FAULTS.meet(exc) is None:
                    raise
                pause = min(max(2 * pause, settings.POLL_SECONDS), MAX_FAULT_PAUSE_SECONDS)
                shutdown.wait(pause)
    finally:
        listener.close()


def train(jobs: list[Job], worker_id: str, settings: Settings, gpu: int | None, shutdown: threading.Event) -> None:
    """What one claim took: a job, the queued members of a sweep, or a job and its batch mates; their leases
    kept meanwhile, those waiting their turn included."""
    done = threading.Event()
    members = [Member.of(job) for job in jobs]
    threading.Thread(target=Ledger(worker_id).keep_leases, args=(members, settings.LEASE_SECONDS, done),
                     name=f"fitserve-leases-{jobs[0].id}", daemon=True).start()
    try:
        train_claimed(jobs, worker_id, settings, gpu, shutdown)
    except Exception as exc:
        if (fault := database_fault(exc)) is not None:  # not the jobs' doing: back to the queue, no attempt spent
            why = f"{fault.detail.split(' (')[0]}; handed back, resumes from its checkpoint"
            with contextlib.suppress(Exception):  # a write that fails too: their leases expire, and they are requeued
                Ledger(worker_id).hand_back(members, why)
        raise
    finally:
        done.set()


def train_claimed(jobs: list[Job], worker_id: str, settings: Settings, gpu: int | None, shutdown: threading.Event) -> None:
    job = jobs[0]
    if job.sweep_id is None and len(jobs) > 1:
        run_batch(jobs, worker_id, settings, gpu, shutdown)
        return
    if job.sweep_id is not None:
        log.info("sweep %s: %d members claimed by %s", job.sweep_id, len(jobs), worker_id)
        run_sweep_members(jobs, worker_id, settings, gpu, shutdown)
        start_next_round(job.sweep_id, settings)
        return
    with job_logging(job.id):
        log.info("job %s attempt %d claimed by %s", job.id, job.attempt, worker_id)
        run_attempt(job, worker_id, settings, gpu, shutdown)
