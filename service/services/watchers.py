"""Watchers of jobs (event streams and long-polls): their caps, and the one change feed they share.

A waiting watcher holds no database connection. One poll loop per API process reads the version of
every watched job in one short transaction each POLL_SECONDS and wakes the watchers of the jobs that
changed; those then read what they answer in short transactions of their own. The loop and those
reads together run at most `readers` at a time, so watchers never hold more of the connection pool
than that, however many are open.
"""

import asyncio
import logging
import threading
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import anyio
from sqlalchemy.exc import SQLAlchemyError

from service.db import session_scope
from service.errors import TooManyRequests
from service.repositories import job_versions
from service.repositories.job_versions import JobVersion
from service.settings import Settings

log = logging.getLogger("fitserve.watchers")
POLL_SECONDS = 0.25
RETRY_SECONDS = 5  # what a refused watcher is told to wait: a long-poll lasts up to a minute, a stream longer
GONE: JobVersion = ("gone", 0, 0, False, 0)  # the version of a job no longer there: its watchers read the 404
T = TypeVar("T")


class Slot:
    """One watcher's place under the caps, given back once: by `release`, or when the slot is dropped unreleased."""

    def __init__(self, give_back: Callable[[], None]):
        self._give_back = weakref.finalize(self, give_back)

    def release(self) -> None:
        self._give_back()


class WatcherCaps:
    """Open watchers per caller (an owner, or an anonymous address) and in all: 429 past either."""

    def __init__(self, per_owner: int, total: int):
        self.per_owner, self.total = per_owner, total
        self.open: Counter[str] = Counter()
        self.count = 0
        self.lock = threading.Lock()  # a dropped slot may be collected on any thread

    def take(self, caller: str) -> Slot:
        with self.lock:
            if self.open[caller] >= self.per_owner:
                raise TooManyRequests(
                    f"{self.per_owner} event streams and long-polls of yours are open "
                    "(FITSERVE_MAX_WATCHERS_PER_OWNER); close one first",
                    RETRY_SECONDS,
                )
            if self.count >= self.total:
                raise TooManyRequests(
                    f"{self.total} event streams and long-polls are open on this server (FITSERVE_MAX_WATCHERS)",
                    RETRY_SECONDS,
                )
            self.open[caller] += 1
            self.count += 1
        return Slot(lambda: self._give_back(caller))

    def _give_back(self, caller: str) -> None:
        with self.lock:
            self.count -= 1
            self.open[caller] -= 1
            if self.open[caller] <= 0:
                del self.open[caller]


class WatchedJob:
    """A job's entry in the feed: the version last read, and a generation counted up at each change."""

    def __init__(self):
        self.version: JobVersion | None = None  # None until the feed's first read of it
        self.generation = 0
        self.changed = anyio.Event()
        self.watchers = 0

    def update(self, version: JobVersion) -> None:
        if version != self.version:
            self.version, self.generation = version, self.generation + 1
            self.changed.set()
            self.changed = anyio.Event()

    async def wait_past(self, generation: int, timeout: float) -> bool:
        """True once the job has changed after `generation` (at once if it has); False after `timeout` seconds."""
        with anyio.move_on_after(timeout):
            while self.generation <= generation:
                await self.changed.wait()
            return True
        return False


def read_versions(job_ids: list[str]) -> dict[str, JobVersion]:
    with session_scope(read_only=True) as s:
        return job_versions.list_versions(s, job_ids)


class ChangeFeed:
    """One poll loop for all the watched jobs of this process; it runs while any job is watched."""

    def __init__(self, readers: anyio.CapacityLimiter, poll_seconds: float = POLL_SECONDS):
        self.readers, self.poll_seconds = readers, poll_seconds
        self.jobs: dict[str, WatchedJob] = {}
        self.task: asyncio.Task | None = None
        self.failing = False

    @contextmanager
    def watch(self, job_id: str) -> Iterator[WatchedJob]:
        """The job's entry, kept up to date while the block runs (on the event loop)."""
        entry = self.jobs.setdefault(job_id, WatchedJob())
        entry.watchers += 1
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self.run())
        try:
            yield entry
        finally:
            entry.watchers -= 1
            if entry.watchers == 0 and self.jobs.get(job_id) is entry:
                del self.jobs[job_id]

    async def run(self) -> None:
        try:
            while self.jobs:
                await self.poll()
                await anyio.sleep(self.poll_seconds)
        finally:
            self.task = None  # no await between the loop's last check and here: a new watcher starts a new loop

    async def poll(self) -> None:
        job_ids = list(self.jobs)
        try:
            versions = await anyio.to_thread.run_sync(read_versions, job_ids, limiter=self.readers)
        except (SQLAlchemyError, OSError) as exc:  # the loop outlives a failed read (database restarting, pool busy)
            if not self.failing:
                log.warning(
                    "change feed: cannot read the watched jobs (%s); retrying every %gs", exc, self.poll_seconds
                )
            self.failing = True
            return
        if self.failing:
            log.info("change feed: reading the watched jobs again")
            self.failing = False
        for job_id in job_ids:
            if (entry := self.jobs.get(job_id)) is not None:
                entry.update(versions.get(job_id, GONE))


class Watchers:
    """What the API's event streams and long-polls share: the caps, the change feed, the limit on their reads."""

    def __init__(self, settings: Settings):
        self.caps = WatcherCaps(settings.MAX_WATCHERS_PER_OWNER, settings.MAX_WATCHERS)
        # half the pool at most, so other requests always find connections however many watchers wake at once
        self.readers = anyio.CapacityLimiter(max(1, settings.DB_POOL_SIZE // 2))
        self.feed = ChangeFeed(self.readers)

    async def read(self, fn: Callable[..., T], *args) -> T:
        """`fn(*args)` on a worker thread, as one of the watchers' few concurrent database reads."""
        return await anyio.to_thread.run_sync(fn, *args, limiter=self.readers)
