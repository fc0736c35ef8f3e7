"""A run timing its own epochs in blocks of two alternatives, to train on at the faster: the thread count
(engines/threads.py) and the compiled or plain step (engines/compile_choice.py) are chosen so."""

from __future__ import annotations

import statistics


class BlockTimes:
    """Blocks of `block` epochs at alternatives `a` and `b`, in the order a, b, b, a, ... for `rounds` rounds (a
    slow drift of the host's speed falls on both alike); each block's seconds per epoch are kept. The caller
    counts each epoch with `tick`, sets `block` after its warm-up, and switches to `next` at each `restart`."""

    def __init__(self, a, b, rounds: int):
        self.plan = [a, b, b, a] * rounds
        self.times: dict = {a: [], b: []}
        self.started: float | None = None  # the warm-up's start, then each block's
        self.epochs = 0  # epochs since `started`
        self.block = 0  # epochs per block, once the blocks run
        self.blocks = 0  # blocks timed

    def tick(self, now: float) -> float | None:
        """Count an epoch that ended at `now`: seconds since `started`; None after the first epoch, which pays
        one-time costs (timing starts after it)."""
        if self.started is None:
            self.started = now
            return None
        self.epochs += 1
        return now - self.started

    def end_block(self, elapsed: float) -> bool:
        """Whether the block has its epochs, `elapsed` seconds since it started; its time per epoch is then kept."""
        if self.epochs < self.block:
            return False
        self.times[self.plan[self.blocks]].append(elapsed / self.epochs)
        self.blocks += 1
        return True

    def restart(self, now: float) -> None:
        self.started, self.epochs = now, 0

    @property
    def over(self) -> bool:
        return self.blocks == len(self.plan)

    @property
    def next(self):
        """The alternative the next block trains with."""
        return self.plan[self.blocks]

    def medians(self) -> tuple[float, float]:
        """The median seconds per epoch of `a`'s blocks and of `b`'s."""
        return statistics.median(self.times[self.plan[0]]), statistics.median(self.times[self.plan[1]])
