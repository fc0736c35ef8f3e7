"""One job's attempt: its engine built (resumed from its checkpoint), trained by a run of one member.

Where the job can replay CUDA graphs it trains that way, and again on the plain eager path if that fails.
Whatever goes wrong, the job fails with the reason and the worker lives on; out of memory, the reason names
the device and the job's estimate, and the memory is given back before the next job.
"""

from __future__ import annotations

import gc
import logging
import threading
import time

import torch

from modelzoo import build_network, fit_scales
from service.db import session_scope
from service.db_faults import database_fault
from service.models import Job
from service.repositories import datasets as dataset_repo
from service.repositories import jobs as job_repo
from service.schemas.spec import JobSpec
from service.settings import Settings
from workers.checkpoints import state_from_bytes
from workers.data import load_data
from workers.devices import resolve_device, this_node
from workers.engines.eager import Trainer, seed_network_init
from workers.ledger import Ledger, Member, failure, is_out_of_memory
from workers.run import Run

log = logging.getLogger("fitserve.worker")


def fetch_dataset(dataset_id: str) -> bytes:
    with session_scope() as s:
        blob = dataset_repo.get_dataset_bytes(s, dataset_id)
    if blob is None:
        raise LookupError(f"dataset {dataset_id} no longer exists")
    return blob


def prepare(spec: JobSpec, device: torch.device):
    """A member's network and data, on `device`, as every engine starts from them."""
    seed_network_init(spec.seed)
    net = build_network(spec.model, spec.data.standardize_target)
    data = load_data(spec, fetch_dataset)
    fit_scales(net, spec.data, data.x_train, data.y_train)
    if device.type == "cpu":  # built there: `to` would only walk the modules
        return net, data
    return net.to(device), data.to(device)


def build_trainer(job: Job, device: torch.device, graphs: bool = True) -> Trainer:
    """The job's eager engine, resumed from its checkpoint when it has one."""
    spec = JobSpec.model_validate(job.spec)
    net, data = prepare(spec, device)
    trainer = Trainer(spec, net, data, device, graphs=graphs)
    with session_scope(read_only=True) as s:
        saved = job_repo.get_checkpoint(s, job.id)
        blob = saved.data if saved is not None else None
    if blob is not None:
        trainer.load_state(state_from_bytes(blob))
        log.info("job %s resumes from its checkpoint at epoch %d", job.id, trainer.progress.epoch)
    return trainer


def run_attempt(
    job: Job, worker_id: str, settings: Settings, gpu: int | None, shutdown: threading.Event, node: str | None = None
) -> None:
    """Train one claimed job; `node` names where it runs (this host unless an executor says otherwise)."""
    member, ledger = Member.of(job), Ledger(worker_id)
    started = time.perf_counter()
    outcome, device, out_of_memory = "failed", None, False
    try:
        device = resolve_device(job.spec.get("device", "auto"), gpu)
        run = train_with_fallback(job, member, ledger, device, settings, shutdown, node or this_node())
        outcome = run.ended.get(job.id, "failed")
    except Exception as exc:  # a bad dataset, a missing GPU, no memory: the job fails, the worker lives on
        if database_fault(exc) is not None:  # the database's disk full, its file corrupt: no job's fault
            raise  # workers/loop.py hands the job back
        out_of_memory = is_out_of_memory(exc) and device is not None
        if not out_of_memory:
            log.exception("job %s failed", job.id)
        where = ledger.memory_on(str(device), job.estimate_bytes, node or this_node()) if out_of_memory else ""
        ledger.fail(member, failure(exc, where))
    finally:
        if out_of_memory:  # the failed run's tensors, held by frames in reference cycles: freed before the next job
            gc.collect()
        if torch.cuda.is_available() and job.spec.get("device", "auto") != "cpu":
            torch.cuda.empty_cache()
    log.info("job %s attempt %d: %s in %.2fs", job.id, job.attempt, outcome, time.perf_counter() - started)


def train_with_fallback(
    job: Job, member: Member, ledger: Ledger, device: torch.device, settings: Settings, shutdown: threading.Event,
    node: str,
) -> Run:
    """Train on the fast path (CUDA graphs) where it applies; if it fails, again on the plain eager path.

    The plain attempt resumes from the last checkpoint, as after any interruption. The job's
    `execution` says which path trained it, and why it fell back.
    """
    trainer = build_trainer(job, device)
    run = Run([member], trainer, ledger, settings, shutdown)
    run.start(str(device), f"{'cuda graph' if trainer.graph is not None else 'eager'} on {device}", node)
    try:
        run.train()
        return run
    except Exception as exc:
        if trainer.graph is None or is_out_of_memory(exc):
            raise
        why = f"{type(exc).__name__}: {str(exc)[:300]}"
        log.warning("job %s: the cuda graph path failed (%s); training again on the eager path", job.id, why)
    run = Run([member], build_trainer(job, device, graphs=False), ledger, settings, shutdown)
    run.start(str(device), f"eager on {device}; the cuda graph path failed ({why})", node)
    run.train()
    return run
