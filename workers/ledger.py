"""What a run writes: its members' starts, points, checkpoints and endings, in one place.

`Ledger` writes them to the database, each write guarded by worker and attempt (a member no longer this
worker's attempt is left alone, and the run hears it as lost); one API for one member or many, a few
statements for all. `MemoryLedger` keeps them in this process, for a run with no database (benchmarks of
the loop, and its tests): every member stays its own and is never stopped from outside.

The messages a job's attempt ends with are written here (a rescue's are the service's: services/rescue.py).
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

import torch
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from modelzoo.memory import format_bytes
from modelzoo.weights import weights_to_bytes
from service.db import session_scope
from service.db_faults import FAULTS
from service.models import JobStatus, utcnow
from service.repositories import jobs as job_repo
from service.repositories import members as member_repo
from service.repositories import placements as placement_repo
from service.repositories import workers as worker_repo
from workers.checkpoints import state_to_bytes

T = TypeVar("T")
log = logging.getLogger("fitserve.worker")

HANDED_BACK = "worker shut down; resumes from its checkpoint"
YIELDED = "gave its worker to another owner's waiting job; resumes from its checkpoint at its next turn"


def diverged(epoch: int, loss: float) -> str:
    return f"training diverged: loss became {loss} at epoch {epoch}"


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's or the host's; torch reports a failed CPU allocation as a plain RuntimeError."""
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)


class Gone(LookupError):
    """What a job trains on or starts from was deleted: it fails saying so (no traceback: no fault of the code)."""


def failure(exc: BaseException, where: str = "") -> str:
    """Why an exception fails a job (a bad dataset, a missing GPU, no memory, what it needs deleted); `where`
    (`Ledger.memory_on`) says on what device, and what was asked of it, it ran out of memory."""
    if isinstance(exc, Gone):
        return str(exc)[:1000]
    if is_out_of_memory(exc):
        return f"out of memory{where}: {str(exc)[:500]}"
    return f"{type(exc).__name__}: {str(exc)[:1000]}"


@dataclass(frozen=True)
class Member:
    """One job in a run: the attempt every write is guarded by, its spec as stored (weights carry it), and for its
    time limits (workers/time_limits.py) the seconds its earlier attempts trained and its sweep's end."""

    job_id: str
    attempt: int
    stored_spec: dict = field(hash=False, compare=False)
    trained_seconds: float = field(default=0.0, hash=False, compare=False)
    deadline_at: datetime | None = field(default=None, hash=False, compare=False)

    @classmethod
    def of(cls, job) -> Member:
        return cls(job.id, job.attempt, job.spec, job.trained_seconds or 0.0, job.deadline_at)


def write_guarded(write: Callable[[Session], T]) -> T:
    """One guarded write in a transaction of its own, tried once more on a fresh connection when the
    database dropped the one it had.

    PostgreSQL ends the session of a process frozen inside a transaction
    (FITSERVE_DB_IDLE_IN_TRANSACTION_SECONDS). Once the process runs again, the retry's guard answers as
    for any stale worker: the job is lost, write nothing.
    """
    try:
        with session_scope() as s:
            return write(s)
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        log.warning("the database dropped this worker's connection (%s); trying the write again",
                    type(exc.orig).__name__)
        with session_scope() as s:
            return write(s)


class Ledger:
    """The database's: every write for a run's members, guarded by (worker, attempt)."""

    def __init__(self, worker_id: str):
        self.worker_id = worker_id

    def start(self, members: list[Member], device: str, step: int, execution: str, node: str) -> dict[str, bool]:
        """Where and how the members train; their curves trimmed back to `step` (a resumed attempt rewrites the
        rest). Per job still this attempt's, whether a cancel was asked for (while it waited its turn)."""
        jobs = [(m.job_id, m.attempt) for m in members]
        with session_scope() as s:
            return member_repo.start_members(s, self.worker_id, jobs, device, step, execution, node)

    def report(self, entries: list[dict]) -> dict[str, bool | None]:
        """New points and progress (entries: member, epoch, step, points, trained_seconds); per job, whether a cancel
        was asked for, None where the job is no longer this attempt's."""
        rows = [{"job_id": e["member"].job_id, "attempt": e["member"].attempt, "epoch": e["epoch"],
                 "step": e["step"], "points": e["points"], "trained_seconds": e["trained_seconds"]} for e in entries]
        return write_guarded(lambda s: member_repo.record_progress_many(s, self.worker_id, rows))

    def checkpoint(self, states: list[tuple[Member, dict]]) -> None:
        blobs = [(m, state["epoch"], state_to_bytes(state)) for m, state in states]
        with session_scope() as s:
            for m, epoch, blob in blobs:
                job_repo.save_checkpoint(s, m.job_id, self.worker_id, m.attempt, epoch, blob)

    def succeed(self, entries: list[dict]) -> None:
        """Members trained (entries: member, net, evaluation, and what early stopping or a search decided)."""
        rows = [{"job_id": e["member"].job_id, "attempt": e["member"].attempt,
                 "weights": weights_to_bytes(e["net"], e["member"].stored_spec),
                 **{k: v for k, v in e.items() if k not in ("member", "net")}} for e in entries]
        with session_scope() as s:
            member_repo.finish_members(s, self.worker_id, rows)

    def fail(self, member: Member, error: str) -> None:
        with session_scope() as s:
            job_repo.finish_job(s, member.job_id, self.worker_id, member.attempt, JobStatus.FAILED, error)

    def memory_on(self, device: str, estimate: int | None, node: str) -> str:
        """` on cuda:0 (estimate 1.2 GiB of 24.0 GiB, 3 jobs on that GPU)`: for `failure`, read as the job fails
        (the GPU's memory as its worker registered it, the jobs running there this one included)."""
        said = f"estimate {format_bytes(estimate)}" if estimate else "no estimate"
        if device == "cpu":
            return f" on cpu ({said})"
        with session_scope(read_only=True) as s:
            total = worker_repo.gpu_total(s, node, device)
            _, running = placement_repo.held_on_gpu(s, node, device)
        of = f" of {format_bytes(total)}" if total else ""
        return f" on {device} ({said}{of}, {running} job{'s' if running != 1 else ''} on that GPU)"

    def cancel(self, member: Member, stop_reason: str | None = None) -> None:
        """Cancelled on request, or (`stop_reason`) by a time limit before it trained an epoch."""
        error = job_repo.CANCELLED_ON_REQUEST if stop_reason is None else None
        with session_scope() as s:
            job_repo.finish_job(s, member.job_id, self.worker_id, member.attempt, JobStatus.CANCELLED, error,
                                stop_reason=stop_reason)

    def keep_leases(self, members: list[Member], lease_seconds: float, done: threading.Event) -> None:
        """Renew every member's lease, in one statement, every third of a lease, until `done`."""
        jobs = [(m.job_id, m.attempt) for m in members]
        while not done.wait(lease_seconds / 3):
            try:
                write_guarded(lambda s: member_repo.renew_leases(s, self.worker_id, jobs, lease_seconds))
            except DBAPIError as exc:  # a full disk: logged once, tried again (a lease that expires meanwhile is lost)
                if FAULTS.meet(exc) is None:
                    raise

    def hand_back(self, members: list[Member], why: str | None = None, yielded: bool = False) -> None:
        """The worker shuts down (or `why`; `yielded`: the run gave its turn to another owner): back to the
        queue, to resume from their checkpoints."""
        with session_scope() as s:
            for m in members:
                job_repo.release_job(s, m.job_id, self.worker_id, m.attempt, why or HANDED_BACK, why, yielded)

    def others_waiting(self, members: list[Member], seconds: float, max_running: int | None) -> bool:
        """Whether an owner with no member here has had a job waiting `seconds` for a worker."""
        since = utcnow() - timedelta(seconds=seconds)
        with session_scope(read_only=True) as s:
            return job_repo.others_waiting(s, [m.job_id for m in members], since, max_running)


class MemoryLedger:
    """A run's writes kept here: curves, checkpoints and endings per job id; nothing ever stops a member."""

    def __init__(self):
        self.points: dict[str, list] = defaultdict(list)
        self.checkpoints: dict[str, dict] = {}
        self.ended: dict[str, dict] = {}  # job id -> {"status": ..., and what the ending wrote}

    def succeeded(self, job_id: str = "0") -> bool:
        return self.ended.get(job_id, {}).get("status") == JobStatus.SUCCEEDED

    def start(self, members, device, step, execution, node) -> dict[str, bool]:
        return {m.job_id: False for m in members}

    def report(self, entries: list[dict]) -> dict[str, bool | None]:
        for e in entries:
            self.points[e["member"].job_id].extend(e["points"])
        return {e["member"].job_id: False for e in entries}

    def checkpoint(self, states: list[tuple[Member, dict]]) -> None:
        self.checkpoints.update({m.job_id: state for m, state in states})

    def succeed(self, entries: list[dict]) -> None:
        for e in entries:
            self.ended[e["member"].job_id] = {"status": JobStatus.SUCCEEDED, **e}

    def fail(self, member: Member, error: str) -> None:
        self.ended[member.job_id] = {"status": JobStatus.FAILED, "error": error}

    def cancel(self, member: Member, stop_reason: str | None = None) -> None:
        error = job_repo.CANCELLED_ON_REQUEST if stop_reason is None else None
        self.ended[member.job_id] = {"status": JobStatus.CANCELLED, "error": error, "stop_reason": stop_reason}

    def hand_back(self, members: list[Member], why: str | None = None, yielded: bool = False) -> None:
        for m in members:
            self.ended[m.job_id] = {"status": JobStatus.QUEUED, "error": why or HANDED_BACK}

    def others_waiting(self, members: list[Member], seconds: float, max_running: int | None) -> bool:
        return False  # no queue: the run is alone
