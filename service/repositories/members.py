"""Writes for many running jobs of one worker, a few statements for all: a sweep's members.

Each write is guarded as for one job (`jobs._ours`): it touches only the jobs still running under
this worker and the attempt given. The rows are locked first (PostgreSQL), so no job changes hands
between the check and the writes. The statements are Core, on the session's connection: nothing here
loads ORM objects, and the ORM's bulk paths cost more than the statements while SQLite's write lock is held.
"""

from datetime import timedelta

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.orm import Session

from service.models import Checkpoint, Job, JobStatus, JobWeights, utcnow
from service.repositories import jobs as job_repo
from service.repositories import metrics as metric_repo

JOBS, WEIGHTS, CHECKPOINTS = Job.__table__, JobWeights.__table__, Checkpoint.__table__


def _rows(session: Session, worker_id: str, jobs: list[tuple[str, int]]) -> dict[str, bool]:
    """cancel_requested of those (job id, attempt) still this worker's running attempt; the others are left out."""
    rows = session.connection().execute(
        select(JOBS.c.id, JOBS.c.attempt, JOBS.c.worker_id, JOBS.c.status, JOBS.c.cancel_requested)
        .where(JOBS.c.id.in_([job_id for job_id, _ in jobs]))
        .with_for_update()
    ).all()
    state = {row.id: row for row in rows}
    ours = {}
    for job_id, attempt in jobs:
        row = state.get(job_id)
        if row is not None and (row.worker_id, row.attempt, row.status) == (worker_id, attempt, JobStatus.RUNNING):
            ours[job_id] = row.cancel_requested
    return ours


def start_members(
    session: Session, worker_id: str, jobs: list[tuple[str, int]], device: str, step: int, execution: str | None = None,
    node: str | None = None,
) -> dict[str, bool]:
    """Where (`node`: host or Ray node) and how the members train, and their curves trimmed back to `step` (a
    resumed attempt rewrites the rest); returns cancel_requested of each still this worker's attempt."""
    flags = _rows(session, worker_id, jobs)
    ours = list(flags)
    if ours:
        values = {"device": device, "node": node} | ({} if execution is None else {"execution": execution[:500]})
        session.connection().execute(update(JOBS).where(JOBS.c.id.in_(ours)).values(**values))
        metric_repo.truncate_points_many(session, ours, step)
    return flags


def record_progress_many(session: Session, worker_id: str, entries: list[dict]) -> dict[str, bool | None]:
    """`jobs.record_progress` for many jobs (a sweep's members at each report) in three statements.

    Each entry: job_id, attempt, epoch, step, points, trained_seconds. Returns cancel_requested per job, None where the job
    is no longer this worker's attempt (nothing is written for it).
    """
    if len(entries) == 1:  # one job: one guarded statement, no lock taken first
        [e] = entries
        return {e["job_id"]: job_repo.record_progress(
            session, e["job_id"], worker_id, e["attempt"], e["epoch"], e["step"], e["points"], e["trained_seconds"])}
    ours = _rows(session, worker_id, [(e["job_id"], e["attempt"]) for e in entries])
    mine = [e for e in entries if e["job_id"] in ours]
    with_points = [e for e in mine if e["points"]]
    without = [e for e in mine if not e["points"]]
    connection = session.connection()
    if with_points:
        connection.execute(
            update(JOBS).where(JOBS.c.id == bindparam("b_id"))
            .values(epoch=bindparam("b_epoch"), step=bindparam("b_step"), latest_metrics=bindparam("b_latest"),
                    trained_seconds=bindparam("b_seconds")),
            [{"b_id": e["job_id"], "b_epoch": e["epoch"], "b_step": e["step"], "b_latest": e["points"][-1].as_dict(),
              "b_seconds": e["trained_seconds"]} for e in with_points],
        )
        metric_repo.insert_points(session, [(e["job_id"], e["points"]) for e in with_points])
    if without:
        connection.execute(
            update(JOBS).where(JOBS.c.id == bindparam("b_id"))
            .values(epoch=bindparam("b_epoch"), step=bindparam("b_step"), trained_seconds=bindparam("b_seconds")),
            [{"b_id": e["job_id"], "b_epoch": e["epoch"], "b_step": e["step"], "b_seconds": e["trained_seconds"]}
             for e in without],
        )
    return {e["job_id"]: ours.get(e["job_id"]) for e in entries}


def finish_members(session: Session, worker_id: str, entries: list[dict]) -> set[str]:
    """Members trained: succeeded, with their weights and what early stopping decided; returns the ids closed.

    Each entry: job_id, attempt, weights, evaluation, and with early stopping stopped_early_at, best_epoch,
    best_metrics; a member an adaptive search or a time limit stopped has stopped_early_at and stop_reason;
    trained_seconds, its time trained; `execution`, when given, replaces the path the member showed while it ran.
    """
    ours = _rows(session, worker_id, [(e["job_id"], e["attempt"]) for e in entries])
    mine = [e for e in entries if e["job_id"] in ours]
    if not mine:
        return set()
    early = ("stopped_early_at", "best_epoch", "best_metrics", "evaluation", "stop_reason")
    connection = session.connection()
    connection.execute(
        update(JOBS).where(JOBS.c.id == bindparam("b_id"))
        .values(status=JobStatus.SUCCEEDED, error=None, finished_at=utcnow(), lease_expires_at=None,
                execution=func.coalesce(bindparam("b_execution"), JOBS.c.execution),
                trained_seconds=func.coalesce(bindparam("b_seconds"), JOBS.c.trained_seconds),
                **{name: bindparam(f"b_{name}") for name in early}),
        [{"b_id": e["job_id"], "b_execution": e["execution"][:500] if e.get("execution") else None,
          "b_seconds": e.get("trained_seconds"),
          **{f"b_{name}": e.get(name) for name in early}} for e in mine],
    )
    connection.execute(insert(WEIGHTS), [{"job_id": e["job_id"], "data": e["weights"]} for e in mine])
    # the last checkpoint gives way to the final state, kept while the job is (what a continuation starts from)
    connection.execute(delete(CHECKPOINTS).where(CHECKPOINTS.c.job_id.in_([e["job_id"] for e in mine])))
    final = [{"job_id": e["job_id"], "attempt": e["attempt"], "epoch": e["final_epoch"], "data": e["final_state"],
              "created_at": utcnow(), "final": True} for e in mine if e.get("final_state") is not None]
    if final:
        connection.execute(insert(CHECKPOINTS), final)
    return {e["job_id"] for e in mine}


def starting_points(session: Session, jobs: list[Job]) -> dict[str, Checkpoint | None]:
    """Where each job's attempt starts, in one statement: its own checkpoint (it resumes), else, for a job that
    continues another, that job's final state (None where there is neither, or the parent is gone)."""
    found = {c.job_id: c for c in session.scalars(select(Checkpoint).where(Checkpoint.job_id.in_(_sources(jobs))))}
    return {job.id: found.get(job.id) or found.get(job.continued_from) for job in jobs}


def checkpoint_epochs(session: Session, jobs: list[Job]) -> dict[str, int]:
    """The epoch each job starts from (see `starting_points`), 0 where it starts afresh (the blobs are not read)."""
    rows = session.execute(select(Checkpoint.job_id, Checkpoint.epoch).where(Checkpoint.job_id.in_(_sources(jobs))))
    found = dict(rows.all())
    return {job.id: found.get(job.id, found.get(job.continued_from, 0)) for job in jobs}


def _sources(jobs: list[Job]) -> list[str]:
    """The ids whose checkpoints the jobs may start from: their own, and those of the jobs they continue."""
    return [job.id for job in jobs] + [job.continued_from for job in jobs if job.continued_from is not None]


def hand_over(session: Session, job_ids: list[str], from_worker: str, to_worker: str) -> None:
    """Claimed jobs that have not started pass to another worker id (a Ray task of their own), attempt unchanged."""
    session.execute(
        update(Job)
        .where(Job.id.in_(job_ids), Job.worker_id == from_worker, Job.status == JobStatus.RUNNING)
        .values(worker_id=to_worker)
    )


def renew_leases(session: Session, worker_id: str, jobs: list[tuple[str, int]], lease_seconds: float) -> None:
    """Extend the leases of many (job id, attempt) of one worker in one statement."""
    session.execute(
        update(JOBS)
        .where(
            JOBS.c.id == bindparam("b_id"),
            JOBS.c.attempt == bindparam("b_attempt"),
            JOBS.c.worker_id == worker_id,
            JOBS.c.status == JobStatus.RUNNING,
        )
        .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds)),
        [{"b_id": job_id, "b_attempt": attempt} for job_id, attempt in jobs],
    )
