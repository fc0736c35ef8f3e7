"""A worker process's loop: claim a job (or a sweep's queued members) and train it, until shutdown."""

import logging
import threading

from service.db import session_scope
from service.logs import job_logging
from service.models import Job
from service.repositories import jobs as job_repo
from service.settings import Settings
from service.wakeup import Listener
from workers.sweep_runner import run_sweep_members
from workers.worker import claim, run_attempt

log = logging.getLogger("fitserve.worker")


def work(worker_id: str, settings: Settings, gpu: int | None, shutdown: threading.Event) -> None:
    """Claim and train jobs until `shutdown` is set; idle, wait for a wake-up or the next poll."""
    listener = Listener(settings.DATABASE_URL)
    try:
        while not shutdown.is_set():
            job = claim(worker_id, settings)
            if job is None:
                listener.wait(settings.POLL_SECONDS, shutdown)
            else:
                train(job, worker_id, settings, gpu, shutdown)
    finally:
        listener.close()


def train(job: Job, worker_id: str, settings: Settings, gpu: int | None, shutdown: threading.Event) -> None:
    """One claimed job, or a sweep: this job and every queued member of its sweep."""
    if job.sweep_id is not None:
        with session_scope() as s:
            siblings = job_repo.claim_sweep_members(s, job.sweep_id, worker_id, settings.LEASE_SECONDS)
        log.info("sweep %s: %d members claimed by %s", job.sweep_id, 1 + len(siblings), worker_id)
        run_sweep_members([job, *siblings], worker_id, settings, gpu, shutdown)
        return
    with job_logging(job.id):
        log.info("job %s attempt %d claimed by %s", job.id, job.attempt, worker_id)
        run_attempt(job, worker_id, settings, gpu, shutdown)
