"""Queries on the worker registry: register, heartbeat, list, expire."""

import os
import socket
import uuid
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from service.models import Job, JobStatus, Worker, utcnow


def new_worker_id() -> str:
    """An id for a worker this process starts: `host-pid-random`, the pid this process's (its pool's)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def pool_pid(worker_id: str) -> int | None:
    """The pid of the process that started the worker (`new_worker_id`), or None for an id of another form."""
    parts = worker_id.rsplit("-", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def heartbeat(session: Session, worker: Worker) -> None:
    """Renew the worker's row, inserting it again if a sweep expired it meanwhile (the process was stopped)."""
    now = utcnow()
    values = {"heartbeat_at": now, "job_id": worker.job_id, "gpu_free_bytes": worker.gpu_free_bytes}
    renewed = session.execute(update(Worker).where(Worker.id == worker.id).values(**values).returning(Worker.id)).scalar()
    if renewed is None:
        worker.heartbeat_at = now
        session.merge(worker)


def set_current_job(session: Session, worker_id: str, job_id: str | None) -> None:
    session.execute(update(Worker).where(Worker.id == worker_id).values(job_id=job_id, heartbeat_at=utcnow()))


def remove(session: Session, worker_ids: list[str]) -> None:
    session.execute(delete(Worker).where(Worker.id.in_(worker_ids)))


def list_live(session: Session, within_seconds: float) -> list[Worker]:
    """Workers that heartbeated within `within_seconds`, oldest first."""
    since = utcnow() - timedelta(seconds=within_seconds)
    query = select(Worker).where(Worker.heartbeat_at >= since).order_by(Worker.started_at, Worker.id)
    return list(session.scalars(query))


def gpu_total(session: Session, host: str, device: str, within_seconds: float | None = None) -> int | None:
    """The memory of GPU `device` of `host` as a worker registered it (one that heartbeated within
    `within_seconds`, if given); None when none did."""
    query = select(func.max(Worker.gpu_total_bytes)).where(Worker.host == host, Worker.device == device)
    if within_seconds is not None:
        query = query.where(Worker.heartbeat_at >= utcnow() - timedelta(seconds=within_seconds))
    return session.scalar(query)


def list_in_scope(session: Session, host: str, process_scope: str) -> list[tuple[str, int]]:
    """(id, pid) of the workers registered from this host and pid namespace: their pids can be checked here."""
    query = select(Worker.id, Worker.pid).where(Worker.host == host, Worker.process_scope == process_scope)
    return [tuple(row) for row in session.execute(query)]


def expire(session: Session, older_than_seconds: float) -> list[str]:
    """Delete the rows of workers silent for longer than `older_than_seconds`; their ids."""
    before = utcnow() - timedelta(seconds=older_than_seconds)
    return list(session.scalars(delete(Worker).where(Worker.heartbeat_at < before).returning(Worker.id)))


def oldest_queued_at(session: Session) -> datetime | None:
    return session.scalar(select(func.min(Job.created_at)).where(Job.status == JobStatus.QUEUED))


def owned_job_ids(session: Session, job_ids: list[str], owner_id: str | None) -> set[str]:
    """Which of these jobs the owner may see."""
    if not job_ids:
        return set()
    owner = Job.owner_id.is_(None) if owner_id is None else Job.owner_id == owner_id
    return set(session.scalars(select(Job.id).where(Job.id.in_(job_ids), owner)))
