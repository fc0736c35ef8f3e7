"""One worker process: claim a job, train it, record it; renew the lease while it runs."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import torch
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from modelzoo import build_network
from modelzoo.weights import weights_to_bytes
from service.curves import Columns
from service.db import session_scope
from service.models import Job, JobStatus
from service.repositories import datasets as dataset_repo
from service.repositories import jobs as job_repo
from service.repositories import metrics as metric_repo
from service.repositories import queue as queue_repo
from service.schemas.spec import JobSpec
from service.settings import Settings
from workers.checkpoints import state_from_bytes, state_to_bytes
from workers.data import load_data
from workers.devices import resolve_device, this_node
from workers.evaluation import evaluate_splits
from workers.trainer import Callbacks, Diverged, Progress, Trainer, fit_standardization, seed_network_init

T = TypeVar("T")

log = logging.getLogger("fitserve.worker")


class Attempt:
    """One attempt at one job: the guard (worker, attempt) goes with every write."""

    def __init__(self, job: Job, worker_id: str, settings: Settings, shutdown: threading.Event):
        self.job_id, self.attempt, self.worker_id = job.id, job.attempt, worker_id
        self.settings = settings
        self.shutdown = shutdown
        self.cancelled = threading.Event()
        self.lost = threading.Event()  # the job is no longer ours: write nothing more
        self.done = threading.Event()
        self.next_poll = time.monotonic() + settings.REPORT_SECONDS
        self.execution = ""  # the path that trains it, as the job shows it (set_execution)

    def stop_reason(self) -> str | None:
        if self.lost.is_set():
            return "lost"
        if self.cancelled.is_set():
            return "cancelled"
        if self.shutdown.is_set():
            return "shutdown"
        return None

    def note(self, cancel: bool | None) -> None:
        if cancel is None:
            self.lost.set()
        elif cancel:
            self.cancelled.set()

    def interrupted(self) -> bool:
        """Inside an epoch: stop now? Flags are read at once; the database (cancel) every REPORT_SECONDS."""
        if self.stop_reason() is not None:
            return True
        now = time.monotonic()
        if now < self.next_poll:
            return False
        self.next_poll = now + self.settings.REPORT_SECONDS
        self.note(write_guarded(self.renew))
        return self.stop_reason() is not None

    def renew(self, s: Session) -> bool | None:
        return job_repo.renew_lease(s, self.job_id, self.worker_id, self.attempt, self.settings.LEASE_SECONDS)

    def heartbeat(self) -> None:
        """Renew the lease until the attempt ends; a slow epoch must not cost the job."""
        interval = self.settings.LEASE_SECONDS / 3
        while not self.done.wait(interval):
            self.note(write_guarded(self.renew))

    def report(self, points: Columns, progress: Progress) -> bool:
        cancel = write_guarded(
            lambda s: job_repo.record_progress(
                s, self.job_id, self.worker_id, self.attempt, progress.epoch, progress.step, points
            )
        )
        self.note(cancel)
        return self.stop_reason() is None

    def checkpoint(self, state: dict) -> None:
        if self.lost.is_set():
            return
        blob = state_to_bytes(state)
        with session_scope() as s:
            job_repo.save_checkpoint(s, self.job_id, self.worker_id, self.attempt, state["epoch"], blob)

    def finish(
        self, status: JobStatus, error: str | None = None, weights: bytes | None = None, early: dict | None = None,
        evaluation: dict | None = None, execution: str | None = None,
    ) -> None:
        """End the attempt; `early` is what early stopping decided (Trainer.early_outcome); `execution`, when
        given, replaces the path the job showed while it ran."""
        with session_scope() as s:
            if early is not None:
                job_repo.record_early_stopping(s, self.job_id, self.worker_id, self.attempt, **early)
            job_repo.finish_job(
                s, self.job_id, self.worker_id, self.attempt, status, error, weights, evaluation, execution
            )


def write_guarded(write: Callable[[Session], T]) -> T:
    """One of an attempt's (worker, attempt)-guarded writes, in a transaction of its own.

    Tried once more on a fresh connection when the database dropped the one it had: PostgreSQL ends the
    session of a process frozen inside a transaction (FITSERVE_DB_IDLE_IN_TRANSACTION_SECONDS). Once the
    process runs again, the retry's guard answers as for any stale worker: the job is lost, write nothing.
    """
    try:
        with session_scope() as s:
            return write(s)
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        log.warning("the database dropped this worker's connection (%s); trying the write again", type(exc.orig).__name__)
        with session_scope() as s:
            return write(s)


def fetch_dataset(dataset_id: str) -> bytes:
    with session_scope() as s:
        blob = dataset_repo.get_dataset_bytes(s, dataset_id)
    if blob is None:
        raise LookupError(f"dataset {dataset_id} no longer exists")
    return blob


def build_trainer(job: Job, attempt: Attempt, device: torch.device, settings: Settings, graphs: bool = True) -> Trainer:
    spec = JobSpec.model_validate(job.spec)
    seed_network_init(spec.seed)
    net = build_network(spec.model)
    data = load_data(spec, fetch_dataset)
    if spec.data.standardize:
        fit_standardization(net, data.x_train)
    callbacks = Callbacks(
        report=attempt.report,
        checkpoint=attempt.checkpoint,
        checkpoint_seconds=settings.CHECKPOINT_SECONDS,
        report_seconds=settings.REPORT_SECONDS,
        interrupted=attempt.interrupted,
    )
    trainer = Trainer(
        spec, net.to(device), data.to(device), device, callbacks, graphs=graphs, tune_threads=settings.TUNE_THREADS
    )
    with session_scope() as s:
        saved = job_repo.get_checkpoint(s, job.id)
        blob = saved.data if saved is not None else None
        if blob is not None:
            trainer.load_state(state_from_bytes(blob))
            log.info("job %s resumes from its checkpoint at epoch %d", job.id, trainer.progress.epoch)
        # points past the resume point were written by an attempt that died: they are rewritten
        metric_repo.truncate_points(s, job.id, trainer.progress.step)
    return trainer


def run_attempt(
    job: Job, worker_id: str, settings: Settings, gpu: int | None, shutdown: threading.Event, node: str | None = None
) -> None:
    """Train one claimed job; `node` names where it runs (this host unless an executor says otherwise)."""
    attempt = Attempt(job, worker_id, settings, shutdown)
    beat = threading.Thread(target=attempt.heartbeat, name=f"heartbeat-{job.id}", daemon=True)
    beat.start()
    started = time.perf_counter()
    try:
        device = resolve_device(job.spec.get("device", "auto"), gpu)
        trainer, finished = train_with_fallback(job, attempt, device, settings, node or this_node())
    except Diverged as exc:
        attempt.finish(JobStatus.FAILED, f"training diverged: {exc}")
        return
    except Exception as exc:  # a bad dataset, a missing GPU, no memory: the job fails, the worker lives on
        if is_out_of_memory(exc):
            attempt.finish(JobStatus.FAILED, f"out of memory: {str(exc)[:500]}")
            return
        log.exception("job %s failed", job.id)
        attempt.finish(JobStatus.FAILED, f"{type(exc).__name__}: {str(exc)[:1000]}")
        return
    finally:
        attempt.done.set()
        if device_is_cuda(job):
            torch.cuda.empty_cache()
    reason = attempt.stop_reason() if not finished else None
    if finished:
        weights = weights_to_bytes(trainer.net, job.spec)  # the best epoch's, with early stopping
        evaluation = evaluate_splits(trainer.net, trainer.data, trainer.spec)
        threads = trainer.threads.note if trainer.threads is not None else None
        attempt.finish(
            JobStatus.SUCCEEDED, weights=weights, early=trainer.early_outcome(), evaluation=evaluation,
            execution=f"{attempt.execution}; {threads}" if threads else None,
        )
    elif reason == "cancelled":
        attempt.finish(JobStatus.CANCELLED, "cancelled on request")
    elif reason == "shutdown":
        with session_scope() as s:
            job_repo.release_job(s, job.id, worker_id, job.attempt, "worker shut down; resumes from its checkpoint")
    log.info("job %s attempt %d: %s in %.2fs", job.id, job.attempt, reason or "succeeded", time.perf_counter() - started)


def train_with_fallback(
    job: Job, attempt: Attempt, device: torch.device, settings: Settings, node: str
) -> tuple[Trainer, bool]:
    """Train on the fast path (CUDA graphs) where it applies; if it fails, again on the plain eager path.

    The plain attempt resumes from the last checkpoint, as after any interruption. The job's
    `execution` says which path trained it, and why it fell back.
    """
    trainer = build_trainer(job, attempt, device, settings)
    path = "cuda graph" if trainer.graph is not None else "eager"
    set_execution(job, attempt, f"{path} on {device}", device, node)
    if trainer.graph is None:
        return trainer, trainer.run()
    try:
        return trainer, trainer.run()
    except (Diverged, torch.OutOfMemoryError, MemoryError):
        raise
    except Exception as exc:
        why = f"{type(exc).__name__}: {str(exc)[:300]}"
        log.warning("job %s: the cuda graph path failed (%s); training again on the eager path", job.id, why)
    set_execution(job, attempt, f"eager on {device}; the cuda graph path failed ({why})", device, node)
    trainer = build_trainer(job, attempt, device, settings, graphs=False)
    return trainer, trainer.run()


def set_execution(job: Job, attempt: Attempt, note: str, device: torch.device, node: str) -> None:
    attempt.execution = note
    with session_scope() as s:
        job_repo.set_device(s, job.id, attempt.worker_id, attempt.attempt, str(device), node, note)


def is_out_of_memory(exc: Exception) -> bool:
    """CUDA's or the host's; torch reports a failed CPU allocation as a plain RuntimeError."""
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)


def device_is_cuda(job: Job) -> bool:
    return torch.cuda.is_available() and job.spec.get("device", "auto") != "cpu"


def claim(worker_id: str, settings: Settings, registration=None) -> list[Job]:
    """The next queued job, with every queued member of its sweep when it is one, or with the queued jobs
    that can train batched with it (workers/auto_batch.py), in one transaction; with a `registration`
    (workers/registry.py), that transaction also names the job as the worker's current one.

    One transaction, so no other worker takes part of the sweep meanwhile (see `claim_next_job`): its
    members train together, as many as FITSERVE_MAX_RUNNING_PER_OWNER leaves room for (each counts as a
    running job); the others wait for a later claim. Empty when nothing may be claimed.
    """
    cap = running_cap(settings)
    with session_scope() as s:
        job = job_repo.claim_next_job(s, worker_id, settings.LEASE_SECONDS, settings.CLAIM_ORDER, cap)
        if job is None:
            return []
        mate_ids = claim_mates_of(s, job, worker_id, settings)
        if registration is not None:
            registration.set_job_in(s, job.id)
    if not mate_ids:
        return [job]
    # read after the commit: on SQLite every other writer waits while a claim's transaction is open
    with session_scope(read_only=True) as s:
        return [job, *job_repo.get_jobs(s, mate_ids)]


def running_cap(settings: Settings) -> int | None:
    """FITSERVE_MAX_RUNNING_PER_OWNER where claims take turns between owners (CLAIM_ORDER=fair)."""
    return settings.MAX_RUNNING_PER_OWNER if settings.CLAIM_ORDER == "fair" else None


def claim_mates_of(session, job: Job, worker_id: str, settings: Settings) -> list[str]:
    """What trains with a job just claimed, in the claim's transaction: the queued members of its sweep, or
    the queued jobs that can train batched with it (workers/auto_batch.py); their ids."""
    cap = running_cap(settings)
    if job.sweep_id is None:
        from workers.auto_batch import claim_mates  # it imports this module

        return claim_mates(session, job, worker_id, settings, cap)
    room = None if cap is None else queue_repo.room_to_run(session, job.owner_id, cap)
    return job_repo.claim_sweep_members(session, job.sweep_id, worker_id, settings.LEASE_SECONDS, room)
