"""Which device a job trains on, and how the pool spreads workers over GPUs.

Nothing here imports torch until a function needs it: the pool's own process, which only supervises, counts
GPUs without it (`count_gpus`), so it stays a small process (~80 MB against ~260 MB with torch) that starts
its workers seconds sooner and is the last the host's out-of-memory killer would choose.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# a GPU torch can use shows one of these: NVIDIA's driver, ROCm's, WSL2's GPU bridge
GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/kfd", "/dev/dxg")
COUNT_GPUS = "from workers.devices import visible_gpus; print(visible_gpus())"

_node = socket.gethostname()


def this_node() -> str:
    """Where this process trains, as jobs show it (`node`): the host, or the Ray node a task runs on."""
    return _node


def set_node(name: str) -> None:
    global _node
    _node = name


class DeviceUnavailable(RuntimeError):
    """The spec asks for a device this worker does not have."""


def may_have_gpus() -> bool:
    return any(os.path.exists(path) for path in GPU_DEVICE_FILES)


def visible_gpus() -> int:
    """The GPUs torch sees in this process (none without a GPU driver's device files: torch is not imported)."""
    if not may_have_gpus():
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def count_gpus() -> int:
    """`visible_gpus()` as a worker would find it, without importing torch here: in a short-lived child process
    where the host has a GPU driver, else 0 at once. The child sees this process's CUDA_VISIBLE_DEVICES."""
    if not may_have_gpus():
        return 0
    run = subprocess.run([sys.executable, "-c", COUNT_GPUS], capture_output=True, text=True, timeout=300, check=True)
    return int(run.stdout.strip().splitlines()[-1])


def placement(requested: str, gpu: int | None) -> str:
    """Where a job asking for `requested` trains on a worker with `gpu`, as jobs show it: `cpu` or `cuda:N`.
    `auto` is the worker's GPU when it has one, else the CPU."""
    if requested == "cpu" or (requested == "auto" and gpu is None):
        return "cpu"
    if requested == "auto" or requested == "cuda":
        if gpu is None:
            raise DeviceUnavailable("the job asks for cuda but this worker has no GPU")
        return f"cuda:{gpu}"
    return requested


def resolve_device(requested: str, gpu: int | None) -> torch.device:
    """`placement` as a torch device; DeviceUnavailable for a GPU this worker does not see."""
    import torch

    device = torch.device(placement(requested, gpu))
    if requested.startswith("cuda:") and device.index >= visible_gpus():
        raise DeviceUnavailable(f"the job asks for {requested} but this worker sees {visible_gpus()} GPU(s)")
    return device


def gpu_memory(gpu: int | None) -> tuple[int, int] | None:
    """(total, free) bytes of this worker's GPU, as its registry row shows them; None for a CPU worker, or
    where CUDA cannot answer (the registry row then leaves them out rather than the heartbeat failing)."""
    if gpu is None:
        return None
    import torch

    try:
        free, _ = torch.cuda.mem_get_info(gpu)  # the driver's count: other processes' allocations included
        return torch.cuda.get_device_properties(gpu).total_memory, free
    except (RuntimeError, AssertionError):  # no CUDA here, or a sticky CUDA error
        return None


def default_workers(per_gpu: int = 1, gpus: int | None = None) -> int:
    """`per_gpu` workers on each visible GPU (the pool hands GPUs out round-robin), else one CPU worker."""
    return max(1, (visible_gpus() if gpus is None else gpus) * per_gpu)


def threads_per_worker(n_workers: int) -> int:
    """Split the cores among the workers, so they do not fight over them."""
    return max(1, (os.cpu_count() or 1) // max(1, n_workers))


MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 64 * 1024 * 1024


def keep_freed_memory() -> bool:
    """Let a training process reuse freed buffers instead of asking the kernel for them again, step after step.

    glibc's malloc serves an allocation over its mmap threshold (128 KiB at first, adapting) with a fresh mapping
    and unmaps it at free, and gives the heap's free top back to the kernel past its trim threshold: a step whose
    temporaries are megabytes then page-faults them in on every step. Eight stacked linear regressions on 100k
    rows stepped in 5-6 ms against 0.9 ms with fixed thresholds (`bench/probe.py`): allocations under
    MMAP_THRESHOLD_BYTES come from the heap, and up to TRIM_THRESHOLD_BYTES of freed heap is kept for reuse.
    False where the C library is not glibc (nothing changes there).
    """
    import ctypes

    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    options = {-3: MMAP_THRESHOLD_BYTES, -1: TRIM_THRESHOLD_BYTES}  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD (malloc.h)
    return all([mallopt(option, value) for option, value in options.items()])  # 1 for each setting taken
