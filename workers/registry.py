"""A worker process's row in the worker registry: inserted at start, heartbeated on a thread, deleted at exit.

A GPU worker's row carries its GPU's total memory and, refreshed at each heartbeat, its free memory: submit
checks CUDA jobs against the largest registered GPU, and a claim places jobs by it (workers/claims.py).
"""

from __future__ import annotations

import logging
import os
import socket
import threading

from service.db import session_scope
from service.db_faults import FAULTS
from service.models import Worker, utcnow
from service.repositories import workers as worker_repo
from service.services.rescue import process_scope
from service.settings import Settings
from workers.devices import gpu_memory

log = logging.getLogger("fitserve.worker")


class Registration:
    """This process in the registry; `set_job` says what it trains. Heartbeats every LEASE_SECONDS / 3."""

    def __init__(
        self, worker_id: str, kind: str, device: str, settings: Settings, host: str | None = None, gpu: int | None = None
    ):
        self.worker_id, self.kind, self.device, self.gpu = worker_id, kind, device, gpu
        self.host = host or socket.gethostname()
        self.interval = settings.LEASE_SECONDS / 3
        self.started_at = utcnow()
        self.job_id: str | None = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.beat, name="fitserve-heartbeat", daemon=True)

    def row(self) -> Worker:
        total, free = gpu_memory(self.gpu) or (None, None)
        return Worker(
            id=self.worker_id, host=self.host[:255], pid=os.getpid(), process_scope=process_scope(), kind=self.kind,
            device=self.device, gpu_total_bytes=total, gpu_free_bytes=free, job_id=self.job_id,
            started_at=self.started_at, heartbeat_at=utcnow(),
        )

    def __enter__(self) -> Registration:
        self.write()
        self.thread.start()
        return self

    def __exit__(self, *_) -> None:
        self.stopping.set()
        try:
            with session_scope() as s:
                worker_repo.remove(s, [self.worker_id])
        except Exception:  # the database is away: the row expires on its own
            log.warning("worker %s could not remove its registry row", self.worker_id)

    def set_job(self, job_id: str | None) -> None:
        with session_scope() as s:
            self.set_job_in(s, job_id)

    def set_job_in(self, session, job_id: str | None) -> None:
        """`set_job` in the caller's transaction (a claim's: one write transaction less per job)."""
        self.job_id = job_id
        worker_repo.set_current_job(session, self.worker_id, job_id)

    def write(self) -> None:
        with session_scope() as s:
            worker_repo.heartbeat(s, self.row())

    def beat(self) -> None:
        while not self.stopping.wait(self.interval):
            try:
                self.write()
            except Exception as exc:  # a missed beat is retried; a worker silent for a lease is expired by maintenance
                if FAULTS.meet(exc) is None:  # a full disk, a corrupt file: its one line is logged there
                    log.warning("worker %s: heartbeat failed", self.worker_id, exc_info=True)
