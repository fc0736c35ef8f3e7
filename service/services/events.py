"""Watching a job change: the long-poll and the Server-Sent Events stream.

Both poll the database at a short interval, each read in its own short transaction: on SQLite
every transaction takes the write lock (BEGIN IMMEDIATE), so none may stay open while waiting.
"""

import time
from collections.abc import AsyncIterator

import anyio

from service.db import session_scope
from service.models import JobStatus
from service.repositories import metrics as metric_repo
from service.schemas.jobs import JobPublic, MetricPointPublic
from service.services.jobs import get_job

POLL_SECONDS = 0.25
MAX_WAIT_SECONDS = 60
KEEPALIVE_SECONDS = 15.0  # a comment line now and then, so proxies do not close an idle stream
POINTS_PER_READ = 1000


def version(job: JobPublic) -> tuple:
    """What a watcher counts as a change: status, progress, the latest point, a cancel request."""
    return job.status, job.progress.epoch, job.metrics.step if job.metrics else 0, job.cancel_requested, job.attempt


def read_job(job_id: str, owner_id: str | None) -> JobPublic:
    with session_scope(read_only=True) as s:
        return JobPublic.from_job(get_job(s, job_id, owner_id))


def read_changes(job_id: str, owner_id: str | None, since_step: int) -> tuple[JobPublic, list[MetricPointPublic]]:
    """The job and its next points, read in one transaction so a final status comes with every point before it."""
    with session_scope(read_only=True) as s:
        job = JobPublic.from_job(get_job(s, job_id, owner_id))
        points = metric_repo.list_points_after(s, job_id, since_step, POINTS_PER_READ)
        return job, [MetricPointPublic.model_validate(p) for p in points]


async def wait_for_change(first: JobPublic, owner_id: str | None, seconds: float) -> JobPublic:
    """The job as soon as it differs from `first`, or as it is after `seconds`; at once if it is final."""
    deadline = time.monotonic() + seconds
    job = first
    while not JobStatus(job.status).is_final and (left := deadline - time.monotonic()) > 0:
        await anyio.sleep(min(POLL_SECONDS, left))
        job = await anyio.to_thread.run_sync(read_job, first.id, owner_id)
        if version(job) != version(first):
            break
    return job


def sse(event: str, data: str, event_id: int) -> str:
    return f"event: {event}\nid: {event_id}\ndata: {data}\n\n"


async def job_events(job_id: str, owner_id: str | None, after_step: int) -> AsyncIterator[str]:
    """`metric` events (id = step) after `after_step`, `status` events on connect and on each status change.

    Every event's id is the last step sent, so a client that reconnects with Last-Event-ID misses no point
    and sees no point twice. The stream ends after the status event of a final job.
    """
    cursor, last_status, last_sent = after_step, None, time.monotonic()
    while True:
        job, points = await anyio.to_thread.run_sync(read_changes, job_id, owner_id, cursor)
        sent = bool(points)
        for point in points:
            cursor = point.step
            yield sse("metric", point.model_dump_json(), cursor)
        caught_up = len(points) < POINTS_PER_READ
        if caught_up and job.status != last_status:
            last_status, sent = job.status, True
            yield sse("status", job.model_dump_json(), cursor)
        if caught_up and JobStatus(job.status).is_final:
            return
        if sent:
            last_sent = time.monotonic()
        elif time.monotonic() - last_sent >= KEEPALIVE_SECONDS:
            last_sent = time.monotonic()
            yield ": keepalive\n\n"
        if caught_up:
            await anyio.sleep(POLL_SECONDS)
