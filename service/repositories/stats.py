"""Queries behind the Prometheus metrics: running progress (job counts and training time: repositories/job_counts.py)."""

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.models import Job, JobStatus

FINAL = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


def running_progress(session: Session) -> list[tuple[str, int, datetime | None]]:
    """(job id, epochs completed, started_at of this attempt) of each running job."""
    query = select(Job.id, Job.epoch, Job.started_at).where(Job.status == JobStatus.RUNNING)
    return list(session.execute(query).tuples())
