"""Train a sweep's claimed members: together as one batched computation when that is faster, else one by one.

Every member stays a job of its own: its own lease, curve, checkpoint, weights and final status, each
write guarded by worker and attempt as for any job. A member that diverges, or is cancelled, stops
alone; the others go on.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
import time
from collections import defaultdict

import torch

from modelzoo.layers import standardized_targets
from service.db import session_scope
from service.db_faults import database_fault
from service.models import Job
from service.repositories import batches as batch_repo
from service.repositories import jobs as job_repo
from service.repositories import sweeps as sweep_repo
from service.schemas.spec import JobSpec
from service.settings import Settings
from workers.attempt import build_trainer, free_memory, prepare, read_starting_points, run_attempt, starting_state
from workers.devices import resolve_device, this_node
from workers.engines.compiled import compile_reason
from workers.engines.eager import Trainer
from workers.engines.in_turn import InTurn
from workers.engines.stack_options import one_by_one_reason
from workers.engines.stacked import StackedTrainer
from workers.engines.steps import transform_rows
from workers.engines.threads import thread_counts
from workers.ledger import Ledger, Member, failure, is_out_of_memory
from workers.run import Run
from workers.search.asha import rungs_for
from workers.search.pbt import population_for

log = logging.getLogger("fitserve.sweeps")
PROBE_WARMUP, PROBE_ROUNDS, PROBE_STEPS, PROBE_SECONDS = 3, 5, 5, 1.0
MIN_SPEEDUP = 1.2  # batched must beat one-by-one by this much to be chosen


def measure_speedup(specs, nets, datas, device, threads: list[int] | None = None) -> float:
    """(K x one member's step time) / (one stacked step's time), on throwaway copies.

    Steps, not epochs: an epoch of many mini-batches may take minutes, and nothing can stop a probe. The two
    are timed in PROBE_ROUNDS alternating rounds of PROBE_STEPS steps (fewer once PROBE_SECONDS have passed),
    and each keeps its best round, so a stall of the machine during a round cannot decide the choice. Each is
    timed at every count in `threads` (default: the present one) and judged at its fastest, as the run will
    train it: on a busy CPU a stacked step can be 5-15x slower at 2 threads than at 1 (the threads wait on each
    other), while one member's small steps barely change.
    """
    probe = StackedTrainer(specs, list(nets), datas, device)  # it trains stacked copies, never the nets
    solo = Trainer(specs[0], copy.deepcopy(nets[0]), datas[0], device)
    rows = probe.batches.bounds[0][1]  # one mini-batch (every row, full batch)
    x, y = transform_rows(solo.net, datas[0].x_train)[:rows], standardized_targets(solo.net, datas[0].y_train)[:rows]
    xs = probe.x[:rows] if probe.x_dim is None else probe.x[:, :rows]
    ys = probe.y[:rows] if probe.y_dim is None else probe.y[:, :rows]
    steps = {"solo": lambda: solo.step_fn(x, y), "stacked": lambda: probe.step(xs, probe.x_dim, ys, probe.y_dim)}
    most = torch.get_num_threads()
    counts = threads or [most]
    best = {(name, n): float("inf") for name in steps for n in counts}
    try:
        for _ in range(PROBE_WARMUP):  # first calls pay for lazy imports and allocator growth
            for step in steps.values():
                step()
        deadline = time.perf_counter() + PROBE_SECONDS
        for _ in range(PROBE_ROUNDS):
            for n in counts:
                torch.set_num_threads(n)
                for name, step in steps.items():
                    started = time.perf_counter()
                    for _ in range(PROBE_STEPS):
                        step()
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    best[name, n] = min(best[name, n], (time.perf_counter() - started) / PROBE_STEPS)
            if time.perf_counter() > deadline:
                break
    finally:
        torch.set_num_threads(most)
    fastest = {name: min(best[name, n] for n in counts) for name in steps}
    return fastest["solo"] * len(specs) / fastest["stacked"]


def group_key(job: Job, checkpoint_epoch: int) -> tuple:
    """Members that can share a step: same architecture, loss, batch size, optimizer kind, device, early stopping
    and starting epoch (a space over any of these makes a group per value, trained in turn)."""
    spec = job.spec
    early = tuple(sorted((spec.get("early_stopping") or {}).items()))
    # dropout rates change no shape: such members meet in one group, which then says why it trains one by one
    shape = json.dumps({k: v for k, v in spec["model"].items() if k != "dropout"}, sort_keys=True)
    return shape, spec["loss"], spec["batch_size"], spec["optimizer"]["kind"], spec["device"], early, checkpoint_epoch


def shape_groups(jobs: list[Job], epochs: dict[str, int]) -> list[list[Job]]:
    """The jobs split by `group_key`, each resuming from `epochs[job.id]`: one batched computation per group."""
    groups: dict[tuple, list[Job]] = defaultdict(list)
    for job in jobs:
        groups[group_key(job, epochs[job.id])].append(job)
    return list(groups.values())


class SweepPolicy:
    """How a group of claimed jobs chooses its path and where the choice is written: a sweep's way.

    Auto-batched jobs (workers/auto_batch.py) take the same path with a policy of their own.
    """

    forced = "as the sweep asked"  # why, when the path was asked for rather than measured
    members = "members"

    def asked(self, group: list[Job]) -> str:
        """auto, batched or one_by_one."""
        with session_scope(read_only=True) as s:
            return sweep_repo.get_sweep(s, group[0].sweep_id, group[0].owner_id).request.get("execution", "auto")

    def speedup(self, group: list[Job], specs, nets, datas, device, threads: list[int]) -> tuple[float, bool]:
        """Batching's speedup for this group (each path at its fastest of `threads`), and whether it was measured
        (not bounded from other probes)."""
        return measure_speedup(specs, nets, datas, device, threads), True

    def note(self, group: list[Job], note: str) -> None:
        with session_scope() as s:
            sweep_repo.set_execution(s, group[0].sweep_id, note)

    def one_by_one(self, group: list[Job], worker_id: str, search=None) -> list[Job]:
        """Batched judged slower (or not possible): what this worker trains now. An adaptive search's members stay
        (they train in turn to each of its decisions); else the first, and the others go back to the queue as if
        never claimed (their attempt not spent), where claims take them one at a time in fair turn with every
        owner's jobs (workers/claims.py)."""
        if search is not None:
            return group
        with session_scope() as s:
            batch_repo.unclaim(s, worker_id, [job.id for job in group[1:]])
        return group[:1]


SWEEP = SweepPolicy()


def run_sweep_members(
    members: list[Job], worker_id: str, settings: Settings, gpu, shutdown: threading.Event, policy=SWEEP
) -> None:
    """Train a claim's members, group by group (their leases are kept by the claim's holder, workers/loop.py)."""
    saved = read_starting_points(members)  # checkpoints, or the states continued jobs start from
    with session_scope(read_only=True) as s:
        search = None  # auto-batched jobs: no sweep, no search
        if members[0].sweep_id is not None:
            sweep = sweep_repo.get_sweep(s, members[0].sweep_id, members[0].owner_id)
            search = rungs_for(sweep, members) or population_for(sweep, members)  # None: grid or random
    for group in shape_groups(members, {job_id: c.epoch if c else 0 for job_id, c in saved.items()}):
        if shutdown.is_set():
            Ledger(worker_id).hand_back([Member.of(job) for job in group])
            continue
        if len(group) > 1:
            try:
                if run_stacked(group, saved, worker_id, settings, gpu, shutdown, policy, search):
                    continue
                group = policy.one_by_one(group, worker_id, search)
            except Exception as exc:  # an optional fast path never fails a member: one by one instead
                group = fall_back(group, worker_id, exc, policy)
        if search is not None:  # every member to the search's next decision, then it decides
            run_in_turn(group, search, worker_id, settings, gpu, shutdown)
            continue
        for job in group:
            if shutdown.is_set():
                Ledger(worker_id).hand_back([Member.of(job)])
            else:
                run_attempt(job, worker_id, settings, gpu, shutdown)


def run_in_turn(group: list[Job], search, worker_id: str, settings: Settings, gpu, shutdown) -> None:
    """An adaptive search's members one by one: each trains its next epoch in turn (workers/engines/in_turn.py)."""
    members, ledger = [Member.of(job) for job in group], Ledger(worker_id)
    device, out_of_memory = None, False
    try:
        device = resolve_device(group[0].spec.get("device", "auto"), gpu)
        train_in_turn(group, members, ledger, device, search, settings, shutdown)
    except Exception as exc:  # the members still running fail with the reason (guarded); the worker lives on
        if database_fault(exc) is not None:  # no member's fault: workers/loop.py hands them back
            raise
        out_of_memory = is_out_of_memory(exc) and device is not None
        if not out_of_memory:
            log.exception("sweep %s: members trained in turn failed", group[0].sweep_id)
        # the members are in memory together: their estimates add up
        estimate = sum(job.estimate_bytes or 0 for job in group) or None
        where = ledger.memory_on(str(device), estimate, this_node()) if out_of_memory else ""
        for member in members:
            ledger.fail(member, failure(exc, where))
    finally:
        free_memory(out_of_memory, group[0].spec.get("device", "auto"))


def train_in_turn(group: list[Job], members: list[Member], ledger: Ledger, device, search, settings: Settings,
                  shutdown) -> None:
    """The members' engines live in this frame alone: when training fails, they go with it (memory freed)."""
    engine = InTurn([build_trainer(job, device, graphs=False) for job in group])
    run = Run(members, engine, ledger, settings, shutdown, search)
    run.start(str(device), f"eager on {device}; {search.in_turn}", this_node())
    run.train()


def fall_back(group: list[Job], worker_id: str, exc: Exception, policy=SWEEP) -> list[Job]:
    """After the batched path failed: the members it left running, to train one by one from their checkpoints."""
    why = f"{type(exc).__name__}: {str(exc)[:300]}"
    log.warning("sweep %s: the batched path failed (%s); its members go on one by one", group[0].sweep_id, why,
                exc_info=exc)
    policy.note(group, f"{sweep_repo.ONE_BY_ONE}: the batched path failed ({why})")
    with session_scope() as s:
        running = job_repo.still_running(s, [(job.id, job.attempt) for job in group], worker_id)
    return [job for job in group if job.id in running]


def run_stacked(
    group: list[Job], saved: dict, worker_id: str, settings: Settings, gpu, shutdown, policy=SWEEP, search=None
) -> bool:
    """Train the group together if that measures faster; False to leave it to one-by-one."""
    specs = [JobSpec.model_validate(job.spec) for job in group]
    device = resolve_device(specs[0].device, gpu)
    # each member from its own state (one epoch for all: shape_groups), else its own init; a continued job whose
    # parent is gone raises here, and fails alone once the group trains one by one
    states = [starting_state(job, saved[job.id]) for job in group]
    nets, datas = zip(*(prepare(spec, device, fresh=state is None) for spec, state in zip(specs, states)))
    asked = policy.asked(group)
    unsupported = one_by_one_reason(specs, nets)
    if unsupported is not None:
        batched, why = False, unsupported
    elif search is not None and search.copies_state and asked != "one_by_one":
        batched, why = True, "pbt copies state between the members of one stack"
    elif asked == "auto":
        speedup, measured = policy.speedup(group, specs, nets, datas, device, thread_counts(settings.TUNE_THREADS, device))
        batched = speedup >= MIN_SPEEDUP
        why = (f"batched measured {speedup:.1f}x the speed of one by one" if measured
               else f"batched at least {speedup:.1f}x the speed of one by one (bound by a probe of another size)")
    else:
        batched, why = asked == "batched", policy.forced
    note = f"{'batched' if batched else sweep_repo.ONE_BY_ONE}: {len(group)} {policy.members} on {device}; {why}"
    log.info("sweep %s: %s", group[0].sweep_id, note)
    policy.note(group, note)
    if not batched:
        return False
    # a search's stack changes size between its decisions: each size would compile again
    compiled = settings.COMPILE != "off" and search is None and compile_reason(specs, nets) is None
    trainer = StackedTrainer(specs, list(nets), list(datas), device, compiled=compiled)
    if all(state is not None for state in states):
        trainer.load_member_states(states)
    run = Run([Member.of(job) for job in group], trainer, Ledger(worker_id), settings, shutdown, search)
    run.start(str(device), note, this_node())
    run.train()
    return True
