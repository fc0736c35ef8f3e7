"""Per-model inference statistics of this API process, in Triton's shape (`GET /v2/models/.../stats`).

Counted only for models a request named and resolved, so there is at most one entry per job of an owner
that was ever asked for an inference: a caller cannot grow it with names that do not exist.
"""

import threading
import time
from dataclasses import dataclass, field

from service.schemas.v2 import MODEL_VERSION

PHASES = ("compute_input", "compute_infer", "compute_output")


@dataclass
class ModelStats:
    owner_id: str | None
    last_inference_ms: int = 0
    inference_count: int = 0  # rows answered, as Triton counts a batch
    execution_count: int = 0  # requests answered
    counts: dict[str, list[int]] = field(default_factory=lambda: {k: [0, 0] for k in ("success", "fail", *PHASES)})

    def as_triton(self, name: str) -> dict:
        stats = {k: {"count": count, "ns": ns} for k, (count, ns) in self.counts.items()}
        for unused in ("queue", "cache_hit", "cache_miss"):  # no queue and no response cache here
            stats[unused] = {"count": 0, "ns": 0}
        return {
            "name": name,
            "version": MODEL_VERSION,
            "last_inference": self.last_inference_ms,
            "inference_count": self.inference_count,
            "execution_count": self.execution_count,
            "inference_stats": stats,
            "batch_stats": [],
        }


class InferenceStats:
    """Counters by job id; each entry remembers its owner, so an owner reads only its own."""

    def __init__(self):
        self.lock = threading.Lock()
        self.models: dict[str, ModelStats] = {}

    def record(self, job_id: str, owner_id: str | None, rows: int, phase_ns: dict[str, int], ok: bool) -> None:
        """One request's outcome; `phase_ns` holds the phases it went through (all three when it succeeded)."""
        with self.lock:
            entry = self.models.setdefault(job_id, ModelStats(owner_id))
            entry.last_inference_ms = time.time_ns() // 1_000_000
            total = sum(phase_ns.values())
            outcome = entry.counts["success" if ok else "fail"]
            outcome[0], outcome[1] = outcome[0] + 1, outcome[1] + total
            if not ok:
                return
            entry.inference_count += rows
            entry.execution_count += 1
            for phase, ns in phase_ns.items():
                entry.counts[phase][0] += 1
                entry.counts[phase][1] += ns

    def of_owner(self, owner_id: str | None, job_id: str | None = None) -> list[dict]:
        """Triton's `model_stats`: one job's (zeros before its first inference), or every one this process served."""
        with self.lock:
            if job_id is not None:
                entry = self.models.get(job_id)
                return [(entry or ModelStats(owner_id)).as_triton(job_id)]
            return [s.as_triton(j) for j, s in self.models.items() if s.owner_id == owner_id]
