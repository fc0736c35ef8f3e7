"""Webhooks: the events of jobs and sweeps that asked (`notify`), each recorded once as a delivery to send.

No path that ends a job knows of them, and no worker: the API's delivery thread (services/deliveries.py) calls
`collect_events` every FITSERVE_WEBHOOK_POLL_SECONDS. A job (or sweep) that notifies carries `notified_status`,
the status last looked at; one whose status moved past it is found by a partial index that holds only the open
ones, and taken by a guarded update (one process wins), in the transaction that records its deliveries. A sweep's
members carry it too, so a member's change has its sweep looked at: the sweep's status is its members' (as
GET /v1/sweeps/{id} answers it).
"""

from __future__ import annotations

import logging
import secrets

from pydantic_core import to_json
from sqlalchemy.orm import Session

from fitserve.schemas import DeliveryAttemptPublic, DeliveryList, DeliveryPublic
from service.db import session_scope
from service.errors import NotFound
from service.models import Job, JobStatus, Sweep, WebhookDelivery, WebhookSecret, new_id, utcnow
from service.repositories import jobs as job_repo
from service.repositories import sweeps as sweep_repo
from service.repositories import webhooks as repo
from service.schemas.sweeps import SweepProgress
from service.services.sweeps import status_of

log = logging.getLogger("fitserve.webhooks")

BATCH = 200  # jobs looked at per collection at most; the rest at the next
MAX_ERROR_CHARS = 1000  # of a failed job's error, in a delivery's body


def owner_key(owner_id: str | None) -> str:
    return owner_id or ""  # the anonymous owner (keys off)


def collect_events() -> int:
    """Record a delivery for each subscribed event of the jobs and sweeps whose status moved; how many jobs this
    call took (BATCH: there may be more)."""
    with session_scope(read_only=True) as s:  # most ticks find nothing: no write lock taken for that
        moved = repo.jobs_moved(s, BATCH)
        cancelled = repo.cancelled_open_sweeps(s)
    if not moved and not cancelled:
        return 0
    taken = 0
    with session_scope() as s:
        touched = set(cancelled)
        for job in moved:
            if not repo.mark_seen(s, Job, job.id, job.notified_status, job.status):
                continue  # another API process took this change, or the row is busy: the next poll
            taken += 1
            if job.sweep_id is not None:
                touched.add(job.sweep_id)
            if job.notify:
                started = job.started_at is not None
                for event in new_events(s, job.notify, job.status, started, job_id=job.id):
                    add_delivery(s, job.owner_id, event, job.notify["url"], "job", job_facts(job), job_id=job.id)
        if touched:
            look_at_sweeps(s, touched)
    return taken


def new_events(session: Session, notify: dict, status: str, started: bool, **subject: str) -> list[str]:
    """The subscribed events the subject has reached and not yet told: `started`, then its end."""
    reached = (["started"] if started else []) + ([status] if JobStatus(status).is_final else [])
    wanted = [event for event in reached if event in notify["events"]]
    told = repo.told_events(session, **subject) if wanted else set()
    return [event for event in wanted if event not in told]


def look_at_sweeps(session: Session, sweep_ids: set[str]) -> None:
    """Each open sweep of these: its status from its members' counts, and deliveries for what it reached."""
    sweeps = repo.open_sweeps(session, sweep_ids)
    counts: dict[str, list] = {sweep.id: [] for sweep in sweeps}
    for row in repo.member_counts(session, list(counts)) if counts else []:
        counts[row[0]].append(row)
    for sweep in sweeps:
        progress, started = sweep_progress(counts[sweep.id])
        status = status_of(sweep, progress)
        if status == sweep.notified_status or not repo.mark_seen(session, Sweep, sweep.id, sweep.notified_status, status):
            continue
        if sweep.notify:
            facts = sweep_facts(sweep, status, progress)
            for event in new_events(session, sweep.notify, status, started, sweep_id=sweep.id):
                add_delivery(session, sweep.owner_id, event, sweep.notify["url"], "sweep", facts, sweep_id=sweep.id)


def sweep_progress(rows: list) -> tuple[SweepProgress, bool]:
    """The members' progress, and whether any has started, from (sweep_id, status, members, started, epoch,
    epochs) rows."""
    by_status = {status: members for _, status, members, _, _, _ in rows}
    progress = SweepProgress(
        members=sum(by_status.values()), **{s.value: by_status.get(s.value, 0) for s in JobStatus},
        epochs_done=sum(row[4] or 0 for row in rows), epochs_total=sum(row[5] or 0 for row in rows),
    )
    return progress, any(row[3] for row in rows)


def add_delivery(session: Session, owner_id: str | None, event: str, url: str, kind: str, facts: dict,
                 **subject: str) -> None:
    delivery_id, now = new_id(), utcnow()
    body = {"id": delivery_id, "event": event, "created_at": now, kind: facts}
    repo.add_delivery(session, WebhookDelivery(
        id=delivery_id, owner_key=owner_key(owner_id), event=event, url=url,
        body=to_json(body, inf_nan_mode="null").decode(), attempts=0, next_attempt_at=now, created_at=now, **subject,
    ))
    log.info("webhook %s: %s of %s %s", delivery_id, event, kind, next(iter(subject.values())))


def job_facts(job) -> dict:
    """What a delivery tells of a job: enough to act on, with no spec (a dataset may be inline) and no url secret."""
    return {
        "id": job.id, "name": job.name, "status": job.status, "sweep_id": job.sweep_id, "tags": job.tags or {},
        "progress": {"epoch": job.epoch, "epochs": job.epochs}, "metrics": job.latest_metrics,
        "best_metrics": job.best_metrics, "stop_reason": job.stop_reason,
        "error": job.error[:MAX_ERROR_CHARS] if job.error else None,
        "created_at": job.created_at, "started_at": job.started_at, "finished_at": job.finished_at,
    }


def sweep_facts(sweep, status: str, progress: SweepProgress) -> dict:
    return {"id": sweep.id, "name": sweep.name, "status": status, "tags": sweep.tags or {},
            "progress": progress.model_dump()}


def read_secret(session: Session, owner_id: str | None) -> WebhookSecret:
    """The owner's signing secret, made at its first use: the first GET, rotation, or delivery."""
    key = owner_key(owner_id)
    found = repo.get_secret(session, key)
    if found is not None:
        return found
    # a GET's own session only reads (it never takes SQLite's write lock): the secret is made in one of its own
    with session_scope() as own:
        return ensure_secret(own, key)


def ensure_secret(session: Session, key: str) -> WebhookSecret:
    repo.put_secret(session, key, new_secret(), utcnow(), replace=False)
    return repo.get_secret(session, key)


def rotate_secret(session: Session, owner_id: str | None) -> WebhookSecret:
    """A new secret in place of the owner's: every attempt from now on, retries included, is signed with it."""
    key = owner_key(owner_id)
    repo.put_secret(session, key, new_secret(), utcnow(), replace=True)
    return repo.get_secret(session, key)


def new_secret() -> str:
    return secrets.token_hex(32)


def list_deliveries(session: Session, owner_id: str | None, job_id: str | None = None,
                    sweep_id: str | None = None) -> DeliveryList:
    """A job's (or sweep's) deliveries and their attempts; 404 unless the caller owns it."""
    if job_id is not None and job_repo.get_job(session, job_id, owner_id) is None:
        raise NotFound(f"no job {job_id!r}")
    if sweep_id is not None and sweep_repo.get_sweep(session, sweep_id, owner_id) is None:
        raise NotFound(f"no sweep {sweep_id!r}")
    deliveries, attempts = repo.list_deliveries(session, job_id=job_id, sweep_id=sweep_id)
    return DeliveryList(items=[delivery_public(d, attempts[d.id]) for d in deliveries])


def delivery_public(delivery: WebhookDelivery, attempts: list) -> DeliveryPublic:
    pending = delivery.status == "pending"
    return DeliveryPublic(
        id=delivery.id, event=delivery.event, url=delivery.url, status=delivery.status,
        created_at=delivery.created_at, next_attempt_at=delivery.next_attempt_at if pending else None,
        ended_at=delivery.ended_at, attempts=[DeliveryAttemptPublic.model_validate(a) for a in attempts],
    )
