"""Whether a run trains on its engine's compiled step (engines/compiled.py): decided by FITSERVE_COMPILE, measured.

- off: never. on: from the first step, wherever the step can compile (its first call compiles: the run's stop
  points wait for it).
- auto, on a CPU: measured on the run itself, as engines/threads.py measures thread counts. After its first
  epoch the run times plain epochs for WARMUP_SECONDS; only a job whose plain remainder would take PAYBACK times
  what a compile is expected to cost goes on (a compile costs seconds: 2-10 s cold on a 2-core CPU, under 1 s
  once this process has compiled the same graph; bench/compiled.py). The step then compiles in a thread of its
  own, on copies of the weights (the engine's `rehearse_compiled`), while the run trains on plain: its stop
  points (a cancel, a shutdown) never wait for a compile. Once compiled, blocks of compiled and plain epochs
  alternate (compiled, plain, plain, compiled, ...) and the run trains on with the one of the lower median time
  per epoch. Both steps work on the same weights and optimizer state, so nothing is trained twice, and the curve
  is the plain one to float tolerance.
- auto, on CUDA: an epoch's time there is not seen without a sync, and the engine's CUDA graph is captured once;
  so the job compiles from its start when it has at least CUDA_MIN_STEPS optimizer steps, which repay a compile
  at the ~40 us a compiled and graphed step saves per step on an H200 (../shared/device/README.md).
"""

from __future__ import annotations

import threading
import time

from workers.engines.block_times import BlockTimes

WARMUP_SECONDS = 0.2  # plain epochs timed before deciding whether to compile
BLOCK_SECONDS = 0.05  # one block of the comparison: this long, and at least one epoch
ROUNDS = 2  # each round is compiled, plain, plain, compiled
# the plain remainder must be this many expected compiles long: the compile runs beside the run (on a core of its
# own where there is one), so what the run stands to lose is the comparison's blocks, not the compile
PAYBACK = 1.0
CUDA_MIN_STEPS = 250_000
# what a compile is expected to cost, in seconds: a cold compile of a new graph on a loaded 2-core CPU takes 5-10 s
EXPECTED_COMPILE_SECONDS = {"cpu": 10.0}


def compiles_from_start(mode: str, device_type: str, steps: int) -> bool:
    """Whether a run with FITSERVE_COMPILE `mode` trains compiled from its first step (no measurement)."""
    return mode == "on" or (mode == "auto" and device_type == "cuda" and steps >= CUDA_MIN_STEPS)


class CompileChoice:
    """Call `after_epoch` after each epoch of a CPU run whose engine has a compiled step; `note` says what was chosen
    and why (None while undecided, or for a job too short to try)."""

    def __init__(self, engine):
        self.engine = engine
        self.timing = BlockTimes(True, False, ROUNDS)  # compiled, plain, plain, compiled, ...
        self.done = False
        self.note: str | None = None
        self.plain_epoch = 0.0  # seconds per plain epoch, from the warm-up
        self.rehearsal: threading.Thread | None = None  # the compile, while it runs
        self.compile_cost = 0.0  # its seconds

    def after_epoch(self, epochs_left: int) -> None:
        if self.done:
            return
        now = time.perf_counter()
        elapsed = self.timing.tick(now)
        if elapsed is None:
            return
        if self.rehearsal is not None:
            if not self.rehearsal.is_alive():
                self.compiled()
            return
        if not self.timing.block:
            if elapsed >= WARMUP_SECONDS:
                self.consider(elapsed / self.timing.epochs, epochs_left)
        elif self.timing.end_block(elapsed):
            if self.timing.over or self.failed():
                self.decide()
            else:
                self.start_block(now)

    def consider(self, per_epoch: float, epochs_left: int) -> None:
        """Compile, beside the run, if the plain remainder repays the compile it is expected to cost."""
        if per_epoch * epochs_left < PAYBACK * EXPECTED_COMPILE_SECONDS["cpu"]:
            self.done = True
            return
        self.plain_epoch = per_epoch
        # not a daemon: the process waits for it at exit rather than tear torch down under a compile
        self.rehearsal = threading.Thread(target=self.rehearse, name="fitserve-compile")
        self.rehearsal.start()

    def rehearse(self) -> None:
        started = time.perf_counter()
        self.engine.rehearse_compiled()
        self.compile_cost = time.perf_counter() - started

    def compiled(self) -> None:
        """The compile has ended: the comparison's blocks, or the plain step if it failed."""
        self.rehearsal = None
        if self.failed():
            self.decide()
            return
        # only ever raised: a graph this process compiled before costs far less than a new shape's (~0.5 s against
        # 5 s), and a job must not start compiling on the strength of a cheap one
        EXPECTED_COMPILE_SECONDS["cpu"] = max(EXPECTED_COMPILE_SECONDS["cpu"], self.compile_cost)
        self.timing.block = max(1, round(BLOCK_SECONDS / self.plain_epoch))
        self.start_block(time.perf_counter())

    def start_block(self, now: float) -> None:
        self.engine.use_compiled(self.timing.next)
        self.timing.restart(now)

    def failed(self) -> bool:
        return self.engine.compiled.failed is not None

    def decide(self) -> None:
        self.done = True
        if self.failed():
            self.engine.use_compiled(False)
            self.note = self.engine.compiled.failed
            return
        compiled, plain = self.timing.medians()
        self.engine.use_compiled(compiled < plain)
        self.note = (f"{'compiled' if compiled < plain else 'plain'} step: measured {compiled * 1e3:.3g} ms per epoch "
                     f"compiled, {plain * 1e3:.3g} ms plain, after a compile of {self.compile_cost:.2g} s beside "
                     f"the run")
