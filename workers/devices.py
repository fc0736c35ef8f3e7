"""Which device a job trains on, and how the pool spreads workers over GPUs."""

import os
import socket

import torch

_node = socket.gethostname()


def this_node() -> str:
    """Where this process trains, as jobs show it (`node`): the host, or the Ray node a task runs on."""
    return _node


def set_node(name: str) -> None:
    global _node
    _node = name


class DeviceUnavailable(RuntimeError):
    """The spec asks for a device this worker does not have."""


def visible_gpus() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolve_device(requested: str, gpu: int | None) -> torch.device:
    """`auto` is the worker's GPU when it has one, else the CPU."""
    if requested == "cpu" or (requested == "auto" and gpu is None):
        return torch.device("cpu")
    if requested == "auto" or requested == "cuda":
        if gpu is None:
            raise DeviceUnavailable("the job asks for cuda but this worker has no GPU")
        return torch.device("cuda", gpu)
    index = int(requested.split(":")[1])
    if index >= visible_gpus():
        raise DeviceUnavailable(f"the job asks for {requested} but this worker sees {visible_gpus()} GPU(s)")
    return torch.device("cuda", index)


def default_workers(per_gpu: int = 1) -> int:
    """`per_gpu` workers on each visible GPU (the pool hands GPUs out round-robin), else one CPU worker."""
    return max(1, visible_gpus() * per_gpu)


def threads_per_worker(n_workers: int) -> int:
    """Split the cores among the workers, so they do not fight over them."""
    return max(1, (os.cpu_count() or 1) // max(1, n_workers))
