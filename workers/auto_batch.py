"""Auto-batching: separately submitted jobs that can share a step, claimed and trained as one computation.

A worker that claims a job (outside sweeps) also claims queued jobs of its batch key
(service/batching.py; fair share and caps in service/repositories/batches.py) and trains them
the way a sweep's members train (workers/groups.py): one StackedTrainer, each job still its
own lease, curve, checkpoint, weights, status and cancel. FITSERVE_AUTO_BATCH:

- auto: batched when the probe measures it at least MIN_SPEEDUP faster than one by one. A verdict is
  kept per batch key and size (powers of two) in this process; a size that a probe of another size
  already proves faster (AutoBatchPolicy.speedup_floor) is not probed again. When batched is slower the mates go
  back to the queue untouched, for any worker, instead of waiting here; a key found slower at about
  the size a claim would take claims no mates again.
- on: batched whenever mates are queued. off: never; every job alone, as before.
"""

from __future__ import annotations

import logging
import math
import threading

from modelzoo.memory import estimate_training
from service.models import Job
from service.repositories import batches as batch_repo
from service.repositories import datasets as dataset_repo
from service.schemas.data import known_data_shape
from service.schemas.spec import JobSpec
from service.settings import Settings
from workers.groups import MIN_SPEEDUP, SweepPolicy, measure_speedup, run_sweep_members

log = logging.getLogger("fitserve.autobatch")


def size_bucket(n: int) -> int:
    """Batches of 2, 3-4, 5-8, ... jobs share a probe's verdict."""
    return max(2, 1 << (n - 1).bit_length())


class AutoBatchPolicy(SweepPolicy):
    """Sweep machinery, the auto-batch way: the setting decides, and probes' verdicts are remembered."""

    forced = "FITSERVE_AUTO_BATCH=on"
    members = "jobs auto-batched"

    def __init__(self, settings: Settings):
        self.settings = settings
        self.speedups: dict[tuple[str, int], float] = {}  # (batch key, size bucket) -> measured speedup
        self.probed_sizes: dict[tuple[str, int], int] = {}  # (batch key, size bucket) -> jobs in that probe

    def asked(self, group: list[Job]) -> str:
        return "batched" if self.settings.AUTO_BATCH == "on" else "auto"

    def speedup(self, group: list[Job], specs, nets, datas, device, threads: list[int]) -> tuple[float, bool]:
        """Probed once per key and size bucket in this process (a probe costs up to a second), unless a probe at
        another size already proves batching faster at this one."""
        key, n = group[0].batch_key, len(group)
        at = (key, size_bucket(n))
        if at not in self.speedups:
            floor = self.speedup_floor(key, n)
            if floor >= MIN_SPEEDUP:
                return floor, False
            self.speedups[at] = measure_speedup(specs, nets, datas, device, threads)
            self.probed_sizes[at] = n
        return self.speedups[at], True

    def speedup_floor(self, key: str, n: int) -> float:
        """The least speedup batching n jobs of this key can have, from the probes of other sizes (0 if none).

        A probe of m jobs measured s = m * solo / batched(m). A batched step of n < m jobs costs no more than
        one of m, so batching n is at least s * n / m faster; one of n > m jobs costs at most n / m steps of m
        (it is the same work, stacked wider), so at least s.
        """
        return max(
            (speedup * min(1.0, n / self.probed_sizes[(k, bucket)])
             for (k, bucket), speedup in self.speedups.items() if k == key),
            default=0.0,
        )

    def slower(self, key: str, limit: int) -> bool:
        """Batching this key was measured slower at about the size a claim would take: claim no mates."""
        probed = [(size, speedup) for (k, size), speedup in self.speedups.items() if k == key]
        if not probed:
            return False
        size, speedup = max(probed)
        return speedup < MIN_SPEEDUP and size >= size_bucket(limit + 1) // 2

    def note(self, group: list[Job], note: str) -> None:
        """Each job's `execution` says how it trained (start_members, run_attempt): nothing more to write."""


_policy: AutoBatchPolicy | None = None


def policy_for(settings: Settings) -> AutoBatchPolicy:
    """This process's policy: its verdicts last as long as the worker."""
    global _policy
    if _policy is None or _policy.settings is not settings:
        _policy = AutoBatchPolicy(settings)
    return _policy


def batch_size_limit(session, job: Job, settings: Settings) -> int:
    """Jobs one batch may take: FITSERVE_AUTO_BATCH_MAX, and no more than FITSERVE_MAX_JOB_BYTES holds together."""
    spec = JobSpec.model_validate(job.spec)
    shape = known_data_shape(spec.data)
    if shape is None:
        shape = dataset_repo.get_dataset(session, spec.data.dataset_id, job.owner_id)
        if shape is None:
            return 1  # the dataset is gone: the job fails alone
    one = estimate_training(spec, shape.n_rows, math.prod(shape.sample_shape), shape.target_width).total
    return max(1, min(settings.AUTO_BATCH_MAX, settings.MAX_JOB_BYTES // max(1, one)))


def claim_mates(session, job: Job, worker_id: str, settings: Settings, max_running: int | None) -> list[str]:
    """Ids of queued jobs to train with `job`, claimed in the same transaction; none when auto-batching is off."""
    if settings.AUTO_BATCH == "off" or job.batch_key is None or job.sweep_id is not None:
        return []
    limit = batch_size_limit(session, job, settings) - 1
    if limit <= 0 or (settings.AUTO_BATCH == "auto" and policy_for(settings).slower(job.batch_key, limit)):
        return []
    return batch_repo.claim_batch_mates(session, job, worker_id, settings.LEASE_SECONDS, limit, max_running)


def run_batch(jobs: list[Job], worker_id: str, settings: Settings, gpu, shutdown: threading.Event) -> None:
    """Train a job and its claimed mates: batched, or (slower, or the batched path failed) one by one."""
    log.info("auto-batch: %d jobs claimed by %s: %s", len(jobs), worker_id, ", ".join(j.id for j in jobs))
    run_sweep_members(jobs, worker_id, settings, gpu, shutdown, policy_for(settings))
