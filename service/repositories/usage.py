"""Queries that measure what an owner uses: jobs by status, stored bytes, training time."""

from datetime import datetime

from sqlalchemy import extract, func, literal, select
from sqlalchemy.orm import Session

from service.models import Checkpoint, Dataset, Job, JobStatus, JobWeights, MetricChunk, UTCDateTime
from service.repositories.jobs import owned_by

ENDED = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


def count_by_status(session: Session, owner_id: str | None) -> dict[str, int]:
    query = select(Job.status, func.count()).where(owned_by(Job.owner_id, owner_id)).group_by(Job.status)
    return {status: count for status, count in session.execute(query)}


def stored_bytes(session: Session, owner_id: str | None) -> dict[str, int]:
    """Byte lengths of the owner's stored blobs: curves, weights, checkpoints, datasets."""
    def of_jobs(table) -> int:
        query = select(func.sum(func.length(table.data))).join(Job, Job.id == table.job_id)
        return session.scalar(query.where(owned_by(Job.owner_id, owner_id))) or 0

    datasets = select(func.sum(func.length(Dataset.data))).where(owned_by(Dataset.owner_id, owner_id))
    return {
        "curves": of_jobs(MetricChunk),
        "weights": of_jobs(JobWeights),
        "checkpoints": of_jobs(Checkpoint),
        "datasets": session.scalar(datasets) or 0,
    }


def training_seconds(session: Session, owner_id: str | None, now: datetime, since: datetime | None = None) -> float:
    """Seconds the owner's jobs trained after `since` (all, if None): each job's latest attempt, from its start
    to its end, or to `now` while it runs."""
    now_ = literal(now, UTCDateTime())
    end = func.coalesce(Job.finished_at, now_)
    start = Job.started_at
    trained = owned_by(Job.owner_id, owner_id) & Job.started_at.is_not(None)
    trained &= Job.status.in_((*ENDED, JobStatus.RUNNING))
    if since is not None:
        since_ = literal(since, UTCDateTime())
        start = later_of(session, Job.started_at, since_)
        trained &= end > since_
    return float(session.scalar(select(func.sum(seconds_between(session, start, end))).where(trained)) or 0.0)


def later_of(session: Session, a, b):
    return func.greatest(a, b) if session.get_bind().dialect.name == "postgresql" else func.max(a, b)


def seconds_between(session: Session, start, end):
    if session.get_bind().dialect.name == "postgresql":
        return extract("epoch", end - start)
    return (func.julianday(end) - func.julianday(start)) * 86400.0


def owners(session: Session) -> list[str | None]:
    """Every owner that has jobs or datasets (None: the anonymous owner)."""
    query = select(Job.owner_id).union(select(Dataset.owner_id))
    return sorted(session.scalars(query), key=lambda owner: (owner is not None, owner or ""))
