"""How many torch threads a CPU run trains with: the faster of 1 and the worker's share, measured on the run itself.

A worker gets `cores // workers` intra-op threads. Small networks often train faster on one: their ops
are too small to repay waking a second thread, and where the API and other processes share the cores,
every op of a multi-threaded step waits for its slowest thread. Which count is faster depends on the job
and on the host's load, so a job long enough to repay it measures: after a short warm-up it trains blocks
of its own epochs at 1 and at all its threads in the order 1, N, N, 1, ... (a slow drift of the host's
speed falls on both alike), keeps the count whose blocks took the lower median time per epoch, and trains
the rest at it. Nothing is trained twice. A job's figures at 1 and at N threads agree to float tolerance
(a reduction may be split differently), as a job's do between machines.
"""

from __future__ import annotations

import time

import torch

from workers.engines.block_times import BlockTimes

WARMUP_SECONDS = 0.05  # epochs timed before deciding whether the job is long enough to measure
BLOCK_SECONDS = 0.01  # one block of the probe: this long, and at least one epoch
ROUNDS = 4  # each round is 1, N, N, 1: 2 * ROUNDS blocks per count
MAX_SHARE = 0.1  # the probe may take at most this share of the job's remaining time


def thread_counts(tune: bool, device: torch.device) -> list[int]:
    """The torch thread counts a run on `device` may train at: 1 and this process's count on a CPU where the run
    picks the faster (`tune`, FITSERVE_TUNE_THREADS), else this process's count alone."""
    most = torch.get_num_threads()
    return [1, most] if tune and device.type == "cpu" and most > 1 else [most]


class ThreadChoice:
    """Call `after_epoch` after each epoch; `threads` is the count chosen, `note` says why (None if unmeasured)."""

    def __init__(self, most: int):
        self.most = self.threads = most
        self.timing = BlockTimes(1, most, ROUNDS)  # 1, N, N, 1, ...
        self.done = most <= 1
        self.note: str | None = None

    def after_epoch(self, epochs_left: int) -> None:
        if self.done:
            return
        now = time.perf_counter()
        elapsed = self.timing.tick(now)
        if elapsed is None:
            return
        if not self.timing.block:
            if elapsed >= WARMUP_SECONDS:
                self.start_probe(elapsed / self.timing.epochs, epochs_left)
            return
        if not self.timing.end_block(elapsed):
            return
        if self.timing.over:
            self.decide()
        else:
            self.start_block(now)

    def start_probe(self, per_epoch: float, epochs_left: int) -> None:
        self.timing.block = max(1, round(BLOCK_SECONDS / per_epoch))
        if self.timing.block * len(self.timing.plan) > MAX_SHARE * epochs_left:
            self.done = True  # too short a job to repay the probe: it keeps all its threads
            return
        self.start_block(time.perf_counter())

    def start_block(self, now: float) -> None:
        torch.set_num_threads(self.timing.next)
        self.timing.restart(now)

    def decide(self) -> None:
        one, most = self.timing.medians()
        self.threads = 1 if one < most else self.most
        torch.set_num_threads(self.threads)
        self.done = True
        self.note = (f"{self.threads} torch thread(s): measured {one * 1e3:.3g} ms per epoch at 1, "
                     f"{most * 1e3:.3g} ms at {self.most}")

    def restore(self) -> None:
        """The worker's next job starts again from all its threads."""
        torch.set_num_threads(self.most)
