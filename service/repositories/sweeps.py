"""Queries on sweeps and their member jobs."""

from datetime import datetime

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from service.models import Job, JobStatus, Sweep
from service.repositories.jobs import owned_by


def add_sweep(session: Session, sweep: Sweep, members: list[Job]) -> Sweep:
    session.add(sweep)
    session.flush()
    for job in members:
        job.sweep_id = sweep.id
    session.add_all(members)
    session.flush()
    return sweep


def get_sweep(session: Session, sweep_id: str, owner_id: str | None) -> Sweep | None:
    return session.scalar(select(Sweep).where(Sweep.id == sweep_id, owned_by(Sweep.owner_id, owner_id)))


def list_sweeps(session: Session, owner_id: str | None, after: tuple[datetime, str] | None, limit: int) -> list[Sweep]:
    query = select(Sweep).where(owned_by(Sweep.owner_id, owner_id))
    if after is not None:
        created_at, sweep_id = after
        query = query.where(or_(Sweep.created_at < created_at, and_(Sweep.created_at == created_at, Sweep.id < sweep_id)))
    return list(session.scalars(query.order_by(Sweep.created_at.desc(), Sweep.id.desc()).limit(limit)))


def list_members(session: Session, sweep_ids: list[str]) -> list[Job]:
    """Every member of these sweeps, in the order they were made."""
    query = select(Job).where(Job.sweep_id.in_(sweep_ids)).order_by(Job.created_at, Job.id)
    return list(session.scalars(query))


def has_live_members(session: Session, sweep_id: str) -> bool:
    """Whether any member is queued or running."""
    live = select(Job.id).where(Job.sweep_id == sweep_id, Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]))
    return session.scalar(select(live.exists())) is True


def mark_cancel_requested(session: Session, sweep_id: str) -> None:
    """Cancelled: and a TPE sweep makes no more rounds."""
    session.execute(update(Sweep).where(Sweep.id == sweep_id).values(cancel_requested=True, search_rounds_left=0))


def set_execution(session: Session, sweep_id: str, execution: str) -> None:
    session.execute(update(Sweep).where(Sweep.id == sweep_id).values(execution=execution[:200]))


ONE_BY_ONE = "one by one"  # how a sweep's `execution` opens once its members train one at a time (workers/groups.py)


def trains_one_at_a_time(session: Session, sweep_id: str) -> bool:
    """Whether a claim of this sweep's member takes that member alone: the sweep trains one by one (as asked, or
    as a worker found: its `execution` says so) and is no adaptive search (ASHA and PBT members train in turn,
    all held by one worker until the search decides)."""
    request, execution = session.execute(select(Sweep.request, Sweep.execution).where(Sweep.id == sweep_id)).one()
    if request.get("search") in ("asha", "pbt") or request.get("asha"):
        return False
    return request.get("execution") == "one_by_one" or (execution or "").startswith(ONE_BY_ONE)


def add_members(session: Session, sweep_id: str, members: list[Job]) -> None:
    """A later round's members (TPE), and the sweep's size grown by them."""
    for job in members:
        job.sweep_id = sweep_id
    session.add_all(members)
    session.flush()
    session.execute(update(Sweep).where(Sweep.id == sweep_id).values(size=Sweep.size + len(members)))


def take_round(session: Session, sweep_id: str, rounds_left: int) -> bool:
    """Claim the creation of a sweep's next round: False when another process already took it."""
    done = session.execute(
        update(Sweep).where(Sweep.id == sweep_id, Sweep.search_rounds_left == rounds_left)
        .values(search_rounds_left=rounds_left - 1)
    )
    return done.rowcount == 1


def end_rounds(session: Session, sweep_id: str) -> None:
    """A search past its max_seconds makes no more rounds."""
    session.execute(update(Sweep).where(Sweep.id == sweep_id).values(search_rounds_left=0))


def with_rounds_left(session: Session) -> list[Sweep]:
    """TPE sweeps with rounds still to create."""
    return list(session.scalars(select(Sweep).where(Sweep.search_rounds_left > 0)))
