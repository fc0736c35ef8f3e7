"""The Ray executor: a dispatcher places queued jobs on a Ray cluster as tasks that run the worker code.

The database stays the source of truth. The dispatcher claims a job for a worker id that names the
Ray task, exactly as a local worker claims one, then submits the task; the task trains the job with
`workers.attempt.run_attempt`, so leases, heartbeats, cancel and the (worker, attempt) write guard
mean what they mean locally. A task or node that dies is rescued: the dispatcher requeues its job as
soon as Ray reports the failure, and the maintenance loop does once its lease expires, whichever comes first.
One dispatcher per cluster: it counts the resources its own tasks hold to place no more than fit.

A sweep's queued members are claimed together and split by shape (workers/groups.py `group_key`);
each group is one task that trains it as one batched computation, so a sweep's groups run in parallel,
as many as the cluster has room for. (ASHA's groups stay in one task, in turn: they share each rung's
decision, which would otherwise go to whichever group got there first.) With FITSERVE_AUTO_BATCH=on, a
job's batch mates go in its task too (`auto` needs a probe on the worker, which the dispatcher has not
got: there each job is a task).
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
import uuid
from dataclasses import dataclass

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from service.db import session_scope
from service.logs import configure_logging, job_logging
from service.models import JobStatus, WorkerKind
from service.repositories import batches as batch_repo
from service.repositories import jobs as job_repo
from service.repositories import members as member_repo
from service.repositories import sweeps as sweep_repo
from service.repositories import workers as worker_repo
from service.services.rescue import Maintainer, rescue
from service.settings import Settings, get_settings
from service.wakeup import Listener
from workers.claims import claim_mates_of, running_cap
from workers.devices import gpu_memory, keep_freed_memory, set_node
from workers.executors.ray_resources import GpuBudget, fits, fits_no_gpu, resources_for
from workers.groups import shape_groups
from workers.pool import stop_on_signals
from workers.registry import Registration

log = logging.getLogger("fitserve.dispatcher")
task_log = logging.getLogger("fitserve.ray_task")
QUEUED_LOOKAHEAD = 100  # queued jobs looked at per round, so a GPU job waiting does not hold up CPU jobs


def task_environment(settings: Settings) -> dict[str, str]:
    """The dispatcher's FITSERVE_* settings, so tasks on every node reach the same database."""
    env = {key: value for key, value in os.environ.items() if key.startswith("FITSERVE_")}
    return {**env, "FITSERVE_DATABASE_URL": settings.DATABASE_URL}


def require_ray_address() -> str:
    address = os.environ.get("RAY_ADDRESS")
    if not address:
        raise SystemExit("FITSERVE_EXECUTOR=ray needs RAY_ADDRESS, the address of a running Ray cluster (or auto)")
    return address


def run_claimed_jobs(claimed: list[tuple[str, int]], worker_id: str) -> str:
    """The body of a Ray task: train the (job id, attempt) pairs claimed for `worker_id` (one job, a sweep's
    shape group, or a job and its batch mates) as a local worker trains what it claims; returns how it ended."""
    import torch

    from workers.loop import train

    configure_logging()
    settings = get_settings()
    node = ray.get_runtime_context().get_node_id()
    set_node(node)
    with session_scope() as s:
        # from here on this task's heartbeat keeps the leases, not the dispatcher; a job rescued
        # meanwhile (the dispatcher died) is no longer ours and must not be trained
        started = [job_repo.start_claimed_job(s, job_id, worker_id, attempt, settings.LEASE_SECONDS, node)
                   for job_id, attempt in claimed]
    jobs = [job for job in started if job is not None]
    if not jobs:
        return "lost before it started"
    torch.set_num_threads(max(1, int(settings.RAY_CPUS_PER_JOB)))
    keep_freed_memory()
    gpu = 0 if ray.get_gpu_ids() else None  # Ray narrows CUDA_VISIBLE_DEVICES to the GPU it gave the task
    shutdown = threading.Event()
    device = "cuda" if gpu is not None else "cpu"
    ids = ", ".join(f"{job.id} attempt {job.attempt}" for job in jobs)
    registered = Registration(worker_id, WorkerKind.RAY_TASK, device, settings, host=node, gpu=gpu)
    with job_logging(jobs[0].id), registered as registration:
        registration.set_job(jobs[0].id)
        task_log.info("job %s runs on Ray node %s as %s", ids, node, worker_id)
        context = contextvars.copy_context()  # the job id of the log lines, into the runner's thread
        runner = threading.Thread(target=context.run, args=(train, jobs, worker_id, settings, gpu, shutdown),
                                  name="fitserve-ray-runner")
        runner.start()
        try:
            while runner.is_alive():
                runner.join(0.5)
        except KeyboardInterrupt:  # ray.cancel: stop at the next step and hand the job back, as on SIGTERM
            shutdown.set()
            runner.join()
            return "handed back"
    return "ran"


def ended(tasks: dict) -> list:
    """The refs among `tasks`' keys whose tasks have ended, at once."""
    if not tasks:
        return []
    return ray.wait(list(tasks), num_returns=len(tasks), timeout=0)[0]


def probe_gpu() -> int | None:
    """The body of a probe task that holds one GPU: its memory in bytes; None where CUDA does not answer."""
    memory = gpu_memory(0)  # Ray narrows CUDA_VISIBLE_DEVICES to the GPU it gave the task
    return None if memory is None else memory[0]


class GpuMemory:
    """Each live GPU node's memory, from a probe task per node that asks for a whole GPU of that node (so it
    waits while the node's GPUs are busy), sent at the first round and whenever the cluster's GPU count changes,
    to the nodes not probed yet. A node's GPUs are taken to be of one kind, as Ray's accelerator_type has them."""

    def __init__(self, workers_per_gpu: int):
        self.workers_per_gpu = workers_per_gpu
        self.cluster_gpus = 0.0
        self.nodes: set[str] = set()  # live nodes with GPUs
        self.totals: dict[str, int | None] = {}  # probed: node id -> bytes (None: the probe got no answer)
        self.probing: dict[ray.ObjectRef, str] = {}  # probe task -> node id
        self.probe = ray.remote(max_retries=0)(probe_gpu)

    def budget(self, cluster_gpus: float) -> GpuBudget | None:
        """The budget of the smallest GPU, once every live GPU node has answered; None until then (GPU jobs then
        ask for whole GPUs), on a cluster without GPUs, and where no node's CUDA answered."""
        if cluster_gpus != self.cluster_gpus:
            self.cluster_gpus = cluster_gpus
            self.probe_new_nodes()
        self.collect()
        if any(node not in self.totals for node in self.nodes):
            return None
        answered = [(total, node) for node in self.nodes if (total := self.totals[node]) is not None]
        if not answered:
            return None
        total, node = min(answered)
        return GpuBudget(total, node, self.workers_per_gpu)

    def probe_new_nodes(self) -> None:
        self.nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("GPU", 0) > 0}
        asked = set(self.totals) | set(self.probing.values())
        for node in self.nodes - asked:
            where = NodeAffinitySchedulingStrategy(node, soft=False)
            self.probing[self.probe.options(num_cpus=0, num_gpus=1, scheduling_strategy=where).remote()] = node

    def collect(self) -> None:
        for ref in ended(self.probing):
            node = self.probing.pop(ref)
            try:
                self.totals[node] = ray.get(ref)
            except ray.exceptions.RayError as exc:  # e.g. the node died: it is gone from the next count
                self.totals[node] = None
                log.warning("the GPU probe on Ray node %s failed: %s", node, exc)
                continue
            if self.totals[node] is None:
                log.warning("Ray node %s has GPUs but CUDA does not answer there", node)


@dataclass
class Placement:
    job_ids: list[str]
    worker_id: str
    demand: dict[str, float]


def shares_rungs(session, job) -> bool:
    """ASHA's shape groups share each rung's decision (workers/search/asha.py): the first group at a rung takes it."""
    return sweep_repo.get_sweep(session, job.sweep_id, job.owner_id).request.get("asha") is not None


def estimate_of(group: list) -> int:
    """A task's jobs are in memory together: their estimates add up (a job with none counts as none)."""
    return sum(job.estimate_bytes or 0 for job in group)


def new_task_id() -> str:
    return f"ray-{uuid.uuid4().hex[:16]}"


class Dispatcher:
    def __init__(self, settings: Settings | None = None):
        self.settings = settings or get_settings()
        self.running: dict[ray.ObjectRef, Placement] = {}
        self.stopping = threading.Event()
        self.task = ray.remote(max_retries=0)(run_claimed_jobs)  # a rerun is the database's call, not Ray's
        self.gpus = GpuMemory(self.settings.WORKERS_PER_GPU)
        self.budget: GpuBudget | None = None  # the smallest GPU's memory, once known (workers/executors/ray_resources.py)

    def connect(self) -> None:
        address = require_ray_address()
        ray.init(address=address, runtime_env={"env_vars": task_environment(self.settings)}, logging_level="WARNING")
        log.info("dispatcher connected to Ray at %s: %s", address, ray.cluster_resources())

    def supervise(self) -> None:
        """Run until `stopping` is set: reap finished tasks, place queued jobs; the maintenance loop beside it."""
        listener = Listener(self.settings.DATABASE_URL)  # a submit wakes it before the next poll
        maintainer = Maintainer(self.settings).start()
        try:
            with Registration(worker_repo.new_worker_id(), WorkerKind.DISPATCHER, "ray", self.settings):
                while not self.stopping.is_set():
                    listener.wait(self.settings.POLL_SECONDS, self.stopping)
                    if self.stopping.is_set():
                        break
                    self.reap()
                    self.renew_waiting()
                    self.place()
        finally:
            listener.close()
            maintainer.stop()
        self.stop_tasks()
        ray.shutdown()

    def free_resources(self, total: dict[str, float]) -> dict[str, float]:
        """What the cluster's `total` leaves free beside this dispatcher's tasks (fractions of GPUs counted)."""
        free = {"num_cpus": total.get("CPU", 0.0), "num_gpus": total.get("GPU", 0.0)}
        for placed in self.running.values():
            for key, amount in placed.demand.items():
                free[key] -= amount
        return free

    def place(self) -> None:
        """Claim queued jobs that fit in what the cluster has free, and submit a task for each."""
        total = ray.cluster_resources()  # nodes that died are gone from it
        self.budget = self.gpus.budget(total.get("GPU", 0.0))
        self.place_queued(self.free_resources(total), total.get("GPU", 0.0) > 0)

    def place_queued(self, free: dict[str, float], has_gpus: bool) -> None:
        """Claim the queued jobs that fit in `free`, and those that fit no GPU (to fail them)."""
        if free["num_cpus"] <= 0:
            return
        with session_scope(read_only=True) as s:
            queued = job_repo.list_queued(s, QUEUED_LOOKAHEAD, self.settings.CLAIM_ORDER, running_cap(self.settings))
        taken: set[str] = set()  # claimed in this round with an earlier job (its sweep's or batch's mates)
        for job_id, spec, estimate in queued:
            demand = resources_for(spec, self.settings.RAY_CPUS_PER_JOB, has_gpus, estimate, self.budget)
            if job_id not in taken and (fits(demand, free) or fits_no_gpu(demand)):
                taken.update(self.submit(job_id, free, has_gpus))

    def demand_of(self, group: list, has_gpus: bool) -> dict[str, float]:
        return resources_for(group[0].spec, self.settings.RAY_CPUS_PER_JOB, has_gpus, estimate_of(group), self.budget)

    def submit(self, job_id: str, free: dict[str, float], has_gpus: bool) -> list[str]:
        """Claim the job, with its sweep's queued members or its batch mates, and place one task per shape
        group while they fit in `free` (which shrinks); the groups that do not fit go back to the queue, and
        those that fit no GPU fail."""
        worker_id = new_task_id()
        with session_scope() as s:
            job = job_repo.claim_job(s, job_id, worker_id, self.settings.LEASE_SECONDS)
            if job is None:
                return []  # another dispatcher or a local worker took it
            mates = []
            if job.sweep_id is not None or self.settings.AUTO_BATCH == "on":
                mates = job_repo.get_jobs(s, claim_mates_of(s, job, worker_id, self.settings))
            claimed = [job, *mates]
            groups = shape_groups(claimed, member_repo.checkpoint_epochs(s, claimed))
            if job.sweep_id is not None and shares_rungs(s, job):
                groups = [claimed]  # one task trains the groups in turn: a rung's decision would race otherwise
            groups.sort(key=lambda group: job not in group)  # the job's own group first
            tasks, spill = [], []
            for group in groups:
                demand = self.demand_of(group, has_gpus)
                if fits_no_gpu(demand):
                    self.refuse(s, group, worker_id)
                    continue
                if not fits(demand, free):
                    spill.extend(j.id for j in group)
                    continue
                task_id = worker_id if not tasks else new_task_id()
                if task_id != worker_id:
                    member_repo.hand_over(s, [j.id for j in group], worker_id, task_id)
                tasks.append((task_id, group, demand))
                for key, amount in demand.items():
                    free[key] -= amount
            batch_repo.unclaim(s, worker_id, spill)  # as if never claimed: a later round takes them
        for task_id, group, demand in tasks:
            claimed_pairs = [(j.id, j.attempt) for j in group]
            name = f"fitserve-job-{group[0].id}" + (f"-and-{len(group) - 1}" if len(group) > 1 else "")
            ref = self.task.options(**demand, name=name).remote(claimed_pairs, task_id)
            self.running[ref] = Placement([j.id for j in group], task_id, demand)
            what = f"job {group[0].id} attempt {group[0].attempt}" if len(group) == 1 else (
                f"{len(group)} jobs ({', '.join(j.id for j in group)})"
                + (f" of sweep {group[0].sweep_id}" if group[0].sweep_id else ""))
            log.info("%s placed on Ray as %s (%s)", what, task_id, demand)
        return [j.id for j in claimed]

    def refuse(self, session, group: list, worker_id: str) -> None:
        """Jobs claimed for `worker_id` whose estimates together fit no GPU of the cluster end failed, saying so."""
        why = self.budget.refusal(estimate_of(group), len(group))
        for job in group:
            job_repo.finish_job(session, job.id, worker_id, job.attempt, JobStatus.FAILED, why)
        log.warning("%s not placed on Ray: %s", ", ".join(job.id for job in group), why)

    def reap(self) -> None:
        """Forget finished tasks; a task that failed (its worker or node died) has its job requeued now."""
        for ref in ended(self.running):
            placed = self.running.pop(ref)
            try:
                log.info("job %s task %s: %s", ", ".join(placed.job_ids), placed.worker_id, ray.get(ref))
            except ray.exceptions.RayError as exc:
                rescue(f"Ray task failed ({type(exc).__name__})", placed.worker_id)

    def renew_waiting(self) -> None:
        """Keep the leases of placed jobs whose task waits for a worker (starting one takes seconds)."""
        if self.running:
            with session_scope() as s:
                worker_ids = [placed.worker_id for placed in self.running.values()]
                job_repo.renew_unstarted_leases(s, worker_ids, self.settings.LEASE_SECONDS)

    def stop_tasks(self) -> None:
        """Ask every task to hand its job back; requeue the jobs of those that did not."""
        placed = list(self.running.values())
        for ref in self.running:
            ray.cancel(ref)
        if self.running:
            ray.wait(list(self.running), num_returns=len(self.running), timeout=self.settings.SHUTDOWN_SECONDS)
        self.reap()
        for each in placed:  # a job handed back is no longer this worker's: nothing to do for it
            rescue("Ray task stopped with the dispatcher", each.worker_id, counted=False)


def run_dispatcher(parent_pid: int | None = None) -> None:
    """Run a dispatcher in this process until SIGTERM or SIGINT (or, with `parent_pid`, that parent's exit)."""
    configure_logging()
    dispatcher = Dispatcher()
    dispatcher.connect()  # first: ray.init installs a SIGTERM handler of its own, which would kill us
    stop_on_signals(dispatcher.stopping, parent_pid)
    dispatcher.supervise()
