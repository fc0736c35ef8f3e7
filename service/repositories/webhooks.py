"""Queries for webhooks: jobs and sweeps with something to tell, deliveries and their attempts, owners' secrets.

Each per-tick query reads a partial index (models.py) that holds only open work: jobs and sweeps whose
notification is still open, pending deliveries. Nothing here grows with the history of ended jobs.
"""

from datetime import datetime

from sqlalchemy import and_, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from service.models import (
    NOTIFICATIONS_OPEN,
    DeliveryStatus,
    Job,
    Sweep,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSecret,
)

# the partial indexes' own predicate, word for word (SQLite uses such an index only for a query that names it),
# and a job seen queued or running that is now anything else: read from ix_jobs_notify_open alone, which holds
# (notified_status, status, id) of the open ones
OPEN = NOTIFICATIONS_OPEN
MOVED = and_(OPEN, Job.notified_status != Job.status)
JOB_FACTS = (Job.id, Job.owner_id, Job.sweep_id, Job.name, Job.status, Job.notified_status, Job.notify, Job.tags,
             Job.epoch, Job.epochs, Job.latest_metrics, Job.best_metrics, Job.stop_reason, Job.error,
             Job.created_at, Job.started_at, Job.finished_at)
# the sweep's own columns, and its request's notify (not the request: its base spec may hold a dataset inline)
SWEEP_FACTS = (Sweep.id, Sweep.owner_id, Sweep.name, Sweep.tags, Sweep.notified_status, Sweep.cancel_requested,
               Sweep.search_rounds_left, Sweep.request["notify"].label("notify"))


def jobs_moved(session: Session, limit: int) -> list:
    """Jobs whose status moved past the one last looked at, with what a delivery tells of them."""
    return list(session.execute(select(*JOB_FACTS).where(MOVED).limit(limit)))


def mark_seen(session: Session, model: type[Job] | type[Sweep], row_id: str, seen: str, status: str) -> bool:
    """The job's (or sweep's) status `status` looked at; False when another process took this change first, or
    (PostgreSQL) another transaction holds the row: it is looked at again at the next poll. Never waiting for a
    row lock, a collection cannot deadlock with a cancel that locks a sweep's members in another order."""
    row = select(model.id).where(model.id == row_id, model.notified_status == seen).with_for_update(skip_locked=True)
    done = session.execute(update(model).where(model.id == row.scalar_subquery())
                           .values(notified_status=status).returning(model.id))
    return done.scalar() is not None


def cancelled_open_sweeps(session: Session) -> list[str]:
    """Open notifying sweeps with a cancel asked for: one can end with no member changing (no round left to make)."""
    query = select(Sweep.id).where(OPEN, Sweep.cancel_requested.is_(True))
    return list(session.scalars(query))


def open_sweeps(session: Session, sweep_ids: set[str]) -> list:
    """Of these sweeps, those whose notification is open, with what a delivery tells of them."""
    return list(session.execute(select(*SWEEP_FACTS).where(OPEN, Sweep.id.in_(sweep_ids))))


def member_counts(session: Session, sweep_ids: list[str]) -> list:
    """(sweep_id, status, members, members started, epochs done, epochs in all), a row per sweep and status."""
    query = (select(Job.sweep_id, Job.status, func.count(), func.count(Job.started_at), func.sum(Job.epoch),
                    func.sum(Job.epochs))
             .where(Job.sweep_id.in_(sweep_ids)).group_by(Job.sweep_id, Job.status))
    return list(session.execute(query))


def told_events(session: Session, job_id: str | None = None, sweep_id: str | None = None) -> set[str]:
    subject = WebhookDelivery.job_id == job_id if job_id is not None else WebhookDelivery.sweep_id == sweep_id
    return set(session.scalars(select(WebhookDelivery.event).where(subject)))


def add_delivery(session: Session, delivery: WebhookDelivery) -> None:
    session.add(delivery)
    session.flush()


def due_deliveries(session: Session, now: datetime, full_owners: list[str], limit: int) -> list:
    """(id, owner_key, next_attempt_at) of pending deliveries due by `now`, the longest due first, of owners
    not in `full_owners` (those with all the attempts they may have under way)."""
    query = select(WebhookDelivery.id, WebhookDelivery.owner_key, WebhookDelivery.next_attempt_at).where(
        WebhookDelivery.status == DeliveryStatus.PENDING, WebhookDelivery.next_attempt_at <= now
    )
    if full_owners:
        query = query.where(WebhookDelivery.owner_key.not_in(full_owners))
    return list(session.execute(query.order_by(WebhookDelivery.next_attempt_at).limit(limit)))


def claim_delivery(session: Session, delivery_id: str, due_at: datetime, lease_until: datetime):
    """Start an attempt: the next attempt's time becomes a lease (another process may retry after it, should this
    one die meanwhile). None when another process claimed it first."""
    claimed = update(WebhookDelivery).where(
        WebhookDelivery.id == delivery_id, WebhookDelivery.status == DeliveryStatus.PENDING,
        WebhookDelivery.next_attempt_at == due_at,
    ).values(next_attempt_at=lease_until, attempts=WebhookDelivery.attempts + 1)
    columns = (WebhookDelivery.id, WebhookDelivery.owner_key, WebhookDelivery.event, WebhookDelivery.url,
               WebhookDelivery.body, WebhookDelivery.attempts, WebhookDelivery.created_at)
    return session.execute(claimed.returning(*columns)).first()


def finish_attempt(session: Session, attempt: WebhookAttempt, status: str, next_attempt_at: datetime | None,
                   ended_at: datetime | None) -> bool:
    """Record an attempt and what became of its delivery; False (nothing written) when the delivery is gone or
    no longer this attempt's (its lease ran out and another attempt began)."""
    done = session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == attempt.delivery_id, WebhookDelivery.attempts == attempt.number,
               WebhookDelivery.status == DeliveryStatus.PENDING)
        .values(status=status, next_attempt_at=next_attempt_at, ended_at=ended_at)
        .returning(WebhookDelivery.id)
    ).scalar()
    if done is None:
        return False
    session.add(attempt)
    session.flush()
    return True


def list_deliveries(session: Session, job_id: str | None = None, sweep_id: str | None = None):
    """The subject's deliveries, oldest first, and their attempts by delivery id, in order."""
    subject = WebhookDelivery.job_id == job_id if job_id is not None else WebhookDelivery.sweep_id == sweep_id
    deliveries = list(session.scalars(select(WebhookDelivery).where(subject)
                                      .order_by(WebhookDelivery.created_at, WebhookDelivery.id)))
    attempts: dict[str, list[WebhookAttempt]] = {d.id: [] for d in deliveries}
    if deliveries:
        query = select(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(list(attempts)))
        for attempt in session.scalars(query.order_by(WebhookAttempt.delivery_id, WebhookAttempt.number)):
            attempts[attempt.delivery_id].append(attempt)
    return deliveries, attempts


def get_secret(session: Session, owner_key: str) -> WebhookSecret | None:
    return session.get(WebhookSecret, owner_key, populate_existing=True)


def put_secret(session: Session, owner_key: str, secret: str, now: datetime, replace: bool) -> None:
    """Store the owner's secret: in place of the one it has when `replace`, else only if it has none (a
    concurrent first use keeps whichever came first)."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    insert = dialect.insert(WebhookSecret).values(owner_key=owner_key, secret=secret, created_at=now)
    if replace:
        insert = insert.on_conflict_do_update(index_elements=["owner_key"], set_={"secret": secret, "created_at": now})
    else:
        insert = insert.on_conflict_do_nothing(index_elements=["owner_key"])
    session.execute(insert)
