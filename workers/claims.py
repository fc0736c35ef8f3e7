"""Claiming: the next queued job, with the jobs that train with it, in one transaction.

A GPU worker's claim also places its jobs on a GPU (jobs.device and jobs.node, written in the claim): never
where their estimates, with those of the jobs already running on that GPU of this node, would exceed the
GPU's memory as its worker registered it. Such a claim is undone and tried again at the next poll: the job
stays first in the queue and waits for room (nothing else starts on that worker meanwhile, so it is not
starved by smaller jobs). A claim that alone exceeds the GPU starts, alone: submit refuses such CUDA jobs
whenever a GPU is registered, so only one queued before any was gets here, and waiting would hold the queue
forever; if it runs out of memory it fails, naming its estimate and the GPU.
"""

from __future__ import annotations

from service.db import session_scope
from service.models import Job
from service.repositories import jobs as job_repo
from service.repositories import placements as placement_repo
from service.repositories import queue as queue_repo
from service.repositories import sweeps as sweep_repo
from service.repositories import workers as worker_repo
from service.settings import Settings
from workers.auto_batch import claim_mates
from workers.devices import placement, this_node


class NoRoomOnGpu(Exception):
    """A claim's jobs would not fit beside those running on their GPU: the claim is undone."""


def claim(worker_id: str, settings: Settings, registration=None, gpu: int | None = None) -> list[Job]:
    """The next queued job, with every queued member of its sweep when it is one, or with the queued jobs
    that can train batched with it (workers/auto_batch.py), in one transaction; with a `registration`
    (workers/registry.py), that transaction also names the job as the worker's current one.

    One transaction, so no other worker takes part of the sweep meanwhile (see `claim_next_job`): its
    members train together, as many as FITSERVE_MAX_RUNNING_PER_OWNER leaves room for (each counts as a
    running job); the others wait for a later claim. A sweep that trains one by one is claimed a member at a
    time. A worker with a `gpu` places what it claims (see the module's docstring). Empty when nothing may be
    claimed.
    """
    cap = running_cap(settings)
    # an idle worker asks at every poll: a read answers it for a tenth of the transaction's CPU on SQLite (a quarter
    # on PostgreSQL), without taking SQLite's write lock that API writes wait for (bench/idle_claims.py)
    with session_scope(read_only=True) as s:
        if not job_repo.any_queued(s):
            return []
    try:
        with session_scope() as s:
            job = job_repo.claim_next_job(s, worker_id, settings.LEASE_SECONDS, settings.CLAIM_ORDER, cap)
            if job is None:
                return []
            mate_ids = claim_mates_of(s, job, worker_id, settings)
            if gpu is not None:
                place_on_gpu(s, [job.id, *mate_ids], placement(job.spec.get("device", "auto"), gpu), settings)
            if registration is not None:
                registration.set_job_in(s, job.id)
    except NoRoomOnGpu:
        return []
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


def place_on_gpu(session, job_ids: list[str], device: str, settings: Settings) -> None:
    """Claimed jobs train on `device` of this node; NoRoomOnGpu when, with jobs already running there, their
    estimates would exceed the GPU's registered memory. CPU jobs of a GPU worker are not placed here."""
    if device == "cpu":
        return
    node = this_node()
    placement_repo.lock_gpu(session, node, device)
    placement_repo.place_jobs(session, job_ids, device, node)
    total = worker_repo.gpu_total(session, node, device, settings.LEASE_SECONDS)
    held, running = placement_repo.held_on_gpu(session, node, device)  # the claimed jobs included
    if total is not None and running > len(job_ids) and held > total:
        raise NoRoomOnGpu
