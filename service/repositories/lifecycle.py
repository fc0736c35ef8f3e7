"""Queries that delete: jobs with everything they own, sweeps, datasets; old checkpoints and ended jobs.

A job's curve (metric_chunks), weights and checkpoint go with its row (ON DELETE CASCADE), its alias is a
column of it (its history, alias_assignments, stays: the assignment ends), and a sweep's members go with the sweep (jobs.sweep_id cascades). Idempotency records are
not tied by a key: those whose replayed response points at a deleted resource are deleted by its location.
"""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, delete, exists, select
from sqlalchemy.orm import Session

from service.models import Checkpoint, Dataset, IdempotencyKey, Job, JobStatus, Sweep
from service.repositories import aliases

ENDED = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)
INCREMENTAL = 2  # PRAGMA auto_vacuum's value for incremental vacuum


def delete_idempotency_records(session: Session, locations: list[str]) -> None:
    """Forget the replayable responses that created these resources: a retry must not resurrect a 201."""
    if locations:
        session.execute(delete(IdempotencyKey).where(IdempotencyKey.location.in_(locations)))


def delete_jobs(session: Session, job_ids: list[str]) -> int:
    """Delete these jobs with their curves, weights, checkpoints, aliases and idempotency records."""
    if not job_ids:
        return 0
    delete_idempotency_records(session, [f"/v1/jobs/{job_id}" for job_id in job_ids])
    aliases.release_jobs(session, job_ids)
    return session.execute(delete(Job).where(Job.id.in_(job_ids))).rowcount


def member_ids(session: Session, sweep_id: str) -> list[str]:
    return list(session.scalars(select(Job.id).where(Job.sweep_id == sweep_id)))


def delete_sweep(session: Session, sweep_id: str) -> None:
    """Delete the sweep and every member (jobs.sweep_id cascades), with their idempotency records."""
    delete_idempotency_records(session, [f"/v1/sweeps/{sweep_id}"])
    aliases.release_jobs(session, member_ids(session, sweep_id))
    session.execute(delete(Sweep).where(Sweep.id == sweep_id))


def dataset_users(session: Session, dataset_id: str, limit: int = 5) -> list[tuple[str, str]]:
    """(id, status) of queued or running jobs that train on this dataset: they still need it."""
    uses = Job.spec["data"]["dataset_id"].as_string() == dataset_id
    query = select(Job.id, Job.status).where(Job.status.in_(ACTIVE), uses).order_by(Job.created_at).limit(limit)
    return [tuple(row) for row in session.execute(query)]


def delete_dataset(session: Session, dataset_id: str) -> None:
    delete_idempotency_records(session, [f"/v1/datasets/{dataset_id}"])
    session.execute(delete(Dataset).where(Dataset.id == dataset_id))


def drop_checkpoints_ended_before(session: Session, cutoff: datetime, limit: int) -> int:
    """Drop up to `limit` checkpoints of jobs that failed or were cancelled before `cutoff`: nothing will resume
    from them. A succeeded job's (its final state) stays as long as the job: a continuation starts from it."""
    unfinished = (JobStatus.FAILED, JobStatus.CANCELLED)
    ended = select(Job.id).where(Job.id == Checkpoint.job_id, Job.status.in_(unfinished), Job.finished_at < cutoff)
    # the few that are no final state (ix_checkpoints_not_final), each with its job by key
    doomed = select(Checkpoint.job_id).where(~Checkpoint.final, exists(ended)).limit(limit)
    ids = list(session.scalars(doomed))
    if ids:
        session.execute(delete(Checkpoint).where(Checkpoint.job_id.in_(ids)))
    return len(ids)


def jobs_ended_before(session: Session, cutoff: datetime, limit: int) -> list[str]:
    """Ids of up to `limit` jobs of any owner that ended before `cutoff`, those that ended first first: the start of
    ix_jobs_finished_at_id, whatever the number of jobs kept. Only a job's end sets finished_at (and nothing
    ends a job twice or starts it again), so no status is asked: SQLite would seek on status instead, and sort."""
    query = select(Job.id).where(Job.finished_at < cutoff).order_by(Job.finished_at, Job.id).limit(limit)
    return list(session.scalars(query))


def delete_emptied_sweeps(session: Session, created_before: datetime, limit: int) -> int:
    """Sweeps older than `created_before` whose members are all gone (retention deleted them one by one)."""
    empty = select(Sweep.id).where(
        Sweep.created_at < created_before, ~exists(select(Job.id).where(Job.sweep_id == Sweep.id))
    )
    ids = list(session.scalars(empty.limit(limit)))
    if ids:
        delete_idempotency_records(session, [f"/v1/sweeps/{sweep_id}" for sweep_id in ids])
        session.execute(delete(Sweep).where(Sweep.id.in_(ids)))
    return len(ids)


@dataclass
class SqlitePages:
    free: int
    total: int
    size: int
    incremental: bool  # auto_vacuum = INCREMENTAL: free pages can be given back a few at a time


def sqlite_pages(engine: Engine) -> SqlitePages:
    raw = engine.raw_connection()  # autocommit: reading these takes no lock
    try:
        values = [raw.driver_connection.execute(f"PRAGMA {name}").fetchone()[0]
                  for name in ("freelist_count", "page_count", "page_size", "auto_vacuum")]
    finally:
        raw.close()
    return SqlitePages(*values[:3], incremental=values[3] == INCREMENTAL)


def give_back_sqlite_pages(engine: Engine, max_pages: int | None) -> None:
    """Free pages back to the file system: at most `max_pages` by incremental vacuum, or (None) all by VACUUM,
    which rewrites the file and switches it to incremental auto_vacuum. The WAL is then checkpointed and
    truncated, so the files on disk shrink."""
    raw = engine.raw_connection()  # autocommit (service.db): VACUUM cannot run inside a transaction
    try:
        driver = raw.driver_connection
        if max_pages is None:
            driver.execute("PRAGMA auto_vacuum = INCREMENTAL")
            driver.execute("VACUUM")
        else:
            # a script runs the pragma to its end; a plain execute frees one page per step
            driver.executescript(f"PRAGMA incremental_vacuum({int(max_pages)});")
        driver.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        raw.close()
