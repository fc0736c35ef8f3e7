"""Claiming: the next queued job, with the jobs that train with it, in one transaction."""

from __future__ import annotations

from service.db import session_scope
from service.models import Job
from service.repositories import jobs as job_repo
from service.repositories import queue as queue_repo
from service.repositories import sweeps as sweep_repo
from service.settings import Settings
from workers.auto_batch import claim_mates


def claim(worker_id: str, settings: Settings, registration=None) -> list[Job]:
    """The next queued job, with every queued member of its sweep when it is one, or with the queued jobs
    that can train batched with it (workers/auto_batch.py), in one transaction; with a `registration`
    (workers/registry.py), that transaction also names the job as the worker's current one.

    One transaction, so no other worker takes part of the sweep meanwhile (see `claim_next_job`): its
    members train together, as many as FITSERVE_MAX_RUNNING_PER_OWNER leaves room for (each counts as a
    running job); the others wait for a later claim. A sweep that trains one by one is claimed a member at a
    time. Empty when nothing may be claimed.
    """
    cap = running_cap(settings)
    with session_scope() as s:
        job = job_repo.claim_next_job(s, worker_id, settings.LEASE_SECONDS, settings.CLAIM_ORDER, cap)
        if job is None:
            return []
        mate_ids = claim_mates_of(s, job, worker_id, settings)
        if registration is not None:
            registration.set_job_in(s, job.id)
    if not mate_ids:
        return [job]
    # read after the commit: on SQLite every other writer waits while a claim's transaction is open
    with session_scope(read_only=True) as s:
        return [job, *job_repo.get_jobs(s, mate_ids)]


def running_cap(settings: Settings) -> int | None:
    """FITSERVE_MAX_RUNNING_PER_OWNER where claims take turns between owners (CLAIM_ORDER=fair)."""
    return settings.MAX_RUNNING_PER_OWNER if settings.CLAIM_ORDER == "fair" else None


def claim_mates_of(session, job: Job, worker_id: str, settings: Settings) -> list[str]:
    """What trains with a job just claimed, in the claim's transaction: the queued members of its sweep, or
    the queued jobs that can train batched with it (workers/auto_batch.py); their ids."""
    cap = running_cap(settings)
    if job.sweep_id is None:
        return claim_mates(session, job, worker_id, settings, cap)
    if sweep_repo.trains_one_at_a_time(session, job.sweep_id):
        return []  # one member a claim: the sweep's others wait their fair turn with every owner's jobs
    room = None if cap is None else queue_repo.room_to_run(session, job.owner_id, cap)
    return job_repo.claim_sweep_members(session, job.sweep_id, worker_id, settings.LEASE_SECONDS, room)
