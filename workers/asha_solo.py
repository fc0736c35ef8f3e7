"""ASHA one member at a time: every member trains to the next rung, then the rung decides, as batched.

Each member is a solo `Trainer` kept in memory between rungs (its spec's `epochs` set to the rung's
epoch for the stretch, so the rung's epoch is recorded and reported); a stopped member is closed
with its weights as of the rung, the others go on to the next rung.
"""

from __future__ import annotations

import threading

from modelzoo.weights import weights_to_bytes
from service.db import session_scope
from service.models import Job, JobStatus
from service.repositories import jobs as job_repo
from service.settings import Settings
from workers.asha import Rungs
from workers.devices import resolve_device, this_node
from workers.evaluation import evaluate_splits
from workers.trainer import Diverged
from workers.worker import Attempt, build_trainer, set_execution


class RungMember:
    """One member's attempt and trainer, and the latest point it reported."""

    def __init__(self, job: Job, worker_id: str, settings: Settings, device, shutdown: threading.Event):
        self.job, self.attempt = job, Attempt(job, worker_id, settings, shutdown)
        self.latest = None
        report = self.attempt.report

        def keep_latest(points, progress):
            if len(points):
                self.latest = points[-1]
            return report(points, progress)

        self.attempt.report = keep_latest
        self.trainer = build_trainer(job, self.attempt, device, settings, graphs=False)
        self.spec = self.trainer.spec

    def train_to(self, epoch: int) -> bool:
        """Train on to `epoch`; False when stopped first (cancel, shutdown, lost)."""
        self.trainer.spec = self.spec.model_copy(update={"epochs": epoch})
        try:
            return self.trainer.run()
        finally:
            self.trainer.spec = self.spec

    def metric(self, name: str) -> float | None:
        return None if self.latest is None else getattr(self.latest, name)

    def entry(self) -> dict:
        """What closing the member stores: its weights and its evaluation on the held-out splits, as they are now."""
        return {"job_id": self.job.id, "attempt": self.job.attempt,
                "weights": weights_to_bytes(self.trainer.net, self.job.spec),
                "evaluation": evaluate_splits(self.trainer.net, self.trainer.data, self.spec)}


def run_rungwise(group: list[Job], rungs: Rungs, worker_id: str, settings: Settings, gpu, shutdown) -> None:
    device = resolve_device(group[0].spec.get("device", "auto"), gpu)
    members = []
    for job in group:
        member = RungMember(job, worker_id, settings, device, shutdown)
        set_execution(job, member.attempt, f"eager on {device}; asha rung by rung", device, this_node())
        members.append(member)
    epochs = group[0].spec["epochs"]
    for rung, epoch in enumerate([*rungs.epochs, epochs], start=1):
        members = [m for m in members if train_member(m, epoch)]
        if shutdown.is_set():
            for m in members:
                hand_back(m)
            return
        if not members:
            return
        if epoch == epochs:
            break
        with session_scope() as s:
            kept = rungs.decide(s, rung, {m.job.id: m.metric(rungs.metric) for m in members})
            rungs.stop_members(s, worker_id, rung, [m.entry() for m in members if m.job.id not in kept])
        members = [m for m in members if m.job.id in kept]
    for m in members:
        closing = m.entry()
        m.attempt.finish(JobStatus.SUCCEEDED, weights=closing["weights"], evaluation=closing["evaluation"])


def train_member(member: RungMember, epoch: int) -> bool:
    """True when the member reached `epoch` and goes on; else it has ended (failed, cancelled) or was handed back."""
    try:
        if member.train_to(epoch):
            return True
    except Diverged as exc:
        member.attempt.finish(JobStatus.FAILED, f"training diverged: {exc}")
        return False
    reason = member.attempt.stop_reason()
    if reason == "cancelled":
        member.attempt.finish(JobStatus.CANCELLED, "cancelled on request")
    elif reason == "shutdown":
        hand_back(member)
    return False


def hand_back(member: RungMember) -> None:
    """Worker shutting down: checkpoint the member where it stands and give it back to the queue."""
    member.trainer.cb.checkpoint(member.trainer.state())
    with session_scope() as s:
        job_repo.release_job(s, member.job.id, member.attempt.worker_id, member.job.attempt,
                             "worker shut down; resumes from its checkpoint")
