"""Deleting jobs, sweeps and datasets, with everything they own.

A running job is deleted at once, in the same transaction that checks its owner: its worker's every
write is guarded (`jobs._ours`: this job, this worker, this attempt, still running), so the worker's
next report or lease renewal finds no job, stops training it and writes nothing more. That is the
worker's way of seeing a cancel or a rescue; deletion needs no state of its own.
"""

from sqlalchemy.orm import Session

from service.errors import Conflict
from service.repositories import lifecycle as lifecycle_repo
from service.services.datasets import get_dataset
from service.services.jobs import get_job
from service.services.sweeps import get_sweep


def delete_job(session: Session, job_id: str, owner_id: str | None) -> list[str]:
    """Delete one of the owner's jobs (404 for anyone else's); returns the ids deleted."""
    job = get_job(session, job_id, owner_id)
    lifecycle_repo.delete_jobs(session, [job.id])
    return [job.id]


def delete_sweep(session: Session, sweep_id: str, owner_id: str | None) -> list[str]:
    """Delete one of the owner's sweeps and every member, running ones too; returns the member ids deleted."""
    sweep = get_sweep(session, sweep_id, owner_id)
    member_ids = lifecycle_repo.member_ids(session, sweep.id)
    lifecycle_repo.delete_sweep(session, sweep.id)
    return member_ids


def delete_dataset(session: Session, dataset_id: str, owner_id: str | None) -> None:
    """Delete one of the owner's datasets; 409 while a queued or running job trains on it."""
    dataset = get_dataset(session, dataset_id, owner_id)
    users = lifecycle_repo.dataset_users(session, dataset.id)
    if users:
        named = ", ".join(f"{job_id} ({status})" for job_id, status in users)
        raise Conflict(f"dataset {dataset_id} is used by queued or running jobs: {named}; cancel or delete them first")
    lifecycle_repo.delete_dataset(session, dataset.id)
