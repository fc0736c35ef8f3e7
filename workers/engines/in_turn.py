"""Members in turn: K eager engines (workers/engines/eager.py), each training its next epoch in turn.

What an adaptive search (ASHA, PBT) trains one by one when its members cannot, or should not, be stacked:
every member reaches a rung or an interval before the search decides, as stacked members do, and the
run (workers/run.py) acts on the decision the same way. Each member keeps its own network, optimizer and
data order, so its numbers are those it gets alone.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable

from torch import nn

from service.curves import Columns
from workers.engines.eager import Progress, Trainer
from workers.engines.steps import plain_sgd_lr


class InTurn:
    def __init__(self, trainers: list[Trainer]):
        if any(t.early is not None for t in trainers):  # the adaptive searches refuse early stopping at submit
            raise ValueError("members trained in turn decide no early stopping")
        self.trainers, self.device = trainers, trainers[0].device
        self.progress = Progress(trainers[0].progress.epoch, trainers[0].progress.step)
        self.early = None
        self.interrupted: Callable[[], bool] = lambda: False
        self.rewinds = False  # passed on to each member's engine
        self.compiled = None  # members in turn train their plain steps

    specs = property(lambda self: [t.spec for t in self.trainers])  # the members still trained, in order
    datas = property(lambda self: [t.data for t in self.trainers])

    @contextlib.contextmanager
    def running(self):
        with contextlib.ExitStack() as stack:
            for t in self.trainers:
                stack.enter_context(t.running())
            yield

    def train_next(self, recorded: Callable[[int], bool], epochs: int) -> bool:
        """Each member's next epoch; False when one was stopped inside (the members before it are an epoch ahead,
        and go back to the last checkpoint with the others)."""
        for t in self.trainers:
            t.interrupted, t.rewinds = self.interrupted, self.rewinds
            if not t.train_next(recorded, epochs):
                return False
        self.progress = Progress(self.trainers[0].progress.epoch, self.trainers[0].progress.step)
        return True

    @property
    def pending(self) -> int:
        return max(t.pending for t in self.trainers)

    def read_points(self) -> list[Columns]:
        return [t.read_points()[0] for t in self.trainers]

    def member_state(self, k: int) -> dict:
        return self.trainers[k].state()

    def member_net(self, k: int, best: bool = False) -> nn.Module:
        return self.trainers[k].member_net(0, best)

    def keep_members(self, keep: list[int]) -> None:
        self.trainers = [self.trainers[k] for k in keep]

    def copy_member(self, source: int, target: int) -> None:
        """Member `target` becomes an exact copy of member `source`: weights, optimizer state, data order."""
        self.trainers[target].load_state(copy.deepcopy(self.trainers[source].state()))

    def set_hyperparameters(self, k: int, values: dict[str, float]) -> None:
        """Member k's lr, momentum and weight decay from the next step on."""
        t = self.trainers[k]
        for group in t.optimizer.param_groups:
            group.update({name: v for name, v in values.items() if name in group})  # lr, momentum, weight_decay
        t.step_fn.lr = plain_sgd_lr(t.optimizer)
