"""The worker registry as callers see it, and what readiness asks of it."""

from __future__ import annotations

from sqlalchemy.orm import Session

from fitserve.schemas import WorkerList, WorkerPublic
from service.models import Worker, utcnow
from service.repositories import workers as worker_repo
from service.settings import Settings


def worker_state(worker: Worker) -> str:
    return "busy" if worker.job_id else "idle"


def list_workers(session: Session, owner_id: str | None, settings: Settings) -> WorkerList:
    """Live workers; a worker's job id only where the caller owns that job."""
    workers = worker_repo.list_live(session, settings.LEASE_SECONDS)
    visible = worker_repo.owned_job_ids(session, [w.job_id for w in workers if w.job_id], owner_id)
    return WorkerList(
        workers=[
            WorkerPublic(
                id=w.id, host=w.host, pid=w.pid, kind=w.kind, device=w.device, gpu_total_bytes=w.gpu_total_bytes,
                gpu_free_bytes=w.gpu_free_bytes, state=worker_state(w),
                job_id=w.job_id if w.job_id in visible else None, started_at=w.started_at, heartbeat_at=w.heartbeat_at,
            )
            for w in workers
        ],
        lease_seconds=settings.LEASE_SECONDS,
    )


def unready_reason(session: Session, settings: Settings) -> str | None:
    """Why this API cannot get work done now, or None: no live worker where it runs one, or stale queued work."""
    live = worker_repo.list_live(session, settings.LEASE_SECONDS)
    if live:
        return None
    if settings.READY_REQUIRES_WORKER:
        return f"no worker has heartbeated within {settings.LEASE_SECONDS:g} s"
    oldest = worker_repo.oldest_queued_at(session)
    if oldest is not None and (utcnow() - oldest).total_seconds() > settings.READY_QUEUE_SECONDS:
        return f"jobs have been queued for over {settings.READY_QUEUE_SECONDS:g} s and no worker lives to take them"
    return None
