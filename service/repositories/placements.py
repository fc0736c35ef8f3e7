"""Where running jobs train: what a GPU already holds, for a claim that places more on it (workers/claims.py)."""

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from service.models import Job, JobStatus

# PostgreSQL advisory locks (GPU_LOCKS, hashtext(node/device)): one claim places jobs on a GPU at a time
GPU_LOCKS = 16  # queue.OWNER_LOCKS is 15


def lock_gpu(session: Session, node: str, device: str) -> None:
    """Held until the claim commits, so the next claim on that GPU sees this one's jobs; SQLite serialises claims."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(GPU_LOCKS, func.hashtext(f"{node}/{device}"))))


def place_jobs(session: Session, job_ids: list[str], device: str, node: str) -> None:
    """Claimed jobs train on `device` of `node` (the run writes it again as it starts)."""
    session.execute(update(Job).where(Job.id.in_(job_ids)).values(device=device, node=node))


def held_on_gpu(session: Session, node: str, device: str) -> tuple[int, int]:
    """(summed estimates, count) of the jobs running on `device` of `node`; a job with no estimate counts as none."""
    query = select(func.coalesce(func.sum(Job.estimate_bytes), 0), func.count()).where(
        Job.status == JobStatus.RUNNING, Job.node == node, Job.device == device
    )
    held, count = session.execute(query).one()
    return int(held), int(count)
