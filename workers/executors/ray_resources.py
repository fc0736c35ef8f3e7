"""What a job's Ray task asks for: CPUs, and for a GPU job its memory estimate as a fraction of the smallest GPU.

Ray counts each GPU as 1 and places tasks asking for less on one GPU only while their fractions there add up to
no more than 1. A task that asks for its jobs' estimate over a GPU's memory, rounded up to Ray's unit, is then
never placed beside tasks whose estimates, with its own, would exceed that GPU: a GPU's memory is a budget each
placement asks for, as Ray users share a GPU. A task asks for no less than 1/FITSERVE_WORKERS_PER_GPU, so that
as many small jobs share a GPU as local workers do. Without a budget (the GPUs' memory not known yet), a GPU job
asks for a whole GPU.

No Ray here: the dispatcher (executors/ray.py) asks the cluster; this arithmetic is tested without one.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelzoo.memory import format_bytes

# Ray counts resources in units of 0.0001 (RESOURCE_UNIT_SCALING): a finer quantity is refused, and a quantity is
# rounded to the nearest unit, so a fraction written as whole units is exactly the fraction Ray holds
RESOURCE_UNITS = 10_000


@dataclass(frozen=True)
class GpuBudget:
    """The memory of the smallest GPU of the cluster, of which each GPU job's task asks for its share."""

    total: int  # bytes
    node: str  # the Ray node it is on
    workers_per_gpu: int

    def fraction(self, estimate: int | None) -> float:
        """The GPUs a task whose jobs are estimated at `estimate` bytes asks for; over 1 when they fit no GPU."""
        least = RESOURCE_UNITS // self.workers_per_gpu  # rounded down: FITSERVE_WORKERS_PER_GPU such tasks fit a GPU
        needed = -(-(estimate or 0) * RESOURCE_UNITS // self.total)  # rounded up: never less than the estimate
        return max(1, least, needed) / RESOURCE_UNITS

    def refusal(self, estimate: int, jobs: int) -> str:
        """Why a task whose `jobs` are estimated at `estimate` bytes together (a fraction over 1) fits no GPU."""
        what = "" if jobs == 1 else f" ({jobs} jobs trained together)"
        return (f"does not fit a GPU{what}: estimate {format_bytes(estimate)} of {format_bytes(self.total)}, "
                f"the smallest GPU of the Ray cluster (on node {self.node})")


def resources_for(
    spec: dict, cpus: float, cluster_has_gpus: bool, estimate: int | None = None, budget: GpuBudget | None = None
) -> dict[str, float]:
    """What a task training jobs of `spec` asks Ray for: a GPU when their device wants one (`auto` does on a GPU
    cluster); with a `budget`, the fraction of a GPU their `estimate` takes."""
    device = spec.get("device", "auto")
    wants_gpu = device.startswith("cuda") or (device == "auto" and cluster_has_gpus)
    gpus = (1 if budget is None else budget.fraction(estimate)) if wants_gpu else 0
    return {"num_cpus": cpus, "num_gpus": gpus}


def units(quantity: float) -> int:
    """A resource quantity as Ray holds it: whole units of 1/RESOURCE_UNITS."""
    return round(quantity * RESOURCE_UNITS)


def fits(demand: dict[str, float], free: dict[str, float]) -> bool:
    """Counted in Ray's units: fractions of a GPU taken from `free` one by one leave no float error behind."""
    return all(units(demand[key]) <= units(free[key]) for key in ("num_cpus", "num_gpus"))


def fits_no_gpu(demand: dict[str, float]) -> bool:
    return demand["num_gpus"] > 1
