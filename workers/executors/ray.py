"""The Ray executor: a dispatcher places queued jobs on a Ray cluster as tasks that run the worker code.

The database stays the source of truth. The dispatcher claims a job for a worker id that names the
Ray task, exactly as a local worker claims one, then submits the task; the task trains the job with
`workers.worker.run_attempt`, so leases, heartbeats, cancel and the (worker, attempt) write guard
mean what they mean locally. A task or node that dies is rescued: the dispatcher requeues its job as
soon as Ray reports the failure, and the sweeper does once its lease expires, whichever comes first.
One dispatcher per cluster: it counts the resources its own tasks hold to place no more than fit.
"""

from __future__ import annotations

import contextvars
import logging
import os
import signal
import threading
import time
import uuid
from dataclasses import dataclass

import ray

from service.db import session_scope
from service.logs import configure_logging, job_logging
from service.models import WorkerKind
from service.repositories import jobs as job_repo
from service.services.rescue import rescue, sweep
from service.settings import Settings, get_settings
from service.wakeup import Listener
from workers.pool import new_worker_id, stop_when_orphaned
from workers.registry import Registration

log = logging.getLogger("fitserve.dispatcher")
task_log = logging.getLogger("fitserve.ray_task")
QUEUED_LOOKAHEAD = 100  # queued jobs looked at per round, so a GPU job waiting does not hold up CPU jobs


def resources_for(spec: dict, cpus: float, cluster_has_gpus: bool) -> dict[str, float]:
    """What a job's task asks Ray for: a GPU when its device wants one (`auto` does on a GPU cluster)."""
    device = spec.get("device", "auto")
    wants_gpu = device.startswith("cuda") or (device == "auto" and cluster_has_gpus)
    return {"num_cpus": cpus, "num_gpus": 1 if wants_gpu else 0}


def fits(demand: dict[str, float], free: dict[str, float]) -> bool:
    return demand["num_cpus"] <= free["num_cpus"] and demand["num_gpus"] <= free["num_gpus"]


def task_environment(settings: Settings) -> dict[str, str]:
    """The dispatcher's FITSERVE_* settings, so tasks on every node reach the same database."""
    env = {key: value for key, value in os.environ.items() if key.startswith("FITSERVE_")}
    return {**env, "FITSERVE_DATABASE_URL": settings.DATABASE_URL}


def require_ray_address() -> str:
    address = os.environ.get("RAY_ADDRESS")
    if not address:
        raise SystemExit("FITSERVE_EXECUTOR=ray needs RAY_ADDRESS, the address of a running Ray cluster (or auto)")
    return address


def run_claimed_job(job_id: str, worker_id: str, attempt: int) -> str:
    """The body of a Ray task: train a job claimed for `worker_id`; returns how the attempt ended."""
    import torch

    from workers.worker import run_attempt

    configure_logging()
    settings = get_settings()
    node = ray.get_runtime_context().get_node_id()
    with session_scope() as s:
        # from here on this task's heartbeat keeps the lease, not the dispatcher; a job rescued
        # meanwhile (the dispatcher died) is no longer ours and must not be trained
        job = job_repo.start_claimed_job(s, job_id, worker_id, attempt, settings.LEASE_SECONDS, node)
    if job is None:
        return "lost before it started"
    torch.set_num_threads(max(1, int(settings.RAY_CPUS_PER_JOB)))
    gpu = 0 if ray.get_gpu_ids() else None  # Ray narrows CUDA_VISIBLE_DEVICES to the GPU it gave the task
    shutdown = threading.Event()
    device = "cuda" if gpu is not None else "cpu"
    with job_logging(job_id), Registration(worker_id, WorkerKind.RAY_TASK, device, settings, host=node) as registration:
        registration.set_job(job_id)
        task_log.info("job %s attempt %d runs on Ray node %s as %s", job_id, attempt, node, worker_id)
        context = contextvars.copy_context()  # the job id of the log lines, into the runner's thread
        runner = threading.Thread(target=context.run, args=(run_attempt, job, worker_id, settings, gpu, shutdown, node))
        runner.start()
        try:
            while runner.is_alive():
                runner.join(0.5)
        except KeyboardInterrupt:  # ray.cancel: stop at the next step and hand the job back, as on SIGTERM
            shutdown.set()
            runner.join()
            return "handed back"
    return "ran"


@dataclass
class Placement:
    job_id: str
    worker_id: str
    demand: dict[str, float]


class Dispatcher:
    def __init__(self, settings: Settings | None = None):
        self.settings = settings or get_settings()
        self.running: dict[ray.ObjectRef, Placement] = {}
        self.stopping = threading.Event()
        self.last_sweep = 0.0
        self.task = ray.remote(max_retries=0)(run_claimed_job)  # a rerun is the database's call, not Ray's

    def connect(self) -> None:
        address = require_ray_address()
        ray.init(address=address, runtime_env={"env_vars": task_environment(self.settings)}, logging_level="WARNING")
        log.info("dispatcher connected to Ray at %s: %s", address, ray.cluster_resources())

    def supervise(self) -> None:
        """Run until `stopping` is set: reap finished tasks, sweep leases, place queued jobs."""
        listener = Listener(self.settings.DATABASE_URL)  # a submit wakes it before the next poll
        try:
            with Registration(new_worker_id(), WorkerKind.DISPATCHER, "ray", self.settings):
                while not self.stopping.is_set():
                    listener.wait(self.settings.POLL_SECONDS, self.stopping)
                    if self.stopping.is_set():
                        break
                    self.reap()
                    self.renew_waiting()
                    self.sweep_if_due()
                    self.place()
        finally:
            listener.close()
        self.stop_tasks()
        ray.shutdown()

    def free_resources(self) -> dict[str, float]:
        total = ray.cluster_resources()  # nodes that died are gone from it
        free = {"num_cpus": total.get("CPU", 0.0), "num_gpus": total.get("GPU", 0.0)}
        for placed in self.running.values():
            for key, amount in placed.demand.items():
                free[key] -= amount
        return free

    def place(self) -> None:
        """Claim queued jobs that fit in what the cluster has free, and submit a task for each."""
        free = self.free_resources()
        if free["num_cpus"] <= 0:
            return
        with session_scope(read_only=True) as s:
            cap = self.settings.MAX_RUNNING_PER_OWNER if self.settings.CLAIM_ORDER == "fair" else None
            queued = job_repo.list_queued(s, QUEUED_LOOKAHEAD, self.settings.CLAIM_ORDER, cap)
        has_gpus = ray.cluster_resources().get("GPU", 0.0) > 0
        for job_id, spec in queued:
            demand = resources_for(spec, self.settings.RAY_CPUS_PER_JOB, has_gpus)
            if fits(demand, free) and self.submit(job_id, demand):
                for key, amount in demand.items():
                    free[key] -= amount

    def submit(self, job_id: str, demand: dict[str, float]) -> bool:
        worker_id = f"ray-{uuid.uuid4().hex[:16]}"
        with session_scope() as s:
            job = job_repo.claim_job(s, job_id, worker_id, self.settings.LEASE_SECONDS)
        if job is None:
            return False  # another dispatcher or a local worker took it
        ref = self.task.options(**demand, name=f"fitserve-job-{job_id}").remote(job_id, worker_id, job.attempt)
        self.running[ref] = Placement(job_id, worker_id, demand)
        log.info("job %s attempt %d placed on Ray as %s (%s)", job_id, job.attempt, worker_id, demand)
        return True

    def reap(self) -> None:
        """Forget finished tasks; a task that failed (its worker or node died) has its job requeued now."""
        if not self.running:
            return
        done, _ = ray.wait(list(self.running), num_returns=len(self.running), timeout=0)
        for ref in done:
            placed = self.running.pop(ref)
            try:
                log.info("job %s task %s: %s", placed.job_id, placed.worker_id, ray.get(ref))
            except ray.exceptions.RayError as exc:
                rescue(f"Ray task failed ({type(exc).__name__})", placed.worker_id)

    def renew_waiting(self) -> None:
        """Keep the leases of placed jobs whose task waits for a worker (starting one takes seconds)."""
        if self.running:
            with session_scope() as s:
                worker_ids = [placed.worker_id for placed in self.running.values()]
                job_repo.renew_unstarted_leases(s, worker_ids, self.settings.LEASE_SECONDS)

    def sweep_if_due(self) -> None:
        now = time.monotonic()
        if now - self.last_sweep >= self.settings.SWEEP_SECONDS:
            self.last_sweep = now
            try:
                sweep(self.settings)
            except Exception:  # the database is away: the next sweep tries again
                log.exception("sweep failed")

    def stop_tasks(self) -> None:
        """Ask every task to hand its job back; requeue the jobs of those that did not."""
        placed = list(self.running.values())
        for ref in self.running:
            ray.cancel(ref)
        if self.running:
            ray.wait(list(self.running), num_returns=len(self.running), timeout=self.settings.SHUTDOWN_SECONDS)
        self.reap()
        for each in placed:  # a job handed back is no longer this worker's: nothing to do for it
            rescue("Ray task stopped with the dispatcher", each.worker_id)


def run_dispatcher(parent_pid: int | None = None) -> None:
    """Run a dispatcher in this process until SIGTERM or SIGINT (or, with `parent_pid`, that parent's exit)."""
    configure_logging()
    dispatcher = Dispatcher()
    dispatcher.connect()  # first: ray.init installs a SIGTERM handler of its own, which would kill us
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: dispatcher.stopping.set())
    if parent_pid is not None:
        stop_when_orphaned(dispatcher.stopping, parent_pid)
    dispatcher.supervise()
