"""Jobs, training seconds and stored bytes per owner and status, read without reading the jobs.

The database keeps them: triggers (alembic 0013, 0036) append a change row in the very transaction that
inserts, deletes or changes the status of a job, or writes its curve, weights or checkpoint, or a dataset, so no
code path can forget one (a cascade included); a dataset's bytes are on its owner's row of status '' (no job's).
`fold` moves the changes into job_counts on each maintenance tick; readers add the changes not folded yet, so a
figure is exact at any time, and what it reads grows with owners, not with jobs.
The fold also moves each owner's queued and running jobs and latest start into owner_queues, the fair claim's
turn order (repositories/queue.py). `recount` rebuilds all three from the history (`fitserve db recount`).
"""

from collections import defaultdict

from sqlalchemy import case, delete, func, literal, select, text, union_all
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from service.models import NEVER_STARTED, JobCount, JobCountChange, JobStatus, OwnerQueue

ANONYMOUS = ""  # the owner key of jobs submitted while keys are off (owner_id NULL)
SUMMED = ("jobs", "training_seconds", "curve_bytes", "weights_bytes", "checkpoint_bytes", "dataset_bytes")
COUNTS, CHANGES, QUEUES = JobCount.__table__, JobCountChange.__table__, OwnerQueue.__table__


def owner_key(owner_id: str | None) -> str:
    return ANONYMOUS if owner_id is None else owner_id


def fold(session: Session) -> int:
    """Move the changes appended so far into job_counts; returns how many were folded.

    DELETE ... RETURNING takes each change exactly once, however many folds run at a time (a change committed
    meanwhile waits for the next one).
    """
    columns = [CHANGES.c.owner_key, CHANGES.c.status, *(CHANGES.c[name] for name in SUMMED), CHANGES.c.last_started_at]
    rows = session.connection().execute(delete(CHANGES).returning(*columns)).all()
    sums: dict[tuple[str, str], dict] = defaultdict(lambda: dict.fromkeys(SUMMED, 0) | {"last_started_at": None})
    for owner, status, *values, started in rows:
        entry = sums[(owner, status)]
        for name, value in zip(SUMMED, values):
            entry[name] += value
        if started is not None and (entry["last_started_at"] is None or started > entry["last_started_at"]):
            entry["last_started_at"] = started
    if sums:
        _add(session, [{"owner_key": owner, "status": status, **entry} for (owner, status), entry in sorted(sums.items())])
        _add_to_queues(session, sums)
    return len(rows)


def _add_to_queues(session: Session, sums: dict[tuple[str, str], dict]) -> None:
    """owner_queues moved by the same changes as job_counts' queued and running rows."""
    queues: dict[str, dict] = {}
    for (owner, status), entry in sorted(sums.items()):
        if status not in (JobStatus.QUEUED, JobStatus.RUNNING):
            continue
        queue = queues.setdefault(owner, {"owner_key": owner, "queued": 0, "running": 0,
                                          "last_started_at": NEVER_STARTED})
        queue[status] += entry["jobs"]
        if entry["last_started_at"] is not None and entry["last_started_at"] > queue["last_started_at"]:
            queue["last_started_at"] = entry["last_started_at"]
    if not queues:
        return
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    insert = dialect.insert(QUEUES)
    new, old = insert.excluded.last_started_at, QUEUES.c.last_started_at
    upsert = insert.on_conflict_do_update(index_elements=["owner_key"], set_={
        "queued": QUEUES.c.queued + insert.excluded.queued,
        "running": QUEUES.c.running + insert.excluded.running,
        "last_started_at": case((new > old, new), else_=old),
    })
    session.connection().execute(upsert, list(queues.values()))


def _add(session: Session, rows: list[dict]) -> None:
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    insert = dialect.insert(COUNTS)
    added = {name: COUNTS.c[name] + insert.excluded[name] for name in SUMMED}
    new, old = insert.excluded.last_started_at, COUNTS.c.last_started_at
    # the later of the two, NULL being the earliest (SQLite's timestamps are text that sorts in time order)
    latest = case((new.is_(None), old), (old.is_(None) | (new > old), new), else_=old)
    upsert = insert.on_conflict_do_update(index_elements=["owner_key", "status"], set_=added | {"last_started_at": latest})
    session.connection().execute(upsert, rows)


def _rows(*where):
    """Counts and changes together, as one set of rows, for a reader to sum."""
    def of(table):
        return select(table.c.owner_key, table.c.status, *(table.c[name] for name in SUMMED),
                      table.c.last_started_at).where(*(condition(table) for condition in where))

    return union_all(of(COUNTS), of(CHANGES)).subquery("counted")


def totals_by_status(session: Session) -> dict[str, tuple[int, float]]:
    """(jobs, training seconds) per status, of every owner."""
    rows = _rows()
    query = select(rows.c.status, func.sum(rows.c.jobs), func.sum(rows.c.training_seconds)).group_by(rows.c.status)
    return {status: (int(jobs or 0), float(seconds or 0.0)) for status, jobs, seconds in session.execute(query)}


def of_owner(session: Session, owner_id: str | None) -> dict[str, dict]:
    """Per status, the owner's jobs, training seconds and bytes of curves, weights, checkpoints and datasets."""
    key = owner_key(owner_id)
    rows = _rows(lambda table: table.c.owner_key == key)
    query = select(rows.c.status, *(func.sum(rows.c[name]) for name in SUMMED)).group_by(rows.c.status)
    return {status: dict(zip(SUMMED, values)) for status, *values in session.execute(query)}


def owners(session: Session) -> list[str | None]:
    """Every owner with jobs (None: the anonymous owner)."""
    rows = _rows()
    query = select(rows.c.owner_key).group_by(rows.c.owner_key).having(func.sum(rows.c.jobs) > 0)
    return [None if key == ANONYMOUS else key for key in session.scalars(query)]


def queue_state(max_running: int | None = None):
    """Owners with queued jobs, with their running jobs and latest start: owner, running, last_start (a subquery
    for repositories/queue.py). Reads the queued and running rows only, a few per owner."""
    rows = _rows(lambda table: table.c.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]))
    is_running = rows.c.status == literal(JobStatus.RUNNING.value)
    running = func.sum(case((is_running, rows.c.jobs), else_=0))
    queued = func.sum(case((is_running, 0), else_=rows.c.jobs))
    query = (
        select(rows.c.owner_key.label("owner"), running.label("running"),
               func.max(rows.c.last_started_at).label("last_start"))
        .group_by(rows.c.owner_key)
        .having(queued > 0)
    )
    if max_running is not None:
        query = query.having(running < max_running)
    return query.subquery("owners")


def recount(session: Session) -> None:
    """The counters and owner_queues rebuilt from the jobs, curves, weights, checkpoints and datasets themselves (a
    repair: they agree by construction)."""
    session.execute(delete(CHANGES))
    session.execute(delete(COUNTS))
    session.execute(delete(QUEUES))
    session.execute(text(_recount_sql(session.get_bind().dialect.name == "postgresql")))
    fold(session)


def _recount_sql(postgresql_: bool) -> str:
    """One statement, one read of each table: the jobs grouped once (their curves' and weights' sizes read by
    key alongside on SQLite, which has no hash join; joined and grouped apart on PostgreSQL), then each owner's
    latest start from those groups; the checkpoints (at most one a job) by their jobs' keys, the datasets by owner."""
    length = "octet_length" if postgresql_ else "length"
    span = ("extract(epoch FROM j.finished_at - j.started_at)::float8" if postgresql_
            else "(julianday(j.finished_at) - julianday(j.started_at)) * 86400.0")
    final = "('succeeded', 'failed', 'cancelled')"
    seconds = (f"CASE WHEN j.status IN {final} AND j.started_at IS NOT NULL AND j.finished_at IS NOT NULL"
               f" THEN {span} ELSE 0 END")
    owner, by = "coalesce(j.owner_id, '')", "GROUP BY coalesce(j.owner_id, ''), j.status"
    parts = [(f"SELECT {owner}, j.status, 0, 0, 0, 0, sum({length}(c.data)), 0, NULL FROM checkpoints c"
              f" JOIN jobs j ON j.id = c.job_id {by}"),
             f"SELECT coalesce(owner_id, ''), '', 0, 0, 0, 0, 0, sum({length}(data)), NULL FROM datasets GROUP BY 1"]
    if postgresql_:
        blobs = "0, 0"
        parts += [(f"SELECT {owner}, j.status, 0, 0, sum({length}(c.data)), 0, 0, 0, NULL FROM metric_chunks c"
                   f" JOIN jobs j ON j.id = c.job_id {by}"),
                  (f"SELECT {owner}, j.status, 0, 0, 0, sum({length}(w.data)), 0, 0, NULL FROM job_weights w"
                   f" JOIN jobs j ON j.id = w.job_id {by}")]
    else:
        blobs = ("sum((SELECT coalesce(sum(length(data)), 0) FROM metric_chunks WHERE job_id = j.id)),"
                 " sum((SELECT coalesce(sum(length(data)), 0) FROM job_weights WHERE job_id = j.id))")
    groups = (f"WITH g (owner_key, status, jobs, seconds, curves, weights, started) AS MATERIALIZED"
              f" (SELECT {owner}, j.status, count(*), sum({seconds}), {blobs}, max(j.started_at) FROM jobs j {by})")
    parts = ["SELECT owner_key, status, jobs, seconds, curves, weights, 0, 0, NULL FROM g",
             ("SELECT owner_key, 'running', 0, 0, 0, 0, 0, 0, max(started) FROM g GROUP BY owner_key"
              " HAVING max(started) IS NOT NULL"), *parts]
    into = ("INSERT INTO job_count_changes (owner_key, status, jobs, training_seconds, curve_bytes, weights_bytes,"
            " checkpoint_bytes, dataset_bytes, last_started_at)")
    return f"{groups} {into} " + " UNION ALL ".join(parts)
