"""Claiming a job's batch mates: queued jobs of its batch key, taken with it in the claim's transaction.

Fair share decides what a batch takes, as it decides claims (repositories/queue.py): each owner's
candidates are numbered in its own order (priority, then age); an owner's n-th candidate comes after
every owner's (n-1)-th, counting the jobs each already has running, so four owners with queued mates
get about a quarter of the batch each; with FITSERVE_MAX_RUNNING_PER_OWNER an owner gets no more
than its room. The jobs are then claimed in one UPDATE ... RETURNING, skipping any another claim holds.
"""

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from service.models import Job, JobStatus
from service.repositories.jobs import claim_update
from service.repositories.queue import ANONYMOUS, OWNER_LOCKS


def _candidates(session: Session, key: str, exclude: str, limit: int) -> list[tuple[str, str, int]]:
    """(id, owner, turn) of up to `limit` queued jobs per owner with this key, turn 1 for an owner's first."""
    owner = func.coalesce(Job.owner_id, ANONYMOUS)
    turn = func.row_number().over(partition_by=owner, order_by=(Job.priority.desc(), Job.created_at, Job.id))
    ranked = (
        select(Job.id, owner.label("owner"), turn.label("turn"))
        .where(Job.batch_key == key, Job.status == JobStatus.QUEUED, Job.sweep_id.is_(None), Job.id != exclude)
        .subquery()
    )
    return [tuple(row) for row in session.execute(select(ranked).where(ranked.c.turn <= limit))]


def _running(session: Session, owners: set[str]) -> dict[str, int]:
    owner = func.coalesce(Job.owner_id, ANONYMOUS)
    rows = session.execute(
        select(owner, func.count()).where(Job.status == JobStatus.RUNNING, owner.in_(owners)).group_by(owner)
    )
    return {o: 0 for o in owners} | {o: n for o, n in rows}


def _lock_owners(session: Session, owners: set[str], held: str) -> set[str]:
    """PostgreSQL: the owners whose cap lock this claim can take without waiting (it holds `held`'s already).

    Never waits: two claims that each hold one owner's lock and wait for the other's would deadlock.
    """
    if session.get_bind().dialect.name != "postgresql":
        return owners
    locked = {held} & owners
    for owner in sorted(owners - locked):
        if session.scalar(select(func.pg_try_advisory_xact_lock(OWNER_LOCKS, func.hashtext(owner)))):
            locked.add(owner)
    return locked


def pick_fairly(candidates, running: dict[str, int], limit: int, max_running: int | None) -> list[str]:
    """Round robin over owners, fewest running first, each under its cap; the ids in the order taken."""
    if max_running is not None:
        candidates = [c for c in candidates if running[c[1]] + c[2] <= max_running]
    ordered = sorted(candidates, key=lambda c: (running[c[1]] + c[2], running[c[1]], c[1]))
    return [job_id for job_id, _, _ in ordered[:limit]]


def claim_batch_mates(
    session: Session, job: Job, worker_id: str, lease_seconds: float, limit: int, max_running: int | None
) -> list[str]:
    """Claim up to `limit` queued jobs that share `job`'s batch key (fair share and caps as above): their ids,
    in the order taken (load them with jobs.get_jobs, after the commit where the claim holds SQLite's lock)."""
    if job.batch_key is None or limit <= 0:
        return []
    candidates = _candidates(session, job.batch_key, job.id, limit)
    if not candidates:
        return []
    owners = {owner for _, owner, _ in candidates}
    if max_running is not None:
        owners = _lock_owners(session, owners, job.owner_id if job.owner_id is not None else ANONYMOUS)
        candidates = [c for c in candidates if c[1] in owners]
    chosen = pick_fairly(candidates, _running(session, owners), limit, max_running)
    if not chosen:
        return []
    # PostgreSQL: rows another claim holds are skipped, never waited on (two claims each waiting on a mate
    # the other took first would deadlock); SQLite serialises claims anyway
    free = select(Job.id).where(Job.id.in_(chosen), Job.status == JobStatus.QUEUED).with_for_update(skip_locked=True)
    claimed = set(session.connection().scalars(claim_update(Job.id.in_(free), worker_id, lease_seconds)))
    return [job_id for job_id in chosen if job_id in claimed]


def unclaim(session: Session, worker_id: str, job_ids: list[str]) -> None:
    """Put claimed batch mates back in the queue untouched, as if never claimed (their attempt not spent)."""
    if job_ids:
        session.execute(
            update(Job)
            .where(Job.id.in_(job_ids), Job.worker_id == worker_id, Job.status == JobStatus.RUNNING)
            .values(status=JobStatus.QUEUED, worker_id=None, lease_expires_at=None, attempt=Job.attempt - 1)
        )
