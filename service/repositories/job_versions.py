"""What a watcher counts as a change of a job, read for many jobs at once."""

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.models import Job

IDS_PER_QUERY = 500  # an IN list this long stays well under every back end's bound on parameters

JobVersion = tuple[str, int, int, bool, int]  # status, epochs done, latest step, cancel requested, attempt


def version_of(
    status: str, epoch: int, latest_metrics: dict | None, cancel_requested: bool, attempt: int
) -> JobVersion:
    return str(status), epoch, int((latest_metrics or {}).get("step", 0)), bool(cancel_requested), attempt


def list_versions(session: Session, job_ids: list[str]) -> dict[str, JobVersion]:
    """The version of each of these jobs that exists, whoever owns it (the caller checked ownership)."""
    columns = (Job.id, Job.status, Job.epoch, Job.latest_metrics, Job.cancel_requested, Job.attempt)
    versions: dict[str, JobVersion] = {}
    for start in range(0, len(job_ids), IDS_PER_QUERY):
        for job_id, *fields in session.execute(
            select(*columns).where(Job.id.in_(job_ids[start : start + IDS_PER_QUERY]))
        ):
            versions[job_id] = version_of(*fields)
    return versions
