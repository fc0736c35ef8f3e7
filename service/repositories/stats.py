"""Queries behind the Prometheus metrics: jobs by status, running progress, time spent training."""

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.models import Job, JobStatus

FINAL = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


def count_by_status(session: Session) -> dict[str, int]:
    return dict(session.execute(select(Job.status, func.count()).group_by(Job.status)).tuples().all())


def running_progress(session: Session) -> list[tuple[str, int, datetime | None]]:
    """(job id, epochs completed, started_at of this attempt) of each running job."""
    query = select(Job.id, Job.epoch, Job.started_at).where(Job.status == JobStatus.RUNNING)
    return list(session.execute(query).tuples())


def finished_spans(session: Session) -> list[tuple[datetime, datetime]]:
    """(started_at, finished_at) of each finished job that ran; summed in Python to stay portable across back ends."""
    query = select(Job.started_at, Job.finished_at).where(
        Job.status.in_(FINAL), Job.started_at.is_not(None), Job.finished_at.is_not(None)
    )
    return list(session.execute(query).tuples())
