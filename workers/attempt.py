"""One job's attempt: its engine built (resumed from its checkpoint), trained by a run of one member.

A job starts where its state says (`starting_state`): its own checkpoint after an interruption, or, continuing
another job, that job's final state; a spec's `init.from_job` gives the network another job's weights (`prepare`).
Every path (one job, stacked members, members in turn, a Ray task) builds its engines through these.

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
from modelzoo.weights import load_weights
from service.db import session_scope
from service.db_faults import database_fault
from service.models import Job
from service.repositories import datasets as dataset_repo
from service.repositories import members as member_repo
from service.repositories import metrics as metric_repo
from service.schemas.spec import JobSpec
from service.settings import Settings
from workers.checkpoints import continued_state, state_from_bytes
from workers.data import load_data
from workers.devices import resolve_device, this_node
from workers.engines.compiled import compile_reason
from workers.engines.eager import Trainer, seed_network_init
from workers.ledger import Gone, Ledger, Member, failure, is_out_of_memory
from workers.run import Run

log = logging.getLogger("fitserve.worker")


def fetch_dataset(dataset_id: str) -> bytes:
    with session_scope() as s:
        blob = dataset_repo.get_dataset_bytes(s, dataset_id)
    if blob is None:
        raise Gone(f"dataset {dataset_id} no longer exists")
    return blob


def prepare(spec: JobSpec, device: torch.device, fresh: bool = True):
    """A member's network and data, on `device`, as every engine starts from them; `fresh`: it starts from no
    state (a state brings its own weights)."""
    seed_network_init(spec.seed)
    net = build_network(spec.model, spec.data.standardize_target)
    data = load_data(spec, fetch_dataset)
    fit_scales(net, spec.data, data.x_train, data.y_train)
    if fresh and spec.init is not None:  # the network as that job finished, its scaling included (shapes checked at submit)
        load_weights(net, fetch_weights(spec.init.from_job))
    if device.type == "cpu":  # built there: `to` would only walk the modules
        return net, data
    return net.to(device), data.to(device)


def fetch_weights(job_id: str) -> bytes:
    with session_scope(read_only=True) as s:
        blob = metric_repo.get_weights(s, job_id)
    if blob is None:
        raise Gone(f"job {job_id}, whose weights init.from_job names, no longer exists")
    return blob


def read_starting_points(jobs: list[Job]) -> dict:
    """Each job's stored starting point (member_repo.starting_points), for `starting_state`."""
    with session_scope(read_only=True) as s:
        return member_repo.starting_points(s, jobs)


def starting_state(job: Job, saved) -> dict | None:
    """The state job's attempt starts from: its own checkpoint (it resumes), or the final state of the job it
    continues (workers/checkpoints.py `continued_state`); None: from its first epoch."""
    if saved is None:
        if job.continued_from is not None:
            raise Gone(f"job {job.continued_from}, which this job continues, no longer exists")
        return None
    state = state_from_bytes(saved.data)
    if saved.job_id == job.id:
        return state
    return continued_state(state, JobSpec.model_validate(job.spec))


def build_trainer(job: Job, device: torch.device, graphs: bool = True, compiled: bool = False) -> Trainer:
    """The job's eager engine, started from its state when it has one; `compiled`: with the option of a compiled
    step where its step can compile."""
    spec = JobSpec.model_validate(job.spec)
    saved = read_starting_points([job])[job.id]
    state = starting_state(job, saved)
    net, data = prepare(spec, device, fresh=state is None)
    compiled = compiled and compile_reason([spec], [net]) is None
    trainer = Trainer(spec, net, data, device, graphs=graphs, compiled=compiled)
    if state is not None:
        trainer.load_state(state)
        if saved.job_id == job.id:
            log.info("job %s resumes from its checkpoint at epoch %d", job.id, trainer.progress.epoch)
        else:
            log.info("job %s continues job %s from its final state at epoch %d", job.id, saved.job_id,
                     trainer.progress.epoch)
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
        if isinstance(exc, Gone):
            log.warning("job %s failed: %s", job.id, exc)
        elif not out_of_memory:
            log.exception("job %s failed", job.id)
        where = ledger.memory_on(str(device), job.estimate_bytes, node or this_node()) if out_of_memory else ""
        ledger.fail(member, failure(exc, where))
    finally:
        free_memory(out_of_memory, job.spec.get("device", "auto"))
    log.info("job %s attempt %d: %s in %.2fs", job.id, job.attempt, outcome, time.perf_counter() - started)


def free_memory(out_of_memory: bool, spec_device: str) -> None:
    """After a run: after an out-of-memory failure, the failed run's tensors (held by frames in reference cycles)
    freed before the next job; CUDA's cached blocks given back."""
    if out_of_memory:
        gc.collect()
    if torch.cuda.is_available() and spec_device != "cpu":
        torch.cuda.empty_cache()


def train_with_fallback(
    job: Job, member: Member, ledger: Ledger, device: torch.device, settings: Settings, shutdown: threading.Event,
    node: str,
) -> Run:
    """Train on the fast path (CUDA graphs) where it applies; if it fails, again on the plain eager path. (A compiled
    step that fails gives way to the plain step inside the run: engines/compiled.py.)

    The plain attempt resumes from the last checkpoint, as after any interruption. The job's
    `execution` says which path trained it, and why it fell back.
    """
    trainer = build_trainer(job, device, compiled=settings.COMPILE != "off")
    run = Run([member], trainer, ledger, settings, shutdown)
    execution = f"{'cuda graph' if trainer.graph is not None else 'eager'} on {device}"
    if settings.COMPILE == "on" and trainer.compiled is None:
        execution += f"; step not compiled: {compile_reason([trainer.spec], [trainer.net])}"
    run.start(str(device), execution, node)
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
