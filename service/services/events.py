"""Watching a job change: the long-poll and the Server-Sent Events stream.

Both wait on the process's change feed (service/services/watchers.py), holding no database connection
meanwhile, and read after each change in a short transaction of their own: on SQLite every writing
transaction takes the write lock, and a connection held while waiting is one the pool cannot lend.
"""

import time
from collections.abc import AsyncIterator
from contextlib import aclosing

from fitserve.schemas import JobPublic, MetricPointPublic
from service.db import session_scope
from service.models import JobStatus
from service.repositories import metrics as metric_repo
from service.repositories.job_versions import JobVersion, version_of
from service.schemas.limits import LIMITS
from service.services.jobs import get_job, public_job
from service.services.watchers import Slot, WatchedJob, Watchers

MAX_WAIT_SECONDS = 60
KEEPALIVE_SECONDS = 15.0  # a comment line now and then, so proxies do not close an idle stream
POINTS_PER_READ = 1000


def version(job: JobPublic) -> JobVersion:
    """What a watcher counts as a change: status, progress, the latest point, a cancel request, an attempt."""
    latest = {"step": job.metrics.step} if job.metrics else None
    return version_of(job.status, job.progress.epoch, latest, job.cancel_requested, job.attempt)


def read_job(job_id: str, owner_id: str | None) -> JobPublic:
    with session_scope(read_only=True) as s:
        return public_job(s, get_job(s, job_id, owner_id))


def read_changes(job_id: str, owner_id: str | None, since_step: int) -> tuple[JobPublic, list[MetricPointPublic]]:
    """The job and its next points, read in one transaction so a final status comes with every point before it."""
    with session_scope(read_only=True) as s:
        job = public_job(s, get_job(s, job_id, owner_id))
        points = metric_repo.list_points_after(s, job_id, since_step, POINTS_PER_READ)
        return job, [MetricPointPublic.model_validate(p) for p in points]


async def wait_for_change(first: JobPublic, owner_id: str | None, seconds: float, watchers: Watchers) -> JobPublic:
    """The job as soon as it differs from `first`, or as it is after `seconds`; at once if it is final."""
    deadline = time.monotonic() + seconds
    job = first
    with watchers.feed.watch(first.id) as entry:
        # a feed that has seen another version than `first` may have seen a change since: read again at once
        seen = entry.generation if entry.version in (None, version(first)) else -1
        while not JobStatus(job.status).is_final and (left := deadline - time.monotonic()) > 0:
            if not await entry.wait_past(seen, left):
                break
            seen = entry.generation
            job = await watchers.read(read_job, first.id, owner_id)
            if version(job) != version(first):
                break
    return job


def sse(event: str, data: str, event_id: int) -> str:
    return f"event: {event}\nid: {event_id}\ndata: {data}\n\n"


def last_step(job: JobPublic) -> int:
    return job.metrics.step if job.metrics else 0


def end_id(job: JobPublic, cursor: int = 0) -> int:
    """The id of a final job's closing `status` event: one past its last step.

    Apart from every point's id, so a client that saw the last point but lost the closing event is sent it
    again, and one that saw the closing event is told to stop (`has_ended`).
    """
    return max(last_step(job), min(cursor, LIMITS.max_step)) + 1


def has_ended(job: JobPublic, after_step: int) -> bool:
    """Whether a client that saw the event `after_step` has seen the whole stream: the job is final and it saw the end."""
    return JobStatus(job.status).is_final and after_step >= end_id(job)


async def job_events(
    job_id: str, owner_id: str | None, after_step: int, watchers: Watchers, slot: Slot
) -> AsyncIterator[str]:
    """A `status` event first, then `metric` events (id = step) after `after_step` and a `status` event on each change.

    A point's id is its step and a status event's id the last step sent, so a client that reconnects with
    Last-Event-ID misses no point and sees no point twice. A final job's stream ends with its `status` event,
    id `end_id`. Each read's events go out as one chunk: a client gone away is noticed between two writes,
    not after thousands (each write to a closed socket past the fifth logs a warning). `slot` is given back
    when the stream ends, however it ends.
    """
    try:
        with watchers.feed.watch(job_id) as entry:
            async with aclosing(_job_events(job_id, owner_id, after_step, watchers, entry)) as stream:
                async for chunk in stream:
                    yield chunk
    finally:
        slot.release()


async def _job_events(
    job_id: str, owner_id: str | None, cursor: int, watchers: Watchers, entry: WatchedJob
) -> AsyncIterator[str]:
    last_status, last_sent = None, time.monotonic()
    while True:
        seen = entry.generation  # before the read: a change the feed sees during it is read again
        job, points = await watchers.read(read_changes, job_id, owner_id, min(cursor, LIMITS.max_step))
        caught_up = len(points) < POINTS_PER_READ
        ended = caught_up and JobStatus(job.status).is_final
        events = []
        if last_status is None and (points or not ended):  # the opening status, unless it is the closing one too
            last_status = job.status
            events.append(sse("status", job.model_dump_json(), cursor))
        for point in points:
            cursor = point.step
            events.append(sse("metric", point.model_dump_json(), cursor))
        if ended:
            yield "".join(events) + sse("status", job.model_dump_json(), end_id(job, cursor))
            return
        if caught_up and job.status != last_status:
            last_status = job.status
            events.append(sse("status", job.model_dump_json(), cursor))
        if events:
            last_sent = time.monotonic()
            yield "".join(events)
        while caught_up and not await entry.wait_past(seen, last_sent + KEEPALIVE_SECONDS - time.monotonic()):
            last_sent = time.monotonic()
            yield ": keepalive\n\n"
