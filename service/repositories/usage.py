"""Queries that measure what an owner uses: jobs by status, stored bytes, training time.

Jobs, stored bytes (curves, weights, checkpoints, datasets) and the training time of ended jobs come from the
counters (repositories/job_counts.py); the rest reads only what stays small: the owner's running jobs and its jobs
that ended since `since`.
"""

from datetime import datetime

from sqlalchemy import extract, func, literal, select
from sqlalchemy.orm import Session

from service.models import Dataset, Job, JobStatus, UTCDateTime
from service.repositories import job_counts
from service.repositories.jobs import owned_by

ENDED = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
STORED = {"curves": "curve_bytes", "weights": "weights_bytes", "checkpoints": "checkpoint_bytes",
          "datasets": "dataset_bytes"}  # usage's name: the counters' column


def count_by_status(session: Session, owner_id: str | None) -> dict[str, int]:
    return {status: sums["jobs"] for status, sums in job_counts.of_owner(session, owner_id).items() if sums["jobs"]}


def stored_bytes(session: Session, owner_id: str | None) -> dict[str, int]:
    """Byte lengths of the owner's stored blobs: curves, weights, checkpoints, datasets (all from the counters)."""
    counted = job_counts.of_owner(session, owner_id).values()
    return {kind: int(sum(sums[column] for sums in counted)) for kind, column in STORED.items()}


def training_seconds(session: Session, owner_id: str | None, now: datetime, since: datetime | None = None) -> float:
    """Seconds the owner's jobs trained after `since` (all, if None): each job's latest attempt, from its start
    to its end, or to `now` while it runs.

    In all: the counters' ended jobs and the running ones. Since a time: the jobs that ended after it (one range
    of ix_jobs_owner_id_finished_at) and the running ones.
    """
    # no condition on started_at (a claim sets it): SQLite would read the owner's started jobs by it
    running = owned_by(Job.owner_id, owner_id) & (Job.status == JobStatus.RUNNING)
    seconds = _seconds_of(session, running, now, since)
    if since is None:
        ended = job_counts.of_owner(session, owner_id)
        return seconds + float(sum(ended.get(status, {}).get("training_seconds") or 0.0 for status in ENDED))
    ended = owned_by(Job.owner_id, owner_id) & (Job.finished_at > literal(since, UTCDateTime()))
    ended &= Job.status.in_(ENDED) & Job.started_at.is_not(None)
    return seconds + _seconds_of(session, ended, now, since)


def _seconds_of(session: Session, which, now: datetime, since: datetime | None) -> float:
    end = func.coalesce(Job.finished_at, literal(now, UTCDateTime()))
    start = Job.started_at if since is None else later_of(session, Job.started_at, literal(since, UTCDateTime()))
    return float(session.scalar(select(func.sum(seconds_between(session, start, end))).where(which)) or 0.0)


def later_of(session: Session, a, b):
    return func.greatest(a, b) if session.get_bind().dialect.name == "postgresql" else func.max(a, b)


def seconds_between(session: Session, start, end):
    if session.get_bind().dialect.name == "postgresql":
        return extract("epoch", end - start)
    return (func.julianday(end) - func.julianday(start)) * 86400.0


def owners(session: Session) -> list[str | None]:
    """Every owner that has jobs or datasets (None: the anonymous owner)."""
    with_jobs = set(job_counts.owners(session))
    found = with_jobs | set(session.scalars(select(Dataset.owner_id).distinct()))
    return sorted(found, key=lambda owner: (owner is not None, owner or ""))
