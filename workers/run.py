"""One training run over K >= 1 members: a single job is K = 1; a sweep's group or an auto-batch is K > 1.

The run owns what every path shares: the clock (reports every REPORT_SECONDS, checkpoints every
CHECKPOINT_SECONDS, time limits: workers/time_limits.py), stop points between epochs and inside them (cancel, the
job lost, shutdown, a time limit), divergence,
early stopping's end, evaluation, finishing, cancelling and handing back, all written through one ledger
(workers/ledger.py). What trains is an engine (workers/engines/__init__.py describes the interface): one
network eagerly (engines/eager.py), members stacked (engines/stacked.py), or members in turn (engines/in_turn.py).
A search (ASHA, PBT) decides at the epochs it asks to be recorded; the run acts on its decisions.

Each member stays a job of its own: a member that diverges, is cancelled or is lost stops alone, the others go on.
"""

from __future__ import annotations

import threading
import time

from service.repositories import jobs as job_repo
from service.settings import Settings, get_settings
from workers.checkpoints import state_to_bytes
from workers.engines.compile_choice import CompileChoice, compiles_from_start
from workers.engines.threads import ThreadChoice, thread_counts
from workers.evaluation import evaluate_splits
from workers.ledger import YIELDED, Ledger, Member, MemoryLedger, diverged
from workers.time_limits import TimeLimits

CHUNK = 1024  # recorded epochs kept on the device before a report is forced (K points each)
MAX_REPORT_SHARE = 0.05  # of a run's time, past REPORT_SECONDS: a report of many members is spaced out


def train_here(engine, settings: Settings | None = None, tune_threads: bool = False) -> MemoryLedger:
    """Train an engine's members to their end with no database, as a worker would: what benchmarks of the loop
    and its tests run. Member k's points and ending are the ledger's under job id str(k)."""
    ledger = MemoryLedger()
    members = [Member(str(k), 0, {}) for k in range(len(engine.specs))]
    run = Run(members, engine, ledger, settings or get_settings(), tune_threads=tune_threads)
    run.start(str(engine.device), "", "")
    run.train()
    return ledger


class Run:
    def __init__(
        self, members: list[Member], engine, ledger: Ledger | MemoryLedger, settings: Settings,
        shutdown: threading.Event | None = None, search=None, tune_threads: bool | None = None,
    ):
        """`engine` trains the members (their order is the engine's); `search` (workers/search/) is asked after
        every epoch it had recorded; `tune_threads` (FITSERVE_TUNE_THREADS unless given): on a CPU, the run times
        its epochs at 1 torch thread and at this process's count and trains on at the faster (engines/threads.py)."""
        self.members, self.engine, self.ledger, self.search = list(members), engine, ledger, search
        self.specs, self.datas = engine.specs, engine.datas
        self.shutdown = shutdown or threading.Event()
        self.settings = settings
        self.epochs = self.specs[0].epochs  # members of one run share it (the group key includes it)
        self.active = set(range(len(self.members)))
        self.latest: list = [None] * len(self.members)  # each member's latest reported point
        self.ended: dict[str, str] = {}  # job id -> how its attempt ended here (for the log)
        self.report_seconds = settings.REPORT_SECONDS
        self.next_poll = time.monotonic() + self.report_seconds
        self.next_turn_check = time.monotonic() + settings.YIELD_SECONDS  # no yield before a whole turn
        self.limits = TimeLimits(self.members, self.specs)  # its clock starts now, as the run trains
        engine.interrupted, engine.rewinds = self.interrupted, self.limits.watching()
        counts = thread_counts(settings.TUNE_THREADS if tune_threads is None else tune_threads, engine.device)
        self.threads = ThreadChoice(counts[-1]) if len(counts) > 1 else None
        self.compile_start: str | None = None  # says so when the engine's compiled step trains from the start
        self.compiling = self.choose_compiled(settings.COMPILE)

    def choose_compiled(self, mode: str) -> CompileChoice | None:
        """Whether the engine's compiled step (where it has one) trains from the start; on a CPU with
        FITSERVE_COMPILE=auto, the choice measured on the run's epochs (engines/compile_choice.py)."""
        engine = self.engine
        if engine.compiled is None or mode == "off":
            return None
        steps = (self.epochs - engine.progress.epoch) * len(engine.batches.bounds)
        if compiles_from_start(mode, engine.device.type, steps):
            engine.use_compiled(True)
            self.compile_start = "compiled step" if mode == "on" else f"compiled step ({steps} steps)"
            return None
        return CompileChoice(engine) if engine.device.type == "cpu" else None

    def start(self, device: str, execution: str, node: str) -> None:
        """Write where and how the members train; a member lost or cancelled meanwhile ends here."""
        self.execution = execution = "; ".join(n for n in (execution, self.compile_start) if n)
        flags = self.ledger.start(self.members, device, self.engine.progress.step, execution, node)
        self.act_on(flags, trained=False)
        if self.search is not None:
            self.search.on_start(self)

    # ------------------------------------------------------------ the loop

    def train(self) -> None:
        """Train every member to the last epoch, or until each has ended or been handed back."""
        try:
            with self.engine.running():
                self.train_epochs()
        finally:
            if self.threads is not None:  # the worker's next run starts again from all its threads
                self.threads.restore()

    def train_epochs(self) -> None:
        engine, epochs = self.engine, self.epochs
        last_report = last_checkpoint = time.perf_counter()
        while engine.progress.epoch < epochs and self.active:
            if self.limits.due():
                self.stop_at_limits()
                if not self.active:
                    return
            if not engine.train_next(self.recorded, epochs):
                self.stop_inside_epoch()
                return
            epoch = engine.progress.epoch
            if self.threads is not None:
                self.threads.after_epoch(epochs - epoch)
            if self.compiling is not None and (self.threads is None or self.threads.done):  # one probe at a time
                self.compiling.after_epoch(epochs - epoch)
            now = time.perf_counter()
            checkpoint_due = now - last_checkpoint >= self.settings.CHECKPOINT_SECONDS and epoch < epochs
            # a checkpoint follows a report: members resumed from it must find their curves up to it
            report_due = now - last_report >= self.report_seconds or engine.pending >= CHUNK
            if report_due or checkpoint_due or epoch == epochs:
                self.flush()
                last_report = time.perf_counter()
                self.report_seconds = max(self.settings.REPORT_SECONDS, (last_report - now) / MAX_REPORT_SHARE)
            if self.search is not None and self.search.records(epoch) and self.active:
                if engine.pending:  # the decision reads every member's point of this epoch
                    self.flush()
                self.search.after_epoch(self, epoch)
            shutdown = self.shutdown.is_set()
            if (shutdown or self.turn_is_over()) and epoch < epochs and self.active:
                self.flush()
                self.checkpoint()
                self.hand_back(None if shutdown else YIELDED)
                return
            if checkpoint_due:
                last_checkpoint = now
                self.checkpoint()
        self.succeed(sorted(self.active))

    def recorded(self, epoch: int) -> bool:
        """Whether `epoch` keeps figures: every `metrics_every`-th, the last, and those a search decides at."""
        return (epoch % self.specs[0].metrics_every == 0 or epoch == self.epochs
                or (self.search is not None and self.search.records(epoch)))

    def turn_is_over(self) -> bool:
        """Fair claims: this run has trained FITSERVE_YIELD_SECONDS and an owner with no member here has had a
        job waiting as long, so the members give up the worker between epochs, resuming at their next claim.
        The database is asked at most every quarter of that."""
        settings = self.settings
        if settings.YIELD_SECONDS <= 0 or settings.CLAIM_ORDER != "fair" or time.monotonic() < self.next_turn_check:
            return False
        self.next_turn_check = time.monotonic() + max(settings.YIELD_SECONDS / 4, settings.REPORT_SECONDS)
        return self.ledger.others_waiting(self.members, settings.YIELD_SECONDS, settings.MAX_RUNNING_PER_OWNER)

    def interrupted(self) -> bool:
        """Asked inside an epoch: stop it now? At a shutdown at once; else, every report's interval, a report of
        the epochs before this one, which also reads cancels: a cancelled member ends at once (the others train
        on), and the epoch stops once no member is left."""
        if self.shutdown.is_set():
            return True
        if self.limits.due():
            self.stop_at_limits()
            return not self.active
        now = time.monotonic()
        if now < self.next_poll:
            return False
        self.flush()
        self.next_poll = time.monotonic() + self.report_seconds
        return not self.active

    def stop_at_limits(self) -> None:
        """Members whose time limit passed stop now, each alone, their curves up to the last whole epoch: succeeded,
        with the weights they keep (the best epoch's with early stopping, else the last whole epoch's, inside an epoch
        too: the engine rewinds); at epoch 0, with no epoch to keep, cancelled untrained."""
        passed = self.limits.passed([self.members[k].job_id for k in sorted(self.active)])
        if not passed:
            return
        self.flush()  # which may end some of them otherwise (diverged, cancelled, early stopping)
        for k in [k for k in sorted(self.active) if self.members[k].job_id in passed]:
            why = passed[self.members[k].job_id]
            # in turn, a member before the one stopped has trained (and recorded) an epoch more than the run's count
            epoch = max(self.engine.progress.epoch, self.latest[k].epoch if self.latest[k] is not None else 0)
            if epoch == 0:
                self.ledger.cancel(self.members[k], f"{why} {job_repo.BEFORE_FIRST_EPOCH}")
                self.end(k, "cancelled")
            else:
                self.succeed([k], stopped_early_at=epoch, stop_reason=f"{why} after epoch {epoch}")

    def stop_inside_epoch(self) -> None:
        """The epoch stopped part way: its half is not kept (no checkpoint of it); at a shutdown the members go
        back to the queue and resume from their last checkpoint."""
        self.flush()
        if self.shutdown.is_set():
            self.hand_back()

    # ------------------------------------------------------------ writes

    def flush(self) -> None:
        """One read-back and one write for every member's new points; then act on what the write heard."""
        points_by_member = self.engine.read_points()
        early = self.engine.early
        if early is not None:  # a member that stopped has points up to its stop epoch only
            points_by_member = early.settle(points_by_member)
        failed, stopped, entries = [], [], []
        for k in sorted(self.active):
            points = points_by_member[k]
            bad = points.first_nonfinite_loss()
            if bad is not None:
                failed.append((k, points[bad]))
                points = points[:bad]
            elif early is not None and early.stopped(k):
                stopped.append(k)
            if len(points):
                self.latest[k] = points[-1]
            entries.append(self.entry(k, points))
        if not entries:
            return
        flags = self.ledger.report(entries)
        for k, point in failed:
            self.ledger.fail(self.members[k], diverged(point.epoch, point.loss))
            self.end(k, "failed")
        self.succeed(stopped)
        # a stop asked for during the last report comes too late: the members are trained
        self.act_on(flags, trained=self.engine.progress.epoch >= self.epochs)

    def act_on(self, flags: dict[str, bool | None], trained: bool) -> None:
        """What a write heard per job: a cancel asked for (True) ends the member; gone (None) means the job is no
        longer this attempt's: nothing more is written for it."""
        for k in sorted(self.active):
            flag = flags.get(self.members[k].job_id)
            if flag is None:
                self.end(k, "lost")
            elif flag and not trained:
                self.ledger.cancel(self.members[k])
                self.end(k, "cancelled")

    def entry(self, k: int, points) -> dict:
        """Member k's share of a report: its new points, and its progress as of the last of them."""
        last = points[-1] if len(points) else None
        progress = self.engine.progress
        return {"member": self.members[k], "epoch": last.epoch if last else progress.epoch,
                "step": last.step if last else progress.step, "points": points,
                "trained_seconds": self.limits.trained(self.members[k].job_id)}

    def checkpoint(self) -> None:
        self.ledger.checkpoint([(self.members[k], self.engine.member_state(k)) for k in sorted(self.active)])

    def hand_back(self, why: str | None = None) -> None:
        """Back to the queue, from the last checkpoint: at a shutdown, or (`why` YIELDED) the turn is over."""
        yielded = why == YIELDED
        self.ledger.hand_back([self.members[k] for k in sorted(self.active)], why, yielded=yielded)
        for k in sorted(self.active):
            self.end(k, "yielded" if yielded else "shutdown")

    def end(self, k: int, outcome: str) -> None:
        self.ended[self.members[k].job_id] = outcome
        self.active.discard(k)

    def succeed(self, ks: list[int], **decided) -> None:
        """Members trained to their last epoch, stopped early, or stopped by a search (`decided`: stopped_early_at,
        stop_reason): each with its weights (its best epoch's, with early stopping), its evaluation, and its final
        state (`final_state`: what a continuation starts from)."""
        if not ks:
            return
        early = self.engine.early
        note = "; ".join(n for n in (self.threads and self.threads.note, self.compile_note()) if n)
        entries = []
        for k in ks:
            final = self.final_state(k)
            net = self.engine.member_net(k, best=early is not None and early.has_best(k))
            entry = final | {"member": self.members[k], "net": net,
                             "trained_seconds": self.limits.trained(self.members[k].job_id),
                             "evaluation": evaluate_splits(net, self.datas[k], self.specs[k])}
            if early is not None:
                entry |= early.outcome(k, self.epochs)
            if note:
                entry["execution"] = f"{self.execution}; {note}"
            entries.append(entry | decided)
        self.ledger.succeed(entries)
        for k in ks:
            self.end(k, "succeeded")

    def compile_note(self) -> str | None:
        """How the compiled step went: the choice's measurement, or why it was given up."""
        compiled = self.engine.compiled
        if compiled is not None and compiled.failed is not None:
            return compiled.failed
        return None if self.compiling is None else self.compiling.note

    def final_state(self, k: int) -> dict:
        """Member k's state as it ends, serialized before the best weights are copied over its tensors; none for one
        that stopped early: the engine trained past its stop before the run heard of it."""
        if self.engine.early is not None and self.engine.early.stopped(k):
            return {}
        state = self.engine.member_state(k)
        return {"final_state": state_to_bytes(state), "final_epoch": state["epoch"]}

    # ------------------------------------------------------------ for searches

    def metric(self, k: int, name: str) -> float | None:
        """Member k's `name` at its latest reported point."""
        return None if self.latest[k] is None else getattr(self.latest[k], name)

    def keep(self, survivors: list[int]) -> None:
        """Only members `survivors` (indices, ascending) train on; the engine drops the others."""
        if not survivors:  # the run ends
            self.active.clear()
            return
        if len(survivors) < len(self.members):
            self.engine.keep_members(survivors)
            self.members, self.latest = ([items[k] for k in survivors] for items in (self.members, self.latest))
            self.specs, self.datas = self.engine.specs, self.engine.datas
        self.active = set(range(len(survivors)))
