"""Which queued job is claimed next: fair share between owners, priority within one owner.

Owners with queued jobs take turns: the next claim goes to the owner with the fewest running jobs
(each member of a sweep counts), ties to the one whose latest job started longest ago (never: first);
an owner at FITSERVE_MAX_RUNNING_PER_OWNER waits. Within an owner: higher `priority` first, then oldest.
FITSERVE_CLAIM_ORDER=fifo keeps the order from before: the oldest queued job of anyone.

Cost of one claim: each owner's queued and running jobs and latest start are one row of owner_queues as of
the last fold (repositories/job_counts.py), indexed in turn order among owners with queued jobs
(ix_owner_queues_turn), so the next owners are the index's first TURNS entries, whatever the number of owners
or the depth of the queue; owners with changes not folded yet (the claims, finishes and submits since the last
maintenance tick) are skipped there and taken with their changes added instead. Owners are then tried in turn,
each one seek on ix_jobs_status_owner_id_priority for its first queued job (no sort: the index is in claim
order). Only when none of those yields a job (every one locked by concurrent claims) is the whole turn order
read. Measured in bench/fairness.py and bench/scale.py.
"""

from functools import cache

from sqlalchemy import Select, case, exists, func, literal, literal_column, select, union_all
from sqlalchemy.orm import Session, aliased

from service.models import NEVER_STARTED, Job, JobCountChange, JobStatus, OwnerQueue
from service.repositories import job_counts

ANONYMOUS = ""  # the owner of jobs submitted while keys are off (owner_id NULL), as a key that groups and compares
# owners a claim reads from the turn index before it falls back to the whole order: more than the claims that
# can hold an owner's first job at once (concurrent workers on PostgreSQL)
TURNS = 16
QUEUES, CHANGES = OwnerQueue.__table__, JobCountChange.__table__
IN_QUEUE = (JobStatus.QUEUED, JobStatus.RUNNING)


def _owner_key(job):
    # the literal inline, not a parameter: PostgreSQL must see the GROUP BY and SELECT expressions as one
    return func.coalesce(job.owner_id, literal_column(f"'{ANONYMOUS}'"))


def _for_owner(key, build):
    """`build(condition)` for this owner's rows: owner_id = key, or IS NULL for the anonymous owner.

    Two branches, not one null-safe comparison, so that each is an index seek on both back ends.
    """
    anonymous = build(lambda job: job.owner_id.is_(None))
    return case((key == ANONYMOUS, anonymous), else_=build(lambda job: job.owner_id == key))


def _owners(max_running: int | None):
    """Owners with queued jobs, with their running count and latest start (owner, running, last_start): read from
    the per-owner counters (repositories/job_counts.py), a few rows an owner, never from the queued jobs."""
    return job_counts.queue_state(max_running)


def _first_queued(key, postgresql: bool):
    """The owner's next job: a scalar subquery, evaluated only when its owner's turn comes."""

    def first(mine):
        j = aliased(Job)
        query = select(j.id, j.sweep_id).where(j.status == JobStatus.QUEUED, mine(j))
        query = query.order_by(j.priority.desc(), j.created_at, j.id).limit(1).correlate_except(j)
        if not postgresql:
            return query.with_only_columns(j.id).scalar_subquery()
        # the first row no other claim has locked; then, held until this claim commits, an advisory lock on
        # its sweep (or itself): another claim skips that sweep's rows meanwhile, so the worker that claims a
        # member can take its queued siblings (workers/attempt.py `claim`). Outside the LIMIT, so whatever
        # plan sorts the owner's rows, the lock is tried on that one row only.
        row = query.with_for_update(skip_locked=True).subquery()
        unit = func.hashtext(func.coalesce(row.c.sweep_id, row.c.id))
        return select(row.c.id).where(func.pg_try_advisory_xact_lock(unit)).scalar_subquery()

    return _for_owner(key, first)


def _pending_turns(max_running: int | None) -> Select:
    """Owners with queue changes not folded yet, with their turn as the next fold will leave it: owner, running,
    last_start (a row for each such owner: grows with the changes since the last tick, not with owners)."""
    is_running = CHANGES.c.status == literal(JobStatus.RUNNING.value)
    pending = (
        select(CHANGES.c.owner_key.label("owner"),
               func.sum(case((is_running, CHANGES.c.jobs), else_=0)).label("running"),
               func.sum(case((is_running, 0), else_=CHANGES.c.jobs)).label("queued"),
               func.max(CHANGES.c.last_started_at).label("last_start"))
        .where(CHANGES.c.status.in_(IN_QUEUE))
        .group_by(CHANGES.c.owner_key)
        .subquery("pending")
    )
    running = func.coalesce(QUEUES.c.running, 0) + pending.c.running
    folded_start = func.coalesce(QUEUES.c.last_started_at, literal(NEVER_STARTED, QUEUES.c.last_started_at.type))
    last_start = case((pending.c.last_start > folded_start, pending.c.last_start), else_=folded_start)
    query = (
        select(pending.c.owner, running.label("running"), last_start.label("last_start"))
        .select_from(pending.outerjoin(QUEUES, QUEUES.c.owner_key == pending.c.owner))
        .where(func.coalesce(QUEUES.c.queued, 0) + pending.c.queued > 0)
    )
    return query if max_running is None else query.where(running < max_running)


def _folded_turns(max_running: int | None, limit: int | None) -> Select:
    """Owners with queued jobs and no change pending, in turn order: the first `limit` entries of
    ix_owner_queues_turn (each checked for pending changes by one seek of ix_job_count_changes_owner_key)."""
    pending = exists().where(CHANGES.c.owner_key == QUEUES.c.owner_key, CHANGES.c.status.in_(IN_QUEUE))
    query = select(QUEUES.c.owner_key.label("owner"), QUEUES.c.running, QUEUES.c.last_started_at.label("last_start"))
    query = query.where(QUEUES.c.queued > 0, ~pending)
    if max_running is not None:
        query = query.where(QUEUES.c.running < max_running)
    query = query.order_by(QUEUES.c.running, QUEUES.c.last_started_at, QUEUES.c.owner_key).limit(limit)
    return select(query.subquery())


def _pick(postgresql: bool, max_running: int | None, limit: int | None):
    """The first queued job of the first owner, in turn order, that yields one: a scalar subquery.

    The owners are sorted first (a few rows); the outer query then evaluates each owner's first queued
    job in that order and stops at the first one found, so the locks are taken on that job only.
    """
    owners = union_all(_pending_turns(max_running), _folded_turns(max_running, limit)).subquery("owners")
    ranked = (
        select(owners.c.owner, owners.c.running, owners.c.last_start)
        .order_by(owners.c.running, owners.c.last_start, owners.c.owner)
        .limit(limit)  # the first `limit` of both kinds together: no pending owner ahead of unread folded ones
        .subquery("ranked")
    )
    picks = select(_first_queued(ranked.c.owner, postgresql).label("job_id")).select_from(ranked).subquery("picks")
    return select(picks.c.job_id).where(picks.c.job_id.is_not(None)).limit(1).scalar_subquery()


@cache  # built once: building it (ORM aliases adapted) costs more than running it
def next_job_fair(postgresql: bool, max_running: int | None) -> Select:
    """SELECT the id of the job fair share claims next (NULL when none may be claimed).

    The first TURNS owners of the turn index first; only when none of them yields a job, every owner with
    queued jobs (COALESCE evaluates its second argument only then, on both back ends).
    """
    return select(func.coalesce(_pick(postgresql, max_running, TURNS), _pick(postgresql, max_running, None)))


@cache
def next_job_fifo(postgresql: bool) -> Select:
    """SELECT the id of the oldest queued job of anyone (FITSERVE_CLAIM_ORDER=fifo)."""
    queued = select(Job.id).where(Job.status == JobStatus.QUEUED)
    if postgresql:
        queued = queued.where(func.pg_try_advisory_xact_lock(func.hashtext(func.coalesce(Job.sweep_id, Job.id))))
    return queued.order_by(Job.created_at, Job.id).limit(1).with_for_update(skip_locked=True)


# PostgreSQL advisory locks (OWNER_LOCKS, hashtext(owner)): one claim of an owner checks its cap at a time
OWNER_LOCKS = 15


def room_to_run(session: Session, owner_id: str | None, max_running: int) -> int:
    """How many more of the owner's jobs may start under the cap; negative once past it.

    On PostgreSQL this first waits for the owner's lock, which a claim holds until it commits: the count,
    a statement of its own (a fresh snapshot), then sees every claim for this owner made before.
    """
    if session.get_bind().dialect.name == "postgresql":
        key = owner_id if owner_id is not None else ANONYMOUS
        session.execute(select(func.pg_advisory_xact_lock(OWNER_LOCKS, func.hashtext(key))))
    owner = Job.owner_id.is_(None) if owner_id is None else Job.owner_id == owner_id
    running = session.scalar(select(func.count()).where(Job.status == JobStatus.RUNNING, owner)) or 0
    return max_running - running


@cache
def list_fair(limit: int, max_running: int | None) -> Select:
    """(id, spec, estimate_bytes) of queued jobs in the order fair share would claim them, for a dispatcher that places many.

    Each owner's jobs are numbered in its own order; the first of every owner come first (owners in their
    turn order), then the second of every owner, and so on; an owner gets no more than its room under the cap.
    """
    ranked = _owners(max_running)
    j = aliased(Job)
    turn = func.row_number().over(partition_by=_owner_key(j), order_by=(j.priority.desc(), j.created_at, j.id))
    queued = select(j.id, j.spec, j.estimate_bytes, _owner_key(j).label("owner"), turn.label("turn")).where(
        j.status == JobStatus.QUEUED
    ).subquery("queued")
    query = (
        select(queued.c.id, queued.c.spec, queued.c.estimate_bytes)
        .join(ranked, ranked.c.owner == queued.c.owner)
        .order_by(
            queued.c.turn + ranked.c.running, ranked.c.running, ranked.c.last_start.asc().nulls_first(),
            ranked.c.owner,
        )
        .limit(limit)
    )
    if max_running is not None:
        query = query.where(queued.c.turn + ranked.c.running <= max_running)
    return query
