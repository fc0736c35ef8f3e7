"""Which queued job is claimed next: fair share between owners, priority within one owner.

Owners with queued jobs take turns: the next claim goes to the owner with the fewest running jobs
(each member of a sweep counts), ties to the one whose latest job started longest ago (never: first);
an owner at FITSERVE_MAX_RUNNING_PER_OWNER waits. Within an owner: higher `priority` first, then oldest.
FITSERVE_CLAIM_ORDER=fifo keeps the order from before: the oldest queued job of anyone.

Cost of one claim, with O owners that ever had queued or running jobs: their queued and running counts
and latest starts are kept per owner as jobs change (repositories/job_counts.py), so the turn order reads
about 2 O rows of job_counts (plus the changes not folded yet), whatever the depth of the queue; then owners
are tried in turn, each one seek on ix_jobs_status_owner_id_priority for its first queued job (no sort: the
index is in claim order). Measured in bench/fairness.py and bench/million_jobs.py.
"""

from functools import cache

from sqlalchemy import Select, case, func, literal_column, select
from sqlalchemy.orm import Session, aliased

from service.models import Job, JobStatus
from service.repositories import job_counts

ANONYMOUS = ""  # the owner of jobs submitted while keys are off (owner_id NULL), as a key that groups and compares


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


@cache  # built once: building it (ORM aliases adapted) costs more than running it
def next_job_fair(postgresql: bool, max_running: int | None) -> Select:
    """SELECT the id of the job fair share claims next (no row when none may be claimed).

    The owners are sorted first (a few rows); the outer query then evaluates each owner's first queued
    job in that order and stops at the first one found, so the locks are taken on that job only.
    """
    owners = _owners(max_running)
    ranked = (
        select(owners.c.owner, owners.c.running, owners.c.last_start)
        .order_by(owners.c.running, owners.c.last_start.asc().nulls_first(), owners.c.owner)
        .subquery("ranked")
    )
    picks = select(_first_queued(ranked.c.owner, postgresql).label("job_id")).select_from(ranked).subquery("picks")
    return select(picks.c.job_id).where(picks.c.job_id.is_not(None)).limit(1)


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
    """(id, spec) of queued jobs in the order fair share would claim them, for a dispatcher that places many.

    Each owner's jobs are numbered in its own order; the first of every owner come first (owners in their
    turn order), then the second of every owner, and so on; an owner gets no more than its room under the cap.
    """
    ranked = _owners(max_running)
    j = aliased(Job)
    turn = func.row_number().over(partition_by=_owner_key(j), order_by=(j.priority.desc(), j.created_at, j.id))
    queued = select(j.id, j.spec, _owner_key(j).label("owner"), turn.label("turn")).where(
        j.status == JobStatus.QUEUED
    ).subquery("queued")
    query = (
        select(queued.c.id, queued.c.spec)
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
