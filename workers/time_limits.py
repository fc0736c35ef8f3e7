"""Members' time limits on a run's clock: their own `max_seconds` of training, and their sweep's end.

A member's training seconds are counted over its attempts: each report writes its earlier attempts' seconds
plus this run's (jobs.trained_seconds), and an attempt resumed from a checkpoint starts from what the job row
holds. A run counts from the start of its epochs (building, data loading and probes are not training); members
trained together, stacked or in turn, each count the run's wall-clock.
"""

from __future__ import annotations

import math
import time

from service.models import utcnow
from service.repositories import jobs as job_repo


class TimeLimits:
    def __init__(self, members: list, specs: list):
        """`members` (workers/ledger.Member) and their specs, in the run's order."""
        self.began = time.monotonic()
        self.earlier = {m.job_id: m.trained_seconds for m in members}
        self.ends: dict[str, tuple[float, str]] = {}  # job id -> (monotonic time it stops at, why)
        wall = utcnow()
        for m, spec in zip(members, specs):
            ends = []
            if spec.max_seconds is not None:
                ends.append((self.began + spec.max_seconds - m.trained_seconds,
                             f"time limit: max_seconds {spec.max_seconds:g} reached"))
            if m.deadline_at is not None:
                ends.append((self.began + (m.deadline_at - wall).total_seconds(), job_repo.SWEEP_TIME_LIMIT))
            if ends:
                self.ends[m.job_id] = min(ends)
        self.next = min((end for end, _ in self.ends.values()), default=math.inf)

    def watching(self) -> bool:
        """Whether any member has a limit."""
        return bool(self.ends)

    def trained(self, job_id: str) -> float:
        """The member's training seconds so far, its earlier attempts' included."""
        return self.earlier[job_id] + time.monotonic() - self.began

    def due(self) -> bool:
        """Whether some member's limit may have passed (one clock read: asked between mini-batches)."""
        return time.monotonic() >= self.next

    def passed(self, job_ids: list[str]) -> dict[str, str]:
        """Of these members, those whose limit passed, and why; they are no longer watched."""
        now = time.monotonic()
        watched = {job_id: self.ends[job_id] for job_id in job_ids if job_id in self.ends}  # the others ended
        passed = {job_id: why for job_id, (end, why) in watched.items() if end <= now}
        self.ends = {job_id: end for job_id, end in watched.items() if job_id not in passed}
        self.next = min((end for end, _ in self.ends.values()), default=math.inf)
        return passed
