"""Epochs replayed from a CUDA graph: forward, backward and optimizer step captured once.

On a GPU a small model's step is launch overhead, not arithmetic (an eager step costs 0.5-0.9 ms on
an H200 whatever the model). The first epochs of a run train eagerly on a side stream, which warms
up the kernels and the optimizer's lazily made state as capture requires; then `k` full-batch
epochs, or one mini-batch epoch, are captured as `workers.engines.steps.Step` calls and replayed. A replay
runs the very kernels of the eager steps on the very tensors, so the results are the eager ones.
"""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable, Iterator

import torch

from workers.engines.steps import Batches


STEPS_PER_GRAPH = 50  # full-batch epochs per replay: the replay's own launch is shared by 50 steps
MAX_BATCHES = 256  # longer mini-batch epochs train eagerly: capture time and graph size grow with them
WARMUP_EPOCHS = 3  # eager epochs on the capture stream before capturing

log = logging.getLogger("fitserve.trainer")


def can_graph(batches: Batches, device: torch.device) -> bool:
    return device.type == "cuda" and len(batches.bounds) <= MAX_BATCHES


def epochs_per_graph(every: int) -> tuple[int, bool]:
    """Full-batch epochs per replay, and whether each replay holds all its recorded epochs (validation included)."""
    if every <= STEPS_PER_GRAPH:
        return every * (STEPS_PER_GRAPH // every), True
    # a replay that ends on a recorded epoch is followed by an eager validation pass
    return max(d for d in range(1, STEPS_PER_GRAPH + 1) if every % d == 0), False


class GraphedEpochs:
    """Replays `k` epochs at a time for an eager engine (`eager.Trainer`, which makes it) on a CUDA device."""

    def __init__(self, trainer):
        self.t = trainer
        self.stream = torch.cuda.Stream(trainer.device)
        every = trainer.spec.metrics_every
        if trainer.batches.full:
            self.k, self.inside = epochs_per_graph(every)
            self.align = every if self.inside else self.k  # replays start here, so recorded epochs sit still
            self.positions = [p for p in range(self.k) if (p + 1) % every == 0] if self.inside else [self.k - 1]
        else:  # one epoch per replay: a fresh permutation comes before each
            self.k, self.inside, self.align, self.positions = 1, False, 1, [0]
        self.graph: torch.cuda.CUDAGraph | None = None
        self.start = torch.zeros((), dtype=torch.int64, device=trainer.device)  # the epoch a replay starts from
        self.outputs: dict[str, torch.Tensor] = {}  # the replay's figures, (recorded epochs, ...) each
        self.order: torch.Tensor | None = None  # the mini-batch permutation the graph reads
        self.failed = False
        self.warm_from = 0

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Train on the side stream; the caller's stream waits for the trained weights."""
        caller = torch.cuda.current_stream(self.t.device)
        self.stream.wait_stream(caller)  # the data was copied on the caller's stream
        self.warm_from = self.t.progress.epoch
        try:
            with torch.cuda.stream(self.stream):
                yield
        finally:
            caller.wait_stream(self.stream)

    def restart(self) -> None:
        """The engine's step changed: capture again after WARMUP_EPOCHS eager epochs of the new one."""
        self.graph, self.outputs, self.order, self.failed = None, {}, None, False
        self.warm_from = self.t.progress.epoch

    def replay(self, recorded: Callable[[int], bool]) -> bool:
        """Train the next `k` epochs from the graph, keeping the figures of those `recorded`; False when they must
        run eagerly."""
        t = self.t
        start = t.progress.epoch
        warm = start - self.warm_from >= WARMUP_EPOCHS
        if self.failed or not warm or start % self.align or start + self.k > t.spec.epochs:
            return False
        if self.graph is None and not self.capture():
            return False
        if self.order is not None:
            torch.randperm(t.batches.n, generator=t.gen, out=self.order)
        if t.early is not None:
            self.start.fill_(start)  # early stopping inside the graph numbers its epochs from it
        self.graph.replay()
        self.keep_records(start, t.progress.step, recorded)
        t.progress.epoch = start + self.k
        t.progress.step += self.k * len(t.batches.bounds)
        return True

    def capture(self) -> bool:
        t = self.t
        if not t.batches.full:
            self.order = torch.empty(t.batches.n, dtype=torch.int64, device=t.device)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, stream=self.stream):
                self.outputs = self.full_batch_epochs() if t.batches.full else self.mini_batch_epoch()
        except RuntimeError as exc:  # an op that cannot be captured: this job goes on eagerly
            log.warning("CUDA graph capture failed, training eagerly: %s", exc)
            self.failed, self.order = True, None
            return False
        self.graph = graph
        return True

    def full_batch_epochs(self) -> dict[str, torch.Tensor]:
        """`k` steps on all rows; figures of the epochs at `positions`, stacked."""
        t, figures = self.t, defaultdict(list)
        positions = set(self.positions)
        for p in range(self.k):
            loss, out = t.step_fn(t.x, t.y)
            if p in positions:
                self.figures(figures, loss, out, t.y, self.start + (p + 1))
        return {name: torch.stack(values) for name, values in figures.items()}

    def mini_batch_epoch(self) -> dict[str, torch.Tensor]:
        """One epoch of batches over `order`; its figures."""
        t, figures = self.t, defaultdict(list)
        xs, ys = t.x.index_select(0, self.order), t.y.index_select(0, self.order)
        losses, outs = [], []
        for start, end in t.batches.bounds:
            loss, out = t.step_fn(xs[start:end], ys[start:end])
            losses.append(loss)
            outs.append(out)
        self.figures(figures, t.batches.epoch_loss(losses), torch.cat(outs), ys)
        return {name: torch.stack(values) for name, values in figures.items()}

    def figures(self, into: dict[str, list], loss: torch.Tensor, out: torch.Tensor, y: torch.Tensor, epoch=None):
        """The figures of a recorded epoch (its validation's inside the replay); with `epoch` (inside the replay),
        early stopping observes it too."""
        t = self.t
        figures = {"loss": loss} | t.epoch_figures(out, y, validate=self.inside)
        for name, value in figures.items():
            into[name].append(value)
        if t.early is not None and self.inside and epoch is not None:
            t.early.observe(t.records.named(loss, figures), epoch, t.step_fn.kept)

    def keep_records(self, start: int, step: int, recorded: Callable[[int], bool]) -> None:
        """Copy the replay's figures out of the graph's buffers, which the next replay overwrites."""
        t, per_epoch = self.t, len(self.t.batches.bounds)
        epochs = [start + p + 1 for p in self.positions]
        if not all(recorded(e) for e in epochs):
            return  # only a replay with one position can end off the record
        figures = {name: output.clone() for name, output in self.outputs.items()}
        if t.val and not self.inside:
            figures |= t.val_figures()
        steps = [step + (e - start) * per_epoch for e in epochs]
        t.records.add(epochs, steps, **figures)
        if t.early is not None and not self.inside:  # one recorded epoch, at the replay's end: its weights are here
            last = {name: value[-1] for name, value in figures.items()}
            t.early.observe(t.records.named(last["loss"], last), epochs[-1], t.step_fn.kept)
