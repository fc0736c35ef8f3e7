"""The query behind the v2 repository index: an owner's jobs as models, newest first."""

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.models import Job, JobStatus
from service.repositories.jobs import owned_by


def list_models(session: Session, owner_id: str | None, ready_only: bool, limit: int) -> list[tuple[str, str]]:
    """(job id, status) of the owner's newest `limit` jobs; only succeeded ones when `ready_only`."""
    query = select(Job.id, Job.status).where(owned_by(Job.owner_id, owner_id))
    if ready_only:
        query = query.where(Job.status == JobStatus.SUCCEEDED)
    return list(session.execute(query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)).tuples())
