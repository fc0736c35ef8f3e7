"""A CUDA job's memory budget at submit: the largest share of a GPU a live worker registered."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from modelzoo.memory import format_bytes
from service.models import WorkerKind
from service.repositories import workers as worker_repo
from service.settings import Settings


@dataclass(frozen=True)
class GpuShare:
    """What one job may have of a GPU: its memory over FITSERVE_WORKERS_PER_GPU for a pool's worker, all of it for a
    Ray task."""

    device: str
    host: str
    total: int
    workers_per_gpu: int

    @property
    def bytes(self) -> int:
        return self.total // self.workers_per_gpu

    def describe(self) -> str:
        where = f"the largest registered GPU, {self.device} on {self.host}, has {format_bytes(self.total)}"
        if self.workers_per_gpu == 1:  # a Ray task's, or a pool's with one worker a GPU
            return f"{where}, all of it for one job"
        return f"{where}: {format_bytes(self.bytes)} for each of its FITSERVE_WORKERS_PER_GPU={self.workers_per_gpu} workers"


def gpu_share(session: Session, requested: str, settings: Settings) -> GpuShare | None:
    """The GPU share a job asking for `requested` must fit; None where the host's budget alone applies.

    `cuda` and `cuda:N` train on a GPU wherever they run; `auto` does only while every live worker has one (beside
    a CPU worker it may train there, under the host's budget). With no GPU registered, None: the host's budget.
    """
    if requested == "cpu":
        return None
    workers = [w for w in worker_repo.list_live(session, settings.LEASE_SECONDS) if w.kind != WorkerKind.DISPATCHER]
    gpus = [w for w in workers if w.gpu_total_bytes]
    if not gpus or (requested == "auto" and len(gpus) < len(workers)):
        return None
    # a pool's worker has its GPU's 1/WORKERS_PER_GPU; a Ray task asks for its estimate's fraction of a GPU, up to
    # the whole of it (workers/executors/ray_resources.py): WORKERS_PER_GPU only sets its least fraction there
    shares = [GpuShare(w.device, w.host, w.gpu_total_bytes, 1 if w.kind == WorkerKind.RAY_TASK else settings.WORKERS_PER_GPU)
              for w in gpus]
    return max(shares, key=lambda share: share.bytes)
