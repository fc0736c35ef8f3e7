"""The eager engine: one network trained epoch by epoch, plain torch, no database, no HTTP.

A run (workers/run.py) drives it as a run of K = 1 member. The data stays on the training device, already
through the input transform; each step is `workers.engines.steps.Step` (on CUDA, replayed from a CUDA graph by
`workers.engines.cuda_graph`, an option of this engine). Losses stay on the device and are read back once per
report (`read_points`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from modelzoo.layers import standardized_targets
from workers.data import TrainingData
from workers.engines.compiled import CompiledStep
from workers.engines.cuda_graph import GraphedEpochs, can_graph
from workers.engines.early_stopping import EarlyStopping
from workers.engines.figures import Figures
from workers.engines.records import KeepsRecords, Records
from workers.engines.schedules import LearningRates, eager_reason
from workers.engines.steps import Batches, Step, transform_rows

INTERRUPT_BATCHES = 8  # inside an epoch, stops are looked for every this many mini-batches
STEPPING = ("capturable", "foreach")  # optimizer options that say how it steps, not what it has learned


@dataclass
class Progress:
    """Where training stands; a checkpoint of it is enough to resume."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken


def make_optimizer(spec, params, capturable: bool = False) -> torch.optim.Optimizer:
    """The spec's optimizer; `capturable` keeps Adam's step count on the device, for CUDA graphs."""
    opt = spec.optimizer
    kwargs = {"lr": opt.lr, "weight_decay": opt.weight_decay, "foreach": True}
    if opt.kind == "sgd":
        return torch.optim.SGD(params, momentum=opt.momentum, **kwargs)
    cls = torch.optim.Adam if opt.kind == "adam" else torch.optim.AdamW
    return cls(params, capturable=capturable, **kwargs)


def checkpoint(net: nn.Module, optimizer, progress: Progress, gen: torch.Generator, early: dict | None) -> dict:
    """A member's checkpoint, in the one format every engine writes and resumes from (workers/checkpoints.py)."""
    state = {"model": net.state_dict(), "optimizer": optimizer.state_dict(), "epoch": progress.epoch,
             "step": progress.step, "rng": gen.get_state()}
    return state if early is None else state | {"early_stopping": early}


class Trainer(KeepsRecords):
    def __init__(
        self, spec, net: nn.Module, data: TrainingData, device: torch.device, graphs: bool = True,
        compiled: bool = False,
    ):
        """`graphs=False` keeps to the plain eager path even where CUDA graphs could run; `compiled`: the step may be
        compiled (workers/engines/compiled.py; the caller has checked `compile_reason`)."""
        self.spec, self.net, self.data, self.device = spec, net, data, device
        self.specs, self.nets, self.datas = [spec], [net], [data]  # the engine's members: this one
        self.progress = Progress()
        # asked between the mini-batches of an epoch: True stops the epoch at once (the run's stop points)
        self.interrupted: Callable[[], bool] = lambda: False
        # set by a run with time limits: an epoch that may stop part way keeps the weights it started from, so a
        # member stopped inside it keeps its last whole epoch's (`member_net`)
        self.rewinds = False
        self.epoch_start: list[torch.Tensor] | None = None
        self.val = data.x_val is not None
        n = len(data.x_train)
        self.batch_size = n if spec.batch_size is None else min(spec.batch_size, n)
        self.batches = Batches(n, self.batch_size, spec.loss, device)
        graphed = graphs and can_graph(self.batches, device) and eager_reason(spec, net) is None
        # a compiled step on CUDA keeps Adam's step count on the device too: no sync inside its graph
        capturable = graphed or (compiled and device.type == "cuda")
        self.optimizer = make_optimizer(spec, net.parameters(), capturable=capturable)
        self.step_fn = self.plain_step = Step(spec, net, self.optimizer)
        # the option of a compiled step, used once `use_compiled` says so (the run's choice, engines/compile_choice.py)
        self.compiled = CompiledStep(self.plain_step, device) if compiled else None
        self.rates = LearningRates(spec, self.optimizer, self.step_fn, self.val) if spec.optimizer.schedule else None
        n_val = len(data.x_val) if self.val else 0
        self.records = Records([spec.optimizer.schedule is not None], len(data.x_train), n_val)
        self.early = EarlyStopping(spec, self.val, self.step_fn.kept) if spec.early_stopping else None
        self.gen = torch.Generator(device=device).manual_seed(spec.seed)
        self.graph = GraphedEpochs(self) if graphed else None
        self.x = self.x_val = self.y = self.y_val = None  # the transformed rows and targets, made when `run` starts
        self.figures: Figures | None = None  # made with them

    # ------------------------------------------------------------ state

    def state(self) -> dict:
        """Everything a later attempt needs to continue exactly here."""
        state = checkpoint(self.net, self.optimizer, self.progress, self.gen, self.early and self.early.state())
        return state if self.rates is None else state | {"schedule": self.rates.state()}

    def load_state(self, state: dict) -> None:
        self.net.load_state_dict(state["model"])
        # the numbers are the state's; how the optimizer steps is this engine's (capturable for a CUDA graph), which
        # may differ from the one that saved it (a graph that failed, a continued job on another device)
        saved = state["optimizer"]
        groups = [group | {flag: ours[flag] for flag in STEPPING if flag in ours}
                  for group, ours in zip(saved["param_groups"], self.optimizer.param_groups)]
        self.optimizer.load_state_dict({"state": saved["state"], "param_groups": groups})
        self.progress = Progress(epoch=state["epoch"], step=state["step"])
        self.gen.set_state(state["rng"])
        if self.early is not None and "early_stopping" in state:
            self.early.load_state(state["early_stopping"])
        if self.rates is not None:
            self.rates.load_state(state.get("schedule"))

    # ------------------------------------------------------------ the engine's interface (engines/__init__.py)

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Around a run's epochs: the rows and targets transformed once (after load_state, which may bring the
        transforms' buffers), the CUDA graph's stream."""
        net, data = self.net, self.data
        self.x, self.x_val = transform_rows(net, data.x_train), transform_rows(net, data.x_val)
        self.y, self.y_val = standardized_targets(net, data.y_train), standardized_targets(net, data.y_val)
        self.figures = Figures(self.spec, [net], self.device)
        with self.graph.running() if self.graph is not None else contextlib.nullcontext():
            yield

    def train_next(self, recorded: Callable[[int], bool], epochs: int) -> bool:
        """The next graph replay's epochs where the CUDA graph replays, else the next epoch."""
        return (self.graph is not None and self.graph.replay(recorded)) or super().train_next(recorded, epochs)

    def use_compiled(self, on: bool) -> None:
        """Train the next steps with the compiled step (`on`) or the plain one; a CUDA graph is captured again."""
        self.step_fn = self.compiled if on else self.plain_step
        if self.graph is not None:
            self.graph.restart()

    def rehearse_compiled(self) -> None:
        """Compile the step for each batch size of an epoch, on copies (engines/compiled.py); any thread."""
        for size in sorted({end - start for start, end in self.batches.bounds}, reverse=True):
            self.compiled.rehearse(self.x[:size], self.y[:size])

    def start_epoch(self, epoch: int) -> None:
        if self.rates is not None:
            self.rates.start_epoch(epoch)

    def member_state(self, k: int = 0) -> dict:
        return self.state()

    @torch.no_grad()
    def member_net(self, k: int = 0, best: bool = False) -> nn.Module:
        """The network; `best`: with its best recorded epoch's weights (early stopping); asked inside an epoch
        (`rewinds`), with its last whole epoch's."""
        if best:
            self.restore_best()
        elif self.epoch_start is not None:
            torch._foreach_copy_(self.step_fn.kept, self.epoch_start)
        return self.net

    @torch.no_grad()
    def restore_best(self) -> None:
        """With early stopping, the job keeps its best recorded epoch's weights."""
        if self.early is not None and self.early.has_best():
            torch._foreach_copy_(self.step_fn.kept, self.early.weights)

    def train_epoch(self, record: bool) -> bool:
        """One epoch, eagerly: one step on all rows, or one per batch of a fresh permutation.

        False when `interrupted` stopped it between two batches (asked every INTERRUPT_BATCHES batches).
        """
        batches = self.batches
        if batches.full:  # the tutorial's loop, one step per epoch
            loss, out = self.step_fn(self.x, self.y)
            self.progress.step += 1
            if record:
                self.record(loss, out, self.y)
            return True
        order = torch.randperm(batches.n, device=self.device, generator=self.gen)
        xs, ys = self.x[order], self.y[order]  # one gather per epoch; batches are views of it
        losses, outs = [], []
        if self.rewinds and len(batches.bounds) >= INTERRUPT_BATCHES:
            self.epoch_start = [w.detach().clone() for w in self.step_fn.kept]
        for i, (start, end) in enumerate(batches.bounds):
            if i % INTERRUPT_BATCHES == INTERRUPT_BATCHES - 1 and self.interrupted():
                return False
            loss, out = self.step_fn(xs[start:end], ys[start:end])
            if record:
                losses.append(loss)
                outs.append(out)
        self.epoch_start = None
        self.progress.step += len(batches.bounds)
        if record:
            self.record(batches.epoch_loss(losses), torch.cat(outs), ys)
        return True

    def record(self, loss: torch.Tensor, out: torch.Tensor, y: torch.Tensor) -> None:
        """Keep the epoch's figures on the device; the epoch is the one now ending."""
        figures = self.epoch_figures(out, y, validate=True)
        rate = None if self.rates is None else [self.rates.current]
        self.records.add([self.progress.epoch + 1], [self.progress.step], rate, loss=loss, **figures)
        val_loss = figures.get("val_loss")
        if self.rates is not None:
            self.rates.observe(loss, val_loss)
        if self.early is not None:
            self.early.observe(self.records.named(loss, figures), self.progress.epoch + 1, self.step_fn.kept)

    def epoch_figures(self, out: torch.Tensor, y: torch.Tensor, validate: bool) -> dict[str, torch.Tensor]:
        """The figures of the epoch's outputs `out` on its rows' targets `y`; `validate`: and the validation pass's."""
        figures = self.figures(out[None], y[None])
        return figures | self.val_figures() if validate and self.val else figures

    def val_figures(self) -> dict[str, torch.Tensor]:
        """val_loss, and the validation split's other figures, by the weights now."""
        loss, out = self.step_fn.evaluate(self.x_val, self.y_val)
        return {"val_loss": loss} | self.figures(out[None], self.y_val[None], "val_")


def seed_network_init(seed: int) -> None:
    """Seed the generator a network's initial weights come from (networks are built on the CPU).

    torch.manual_seed would also seed every accelerator back end, lazily, formatting a stack each time:
    0.1-0.8 ms a call, which a sweep pays per member. Data and batch order have generators of their own.
    """
    torch.default_generator.manual_seed(seed)
