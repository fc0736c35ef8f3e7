"""Queries on jobs: create, read, list, claim, lease and finish."""

from datetime import datetime, timedelta

from sqlalchemy import and_, bindparam, delete, func, select, update
from sqlalchemy.orm import Session, aliased

from service.curves import Columns
from service.models import Checkpoint, Job, JobAttempt, JobStatus, JobWeights, utcnow
from service.repositories import metrics as metric_repo
from service.repositories import queue

JOBS = Job.__table__
_INSERT_JOB = JOBS.insert()


def add_job(session: Session, job: Job) -> Job:
    """Insert a new job's row; `job` gets the columns' defaults first and stays out of the session.

    A Core INSERT of every column: the ORM's unit of work for one new object cost several times the
    statement, and on SQLite it runs while every other writer waits for the lock.
    """
    for column in JOBS.columns:
        if getattr(job, column.key) is None and column.default is not None:
            default = column.default
            setattr(job, column.key, default.arg(None) if default.is_callable else default.arg)
    session.connection().execute(_INSERT_JOB, {column.key: getattr(job, column.key) for column in JOBS.columns})
    return job


def owned_by(column, owner_id: str | None):
    """Rows of this owner; None is the owner of every job when authentication is off."""
    return column.is_(None) if owner_id is None else column == owner_id


def get_job(session: Session, job_id: str, owner_id: str | None) -> Job | None:
    """The job, if it exists and belongs to `owner_id`."""
    return session.scalar(select(Job).where(Job.id == job_id, owned_by(Job.owner_id, owner_id)))


# built once, on the table (Core, no ORM layer): every submit counts, under SQLite's write lock
_QUEUED = select(func.count()).select_from(JOBS).where(JOBS.c.status == JobStatus.QUEUED)
_COUNT_QUEUED = {
    "anonymous": _QUEUED.where(JOBS.c.owner_id.is_(None)),
    "owner": _QUEUED.where(JOBS.c.owner_id == bindparam("owner_id")),
}


def count_queued(session: Session, owner_id: str | None) -> int:
    connection = session.connection()
    if owner_id is None:
        return connection.scalar(_COUNT_QUEUED["anonymous"]) or 0
    return connection.scalar(_COUNT_QUEUED["owner"], {"owner_id": owner_id}) or 0


# one seek on ix_jobs_status_created_at: a statement built once, as the claim's own are (repositories/queue.py)
_ANY_QUEUED = select(select(JOBS.c.id).where(JOBS.c.status == JobStatus.QUEUED).limit(1).exists())


def any_queued(session: Session) -> bool:
    """Whether any job waits, by a read: where none does, a claim need not open its write transaction."""
    return bool(session.connection().scalar(_ANY_QUEUED))


def claim_next_job(
    session: Session, worker_id: str, lease_seconds: float, order: str = "fair", max_running: int | None = None
) -> Job | None:
    """Take the next queued job (fair share between owners, see repositories/queue.py) in one statement;
    no two workers can take the same one.

    PostgreSQL skips rows another claim has locked; SQLite serialises claims with BEGIN IMMEDIATE.
    On PostgreSQL a claim also holds, until its transaction ends, an advisory lock on the job's sweep
    (or the job, outside sweeps): another claim skips that sweep's members meanwhile, so the worker
    that claims a member can take all its queued siblings in the same transaction.
    With `max_running`, a claim that finds its owner past the cap once it holds the owner's lock (two
    claims raced on PostgreSQL) is undone: None.
    """
    postgresql = session.get_bind().dialect.name == "postgresql"
    if order == "fifo":
        return _claim(session, queue.next_job_fifo(postgresql).scalar_subquery(), worker_id, lease_seconds)
    which = queue.next_job_fair(postgresql, max_running).scalar_subquery()
    if max_running is None:
        return _claim(session, which, worker_id, lease_seconds)
    savepoint = session.begin_nested()
    job = _claim(session, which, worker_id, lease_seconds)
    if job is not None and queue.room_to_run(session, job.owner_id, max_running) < 0:
        savepoint.rollback()
        return None
    savepoint.commit()
    return job


def list_queued(
    session: Session, limit: int, order: str = "fair", max_running: int | None = None
) -> list[tuple[str, dict, int | None]]:
    """(id, spec, estimate_bytes) of queued jobs in claim order, for a dispatcher to choose by what they need."""
    if order == "fifo":
        query = select(Job.id, Job.spec, Job.estimate_bytes).where(Job.status == JobStatus.QUEUED).order_by(Job.created_at, Job.id)
        query = query.limit(limit)
    else:
        query = queue.list_fair(limit, max_running)
    return [tuple(row) for row in session.execute(query)]


def claim_job(session: Session, job_id: str, worker_id: str, lease_seconds: float) -> Job | None:
    """Take this queued job; None when another claim took it first."""
    return _claim(session, job_id, worker_id, lease_seconds)


def claim_update(which, worker_id: str, lease_seconds: float):
    """UPDATE ... RETURNING id of the queued jobs `which` selects: running, this worker, the next attempt, a
    fresh lease. On the table, executed on the session's connection: the ORM's bulk UPDATE path cost more than
    the statement, while the claim holds SQLite's write lock (nothing of these rows is loaded in the session)."""
    now = utcnow()
    values = {
        "status": JobStatus.RUNNING,
        "worker_id": worker_id,
        "attempt": JOBS.c.attempt + 1,
        "lease_expires_at": now + timedelta(seconds=lease_seconds),
        "started_at": now,
        "error": None,
        "node": None,  # known once the attempt starts somewhere
    }
    return update(JOBS).where(which, JOBS.c.status == JobStatus.QUEUED).values(**values).returning(JOBS.c.id)


def _claim(session: Session, which, worker_id: str, lease_seconds: float) -> Job | None:
    claimed = session.connection().scalar(claim_update(JOBS.c.id == which, worker_id, lease_seconds))
    if claimed is None:
        return None
    return session.get(Job, claimed, populate_existing=True)


# how a job ends when its owner cancels it: the worker's run writes it (workers/ledger.py), the rescue adds its reason
CANCELLED_ON_REQUEST = "cancelled on request"


def _ours(job_id: str, worker_id: str, attempt: int):
    """A write guard: the job is still running under this worker and attempt."""
    return and_(Job.id == job_id, Job.worker_id == worker_id, Job.attempt == attempt, Job.status == JobStatus.RUNNING)


def start_claimed_job(
    session: Session, job_id: str, worker_id: str, attempt: int, lease_seconds: float, node: str
) -> Job | None:
    """A job claimed on a worker's behalf starts on `node`, its lease renewed; None when no longer that worker's."""
    started = session.execute(
        update(Job)
        .where(_ours(job_id, worker_id, attempt))
        .values(node=node, lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
        .returning(Job.id)
    ).scalar()
    return None if started is None else session.get(Job, job_id, populate_existing=True)


def renew_unstarted_leases(session: Session, worker_ids: list[str], lease_seconds: float) -> None:
    """Extend the leases of jobs claimed for tasks that have not started yet (no node): they wait for a place."""
    session.execute(
        update(Job)
        .where(Job.worker_id.in_(worker_ids), Job.status == JobStatus.RUNNING, Job.node.is_(None))
        .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
    )


def renew_lease(session: Session, job_id: str, worker_id: str, attempt: int, lease_seconds: float) -> bool | None:
    """Extend the lease; returns cancel_requested, or None when the job is no longer ours."""
    return session.execute(
        update(Job)
        .where(_ours(job_id, worker_id, attempt))
        .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
        .returning(Job.cancel_requested)
    ).scalar()


def record_progress(
    session: Session, job_id: str, worker_id: str, attempt: int, epoch: int, step: int, points: Columns,
    trained_seconds: float = 0.0,
) -> bool | None:
    """Store new curve points, progress and seconds trained; returns cancel_requested, or None when no longer ours."""
    values = {"epoch": epoch, "step": step, "trained_seconds": trained_seconds}
    if points:
        values["latest_metrics"] = points[-1].as_dict()
    cancel = session.execute(
        update(Job).where(_ours(job_id, worker_id, attempt)).values(**values).returning(Job.cancel_requested)
    ).scalar()
    if cancel is None:
        return None
    metric_repo.insert_points(session, [(job_id, points)])
    return cancel


def finish_job(
    session: Session,
    job_id: str,
    worker_id: str,
    attempt: int,
    status: JobStatus,
    error: str | None = None,
    weights: bytes | None = None,
    evaluation: dict | None = None,
    execution: str | None = None,
    stop_reason: str | None = None,
) -> bool:
    """Close an attempt: final status, error, weights, evaluation and (when given) how it trained and why it stopped;
    False when the job is no longer ours."""
    values = {} if execution is None else {"execution": execution[:500]}
    if stop_reason is not None:
        values["stop_reason"] = stop_reason[:200]
    done = session.execute(
        update(Job)
        .where(_ours(job_id, worker_id, attempt))
        .values(status=status, error=error, finished_at=utcnow(), lease_expires_at=None, evaluation=evaluation, **values)
        .returning(Job.id)
    ).scalar()
    if done is None:
        return False
    if weights is not None:
        session.add(JobWeights(job_id=job_id, data=weights))
    if status == JobStatus.SUCCEEDED:  # others keep theirs FITSERVE_RETENTION_CHECKPOINTS (services/retention.py)
        session.execute(delete(Checkpoint).where(Checkpoint.job_id == job_id))
    return True


def release_job(
    session: Session, job_id: str, worker_id: str, attempt: int, error: str, cause: str | None = None,
    yielded: bool = False,
) -> bool:
    """Hand a running job back to the queue (worker shutting down, the database's disk full, or `yielded`: its
    turn given to another owner's waiting work); it resumes from its checkpoint. The attempt is an interruption:
    it does not count against max_attempts."""
    released = session.execute(
        update(Job)
        .where(_ours(job_id, worker_id, attempt))
        .values(status=JobStatus.QUEUED, worker_id=None, lease_expires_at=None, error=error,
                interruptions=Job.interruptions + 1, yields=Job.yields + (1 if yielded else 0))
        .returning(Job.id)
    ).scalar()
    if released is not None:
        record_attempts(session, [(job_id, attempt)], cause or "handed back at shutdown", counted=False)
    return released is not None


def others_waiting(session: Session, job_ids: list[str], queued_before: datetime, max_running: int | None) -> bool:
    """Whether an owner none of jobs `job_ids` belongs to has a job queued since before `queued_before` that it may
    start (under `max_running` running jobs). A seek on ix_jobs_status_created_at from the oldest queued job, past
    these owners' own (a sweep's queued members, say)."""
    ours = select(func.coalesce(Job.owner_id, queue.ANONYMOUS)).where(Job.id.in_(job_ids)).distinct()
    theirs = aliased(Job)
    waiting = select(theirs.id).where(
        theirs.status == JobStatus.QUEUED, theirs.created_at < queued_before,
        func.coalesce(theirs.owner_id, queue.ANONYMOUS).not_in(ours),
    )
    if max_running is not None:
        running = aliased(Job)
        busy = select(func.count()).where(running.status == JobStatus.RUNNING, running.owner_id.is_not_distinct_from(
            theirs.owner_id)).correlate(theirs).scalar_subquery()
        waiting = waiting.where(busy < max_running)
    return session.execute(waiting.limit(1)).first() is not None


def record_attempts(session: Session, attempts: list[tuple[str, int]], cause: str, counted: bool) -> None:
    """How these (job id, attempt) ended: lost by their worker, or handed back."""
    for job_id, attempt in attempts:
        session.merge(JobAttempt(job_id=job_id, attempt=attempt, cause=cause[:300], counted=counted))


def attempt_causes(session: Session, job_id: str) -> list[tuple[int, str, bool]]:
    """(attempt, cause, counted) of each attempt of the job its worker lost or handed back, in order."""
    rows = session.execute(select(JobAttempt.attempt, JobAttempt.cause, JobAttempt.counted)
                           .where(JobAttempt.job_id == job_id).order_by(JobAttempt.attempt))
    return [tuple(row) for row in rows]


def out_of_attempts(reason: str, counted: bool, attempt: int, earlier: list[tuple[int, str, bool]]) -> str:
    """A job's error once `reason` ended its last attempt: the causes of all of them."""
    history = [*earlier, (attempt, reason, counted)]
    if all(k for _, _, k in history):  # its worker died under it each time (seen by the pool, or found later)
        if all(c == reason for _, c, _ in history):
            return f"{reason} on each of its attempts"
        return f"{reason} on each of its attempts ({'; '.join(f'{a}: {c}' for a, c, _ in history)})"
    what = "its last counted attempt" if counted else f"its {sum(not k for _, _, k in history)} interruptions"
    ended = "; ".join(f"{a}: {c}{'' if k else ' (not counted)'}" for a, c, k in history)
    return f"{reason}: out of attempts after {what} (attempts {ended})"


def set_device(
    session: Session, job_id: str, worker_id: str, attempt: int, device: str, node: str | None = None,
    execution: str | None = None,
) -> None:
    """Where the attempt runs, and which path trains it (and why it fell back, if it did)."""
    values = {"device": device, "node": node} | ({} if execution is None else {"execution": execution[:500]})
    session.execute(update(Job).where(_ours(job_id, worker_id, attempt)).values(**values))


def still_running(session: Session, attempts: list[tuple[str, int]], worker_id: str) -> set[str]:
    """Which of these (job id, attempt) pairs still run under this worker."""
    ids = [job_id for job_id, _ in attempts]
    rows = session.execute(
        select(Job.id, Job.attempt).where(Job.id.in_(ids), Job.worker_id == worker_id, Job.status == JobStatus.RUNNING)
    )
    return {job_id for job_id, attempt in rows if (job_id, attempt) in set(attempts)}


def rescue_jobs(
    session: Session, reason: str, worker_id: str | None = None, counted: bool = True, max_interruptions: int = 20
) -> dict[str, list[str]]:
    """Running jobs whose worker is gone: cancelled if a cancel was asked for, else requeued, or failed once out
    of attempts. Returns the job ids by what became of them: `cancelled`, `failed`, `requeued`.

    With `worker_id`, that worker's jobs (its process died); without, every job whose lease expired. `counted`:
    whether the cause may be the job's (its worker process died under it) and counts against max_attempts; an
    interruption that is not the job's (the lease expired: a host or whole process gone) counts only against
    `max_interruptions`. Each attempt's cause is kept (job_attempts), and a failed job's error names them all.
    """
    now = utcnow()
    lost = Job.worker_id == worker_id if worker_id is not None else Job.lease_expires_at < now
    lost = and_(Job.status == JobStatus.RUNNING, lost)
    ended = {"finished_at": now, "lease_expires_at": None}
    cancelled = session.scalars(
        update(Job)
        .where(lost, Job.cancel_requested.is_(True))
        .values(status=JobStatus.CANCELLED, error=f"{CANCELLED_ON_REQUEST} ({reason})", **ended)
        .returning(Job.id)
    ).all()
    faults, interruptions = Job.attempt - Job.interruptions, Job.interruptions + 1
    spent = faults >= Job.max_attempts if counted else interruptions - Job.yields >= max_interruptions
    failed = session.execute(
        update(Job)
        .where(lost, spent)
        .values(status=JobStatus.FAILED, error=f"{reason} on each of its attempts", **ended)
        .returning(Job.id, Job.attempt)
    ).all()
    for job_id, attempt in failed:  # few: a worker's jobs, or those whose leases expired together
        error = out_of_attempts(reason, counted, attempt, attempt_causes(session, job_id))
        session.execute(update(Job).where(Job.id == job_id).values(error=error))
    requeued = session.execute(
        update(Job)
        .where(lost)
        .values(status=JobStatus.QUEUED, worker_id=None, lease_expires_at=None, error=f"{reason}; requeued",
                interruptions=Job.interruptions + (0 if counted else 1))
        .returning(Job.id, Job.attempt)
    ).all()
    record_attempts(session, [tuple(row) for row in (*failed, *requeued)], reason, counted)
    return {"cancelled": list(cancelled), "failed": [job_id for job_id, _ in failed],
            "requeued": [job_id for job_id, _ in requeued]}


def request_cancel(session: Session, job: Job) -> None:
    """A queued job is cancelled at once; a running one is flagged for its worker to stop."""
    if JobStatus(job.status).is_final:
        return
    cancel_where(session, Job.id == job.id)
    session.refresh(job)


def cancel_where(session: Session, which) -> None:
    """`request_cancel` for every job `which` selects, in two statements however many they are (a sweep's)."""
    live = and_(which, Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]))
    session.execute(update(Job).where(live).values(cancel_requested=True).execution_options(synchronize_session=False))
    session.execute(
        update(Job)
        .where(which, Job.status == JobStatus.QUEUED)
        .values(status=JobStatus.CANCELLED, finished_at=utcnow())
        .execution_options(synchronize_session=False)
    )


# stop reasons of time limits (workers/time_limits.py): a member of a sweep past its max_seconds that never finished
# an epoch (still queued, or inside its first) ends cancelled with the last
SWEEP_TIME_LIMIT = "time limit: the sweep's max_seconds reached"
BEFORE_FIRST_EPOCH = "before its first epoch ended"
UNSTARTED_AT_DEADLINE = f"{SWEEP_TIME_LIMIT} {BEFORE_FIRST_EPOCH}"


def end_past_deadline(session: Session) -> list[str]:
    """Queued members of sweeps whose max_seconds passed end cancelled, untrained; their ids."""
    now = utcnow()
    return list(session.scalars(
        update(Job)
        .where(Job.deadline_at.is_not(None), Job.deadline_at <= now, Job.status == JobStatus.QUEUED)
        .values(status=JobStatus.CANCELLED, finished_at=now, stop_reason=UNSTARTED_AT_DEADLINE)
        .returning(Job.id)
        .execution_options(synchronize_session=False)
    ))


def save_checkpoint(session: Session, job_id: str, worker_id: str, attempt: int, epoch: int, data: bytes) -> bool:
    """Replace the job's checkpoint, if the job is still ours.

    The job's row stays locked until the write commits (PostgreSQL): a concurrent delete waits, then takes
    the checkpoint with the job, instead of the insert finding its job gone.
    """
    if session.scalar(select(Job.id).where(_ours(job_id, worker_id, attempt)).with_for_update()) is None:
        return False
    session.merge(Checkpoint(job_id=job_id, attempt=attempt, epoch=epoch, data=data, created_at=utcnow()))
    return True


def final_state_epoch(session: Session, job_id: str) -> int | None:
    """The epoch of a succeeded job's kept final state (None: it kept none); the blob is not read."""
    return session.scalar(select(Checkpoint.epoch).where(Checkpoint.job_id == job_id))


def claim_sweep_members(
    session: Session, sweep_id: str, worker_id: str, lease_seconds: float, limit: int | None = None
) -> list[str]:
    """Take every queued member of a sweep at once (the oldest `limit`, under a running cap), so one worker
    can train them together: their ids (load them with get_jobs)."""
    members = select(Job.id).where(Job.sweep_id == sweep_id, Job.status == JobStatus.QUEUED)
    if limit is not None:
        members = members.order_by(Job.created_at, Job.id).limit(max(limit, 0))
    return sorted(session.connection().scalars(claim_update(JOBS.c.id.in_(members), worker_id, lease_seconds)))


def get_jobs(session: Session, job_ids: list[str]) -> list[Job]:
    """These jobs, fresh from the database, in the order given; an id no longer there is left out."""
    query = select(Job).where(Job.id.in_(job_ids)).execution_options(populate_existing=True)
    found = {job.id: job for job in session.scalars(query)}
    return [found[job_id] for job_id in job_ids if job_id in found]


def record_early_stopping(
    session: Session,
    job_id: str,
    worker_id: str,
    attempt: int,
    stopped_early_at: int | None,
    best_epoch: int | None,
    best_metrics: dict | None,
) -> None:
    """What early stopping decided, written as the attempt finishes: where it stopped and the epoch kept."""
    session.execute(
        update(Job)
        .where(_ours(job_id, worker_id, attempt))
        .values(stopped_early_at=stopped_early_at, best_epoch=best_epoch, best_metrics=best_metrics)
    )
