"""Aliases: an owner's second names for jobs (`/v2/models/{alias}`), and the history of which job each named."""

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.models import AliasAssignment, Job, utcnow
from service.repositories.jobs import owned_by


def get_job_by_alias(session: Session, alias: str, owner_id: str | None) -> Job | None:
    return session.scalar(select(Job).where(Job.alias == alias, owned_by(Job.owner_id, owner_id)))


def set_alias(session: Session, job: Job, alias: str | None) -> bool:
    """Name `job` by `alias` (None: by none), closing the history of the alias it had. False, with nothing
    changed, when another job holds the alias: one set by a concurrent request since it was looked up."""
    if job.alias == alias:
        return True
    try:
        with session.begin_nested():  # uq_jobs_owner_id_alias decides a race between two requests
            session.execute(update(Job).where(Job.id == job.id).values(alias=alias))
    except IntegrityError:
        return False
    now = utcnow()
    if job.alias is not None:
        release(session, job.owner_id, job.alias, now)
    if alias is not None:
        session.add(AliasAssignment(owner_id=job.owner_id, alias=alias, job_id=job.id, assigned_at=now))
    session.flush()
    session.refresh(job)
    return True


def release(session: Session, owner_id: str | None, alias: str, now=None) -> None:
    """End the alias's open assignment in its history."""
    session.execute(
        update(AliasAssignment)
        .where(owned_by(AliasAssignment.owner_id, owner_id), AliasAssignment.alias == alias,
               AliasAssignment.released_at.is_(None))
        .values(released_at=now or utcnow())
    )


def release_jobs(session: Session, job_ids: list[str]) -> None:
    """The jobs are being deleted: their aliases' assignments end now."""
    session.execute(
        update(AliasAssignment)
        .where(AliasAssignment.job_id.in_(job_ids), AliasAssignment.released_at.is_(None))
        .values(released_at=utcnow())
    )


def history(session: Session, owner_id: str | None, alias: str, limit: int) -> list[AliasAssignment]:
    """The alias's assignments, newest first."""
    query = (
        select(AliasAssignment)
        .where(owned_by(AliasAssignment.owner_id, owner_id), AliasAssignment.alias == alias)
        .order_by(AliasAssignment.id.desc())
        .limit(limit)
    )
    return list(session.scalars(query))
