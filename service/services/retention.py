"""Retention, applied by every maintenance tick (services/rescue.py) in small batches, so no tick holds the
database long.

- A failed or cancelled job's checkpoint is dropped FITSERVE_RETENTION_CHECKPOINTS seconds after the job
  ended (a succeeded job's, its final state, stays as long as the job: a continuation starts from it).
- With FITSERVE_RETENTION_DAYS, jobs of every owner that ended longer ago are deleted with everything they
  own, and then sweeps left without members.
- On SQLite, free pages past FITSERVE_RECLAIM_FREE_BYTES are given back to the file system; PostgreSQL's
  autovacuum makes the space of deleted rows reusable by itself.
"""

import logging
from datetime import timedelta
from functools import lru_cache

from service.db import get_engine, session_scope
from service.models import utcnow
from service.repositories import lifecycle as lifecycle_repo
from service.settings import Settings

log = logging.getLogger("fitserve.retention")

# jobs deleted in one transaction: each costs ~33 pages written on SQLite (its row, curve, weights, final state, tags,
# params and every index over them; bench/retention_tick.py), ~1 ms at 1M jobs, so a tick of 200 in one transaction
# held the write lock, which every API write and claim waits for, 340-610 ms; in chunks it is held ~25 ms at a time
RETENTION_CHUNK = 25
# pages one tick gives back at most (64 MiB of 4 KiB pages): the write lock is held for a fraction of a second
RECLAIM_PAGES_PER_SWEEP = 16_384
# an older file is switched to incremental vacuum by one VACUUM, which copies what it holds (~1 s per 100 MiB
# measured) with writers waiting: only where that stays well under SQLite's 30 s busy timeout
VACUUM_MAX_BYTES = 512 * 1024 * 1024


def apply_retention(settings: Settings) -> None:
    """One batch of each retention rule, then space reclaimed if deletions left enough free."""
    now = utcnow()
    with session_scope() as s:
        cutoff = now - timedelta(seconds=settings.RETENTION_CHECKPOINTS)
        dropped = lifecycle_repo.drop_checkpoints_ended_before(s, cutoff, settings.RETENTION_BATCH)
    if dropped:
        log.info("retention: %d checkpoint(s) of ended jobs dropped", dropped)
    if settings.RETENTION_DAYS is not None:
        delete_expired_jobs(now - timedelta(days=settings.RETENTION_DAYS), settings.RETENTION_BATCH)
    reclaim_space(settings)


def delete_expired_jobs(cutoff, batch: int) -> int:
    """Up to `batch` jobs that ended before `cutoff`, RETENTION_CHUNK to a transaction, then the sweeps left empty."""
    deleted = 0
    while deleted < batch:
        with session_scope() as s:
            job_ids = lifecycle_repo.jobs_ended_before(s, cutoff, min(RETENTION_CHUNK, batch - deleted))
            chunk = lifecycle_repo.delete_jobs(s, job_ids)
        deleted += chunk
        if chunk == 0 or len(job_ids) < RETENTION_CHUNK:
            break
    with session_scope() as s:
        sweeps = lifecycle_repo.delete_emptied_sweeps(s, cutoff, batch)
    if deleted or sweeps:
        log.info("retention: %d job(s) and %d sweep(s) that ended before %s deleted", deleted, sweeps, cutoff)
    return deleted


def reclaim_space(settings: Settings) -> int:
    """SQLite only: free pages past RECLAIM_FREE_BYTES given back to the file system; returns how many."""
    engine = get_engine()
    if engine.dialect.name != "sqlite":
        return 0
    pages = lifecycle_repo.sqlite_pages(engine)
    if pages.free == 0 or pages.free * pages.size < settings.RECLAIM_FREE_BYTES:
        return 0
    if pages.incremental:
        lifecycle_repo.give_back_sqlite_pages(engine, RECLAIM_PAGES_PER_SWEEP)
    elif (pages.total - pages.free) * pages.size <= VACUUM_MAX_BYTES:
        lifecycle_repo.give_back_sqlite_pages(engine, None)
    else:
        warn_vacuum_needed()
        return 0
    freed = pages.free - lifecycle_repo.sqlite_pages(engine).free
    log.info("retention: %d free page(s) given back to the file system", freed)
    return freed


@lru_cache
def warn_vacuum_needed() -> None:
    """Once per process: a large file made before incremental vacuum needs one VACUUM, too long to hold writers."""
    log.warning(
        "retention: the SQLite file predates incremental vacuum and is too large to VACUUM while serving; to give "
        "its free pages back, stop fitserve once and run: sqlite3 FILE 'PRAGMA auto_vacuum=INCREMENTAL; VACUUM'"
    )
