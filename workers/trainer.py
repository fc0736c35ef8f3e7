"""The training loop: plain torch, no database, no HTTP.

The worker hands it a spec, data and callbacks. Losses stay on the device and are read back in
chunks (one host sync per chunk, not per step); each chunk becomes curve points for `report`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from workers.data import TrainingData

CHUNK = 1024  # epochs per device-side loss buffer


@dataclass
class Point:
    step: int
    epoch: int
    loss: float
    val_loss: float | None = None
    accuracy: float | None = None
    val_accuracy: float | None = None


class Diverged(Exception):
    """The loss became NaN or infinite."""

    def __init__(self, epoch: int, value: float):
        super().__init__(f"loss became {value} at epoch {epoch}")
        self.epoch = epoch


@dataclass
class Progress:
    """Where training stands; a checkpoint of it is enough to resume."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken


@dataclass
class Callbacks:
    # stores points; returning False stops training (cancelled, or the job is no longer ours)
    report: Callable[[list[Point], Progress], bool]
    # called every `checkpoint_seconds` and when stopping early
    checkpoint: Callable[[dict], None] = lambda state: None
    checkpoint_seconds: float = 60.0
    report_seconds: float = 0.5


def make_loss(spec) -> nn.Module:
    if spec.loss == "mse":
        return nn.MSELoss()
    if spec.loss == "sse":
        return nn.MSELoss(reduction="sum")
    if spec.loss == "cross_entropy":
        return nn.CrossEntropyLoss()
    # the tutorial's sigmoid-then-BCELoss, or the stable fused form when there is no sigmoid
    return nn.BCELoss() if spec.model.output_activation == "sigmoid" else nn.BCEWithLogitsLoss()


def make_optimizer(spec, params) -> torch.optim.Optimizer:
    opt = spec.optimizer
    kwargs = {"lr": opt.lr, "weight_decay": opt.weight_decay, "foreach": True}
    if opt.kind == "sgd":
        return torch.optim.SGD(params, momentum=opt.momentum, **kwargs)
    cls = torch.optim.Adam if opt.kind == "adam" else torch.optim.AdamW
    return cls(params, **kwargs)


def count_correct(outputs: torch.Tensor, y: torch.Tensor, loss: str, output_activation: str | None) -> torch.Tensor:
    """Correct predictions in a batch, as a device scalar (no sync)."""
    if loss == "bce":
        threshold = 0.5 if output_activation == "sigmoid" else 0.0
        return ((outputs > threshold).to(y.dtype) == y).sum()
    return (outputs.argmax(dim=1) == y).sum()


@dataclass
class _Buffers:
    """Per-epoch figures kept on the device until the next report."""

    loss: torch.Tensor
    correct: torch.Tensor
    val_loss: torch.Tensor
    val_correct: torch.Tensor
    epochs: list[int] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)

    @classmethod
    def on(cls, device: torch.device) -> _Buffers:
        z = lambda dtype: torch.zeros(CHUNK, dtype=dtype, device=device)  # noqa: E731
        return cls(z(torch.float32), z(torch.int64), z(torch.float32), z(torch.int64))


class Trainer:
    def __init__(self, spec, net: nn.Module, data: TrainingData, device: torch.device, callbacks: Callbacks):
        self.spec, self.net, self.data, self.device, self.cb = spec, net, data, device, callbacks
        self.loss_fn = make_loss(spec)
        self.optimizer = make_optimizer(spec, net.parameters())
        self.progress = Progress()
        self.classify = spec.task == "classification"
        self.val = data.x_val is not None
        self.buf = _Buffers.on(device)
        n = len(data.x_train)
        self.batch_size = n if spec.batch_size is None else min(spec.batch_size, n)
        self.gen = torch.Generator(device=device).manual_seed(spec.seed)

    # ------------------------------------------------------------ state

    def state(self) -> dict:
        """Everything a later attempt needs to continue exactly here."""
        return {
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.progress.epoch,
            "step": self.progress.step,
            "rng": self.gen.get_state(),
        }

    def load_state(self, state: dict) -> None:
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.progress = Progress(epoch=state["epoch"], step=state["step"])
        self.gen.set_state(state["rng"])

    # ------------------------------------------------------------ loop

    def run(self) -> bool:
        """Train to the last epoch; False when `report` asked to stop first."""
        last_report = last_checkpoint = time.perf_counter()
        every, epochs = self.spec.metrics_every, self.spec.epochs
        while self.progress.epoch < epochs:
            epoch = self.progress.epoch + 1
            record = epoch % every == 0 or epoch == epochs
            self.train_epoch(record)
            self.progress.epoch = epoch
            now = time.perf_counter()
            full = len(self.buf.epochs) == CHUNK
            if full or epoch == epochs or now - last_report >= self.cb.report_seconds:
                last_report = now
                if not self.flush():
                    self.cb.checkpoint(self.state())
                    return False
            if now - last_checkpoint >= self.cb.checkpoint_seconds and epoch < epochs:
                last_checkpoint = now
                self.cb.checkpoint(self.state())
        return True

    def train_epoch(self, record: bool) -> None:
        x, y, n, bs = self.data.x_train, self.data.y_train, len(self.data.x_train), self.batch_size
        slot = len(self.buf.epochs)
        if bs == n:  # full batch: the tutorial's loop, one step per epoch
            loss, correct = self.step(x, y)
        else:
            order = torch.randperm(n, device=self.device, generator=self.gen)
            loss = torch.zeros((), device=self.device)
            correct = torch.zeros((), dtype=torch.int64, device=self.device)
            for start in range(0, n, bs):
                idx = order[start : start + bs]
                batch_loss, batch_correct = self.step(x[idx], y[idx])
                # the epoch's loss on the same scale as a full batch: mean losses weigh by rows
                loss = loss + (batch_loss if self.spec.loss == "sse" else batch_loss * len(idx) / n)
                if batch_correct is not None:
                    correct = correct + batch_correct
        if not record:
            return
        self.buf.loss[slot] = loss
        if self.classify:
            self.buf.correct[slot] = correct
        if self.val:
            self.evaluate(slot)
        self.buf.epochs.append(self.progress.epoch + 1)
        self.buf.steps.append(self.progress.step)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = self.net(x)
        loss = self.loss_fn(out, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.progress.step += 1
        correct = None
        if self.classify:
            correct = count_correct(out.detach(), y, self.spec.loss, self.spec.model.output_activation)
        return loss.detach(), correct

    @torch.no_grad()
    def evaluate(self, slot: int) -> None:
        out = self.net(self.data.x_val)
        self.buf.val_loss[slot] = self.loss_fn(out, self.data.y_val)
        if self.classify:
            self.buf.val_correct[slot] = count_correct(
                out, self.data.y_val, self.spec.loss, self.spec.model.output_activation
            )

    def flush(self) -> bool:
        """One host sync: turn the buffered epochs into points and report them."""
        k = len(self.buf.epochs)
        if k == 0:
            return self.cb.report([], self.progress)
        losses = self.buf.loss[:k].tolist()
        correct = self.buf.correct[:k].tolist() if self.classify else None
        val_losses = self.buf.val_loss[:k].tolist() if self.val else None
        val_correct = self.buf.val_correct[:k].tolist() if self.val and self.classify else None
        n, n_val = len(self.data.x_train), (len(self.data.x_val) if self.val else 0)
        points = []
        for i, (epoch, step) in enumerate(zip(self.buf.epochs, self.buf.steps)):
            if not math.isfinite(losses[i]):
                if points:
                    self.cb.report(points, self.progress)
                raise Diverged(epoch, losses[i])
            points.append(
                Point(
                    step=step,
                    epoch=epoch,
                    loss=losses[i],
                    accuracy=None if correct is None else correct[i] / n,
                    val_loss=None if val_losses is None else _finite_or_none(val_losses[i]),
                    val_accuracy=None if val_correct is None else val_correct[i] / n_val,
                )
            )
        self.buf.epochs.clear()
        self.buf.steps.clear()
        return self.cb.report(points, self.progress)


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def fit_standardization(net: nn.Module, x: torch.Tensor) -> None:
    """Set the input transform's mean and std from the training rows."""
    transform = net[0]
    rows = x.reshape(len(x), *transform.input_shape)
    transform.mean.copy_(rows.mean(dim=0))
    std = rows.std(dim=0) if len(rows) > 1 else torch.ones_like(transform.std)
    transform.std.copy_(torch.where(std > 0, std, torch.ones_like(std)))
