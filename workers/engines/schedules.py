"""The learning rate a solo job trains each epoch at (`optimizer.schedule`), set before the epoch starts.

step, cosine and one_cycle are functions of the epoch (service.schemas.schedules.scheduled_lr), so a
resumed job needs nothing saved. plateau is torch's ReduceLROnPlateau fed the monitored loss of each
recorded epoch (one host read per recorded epoch, for plateau jobs only); its state is checkpointed.
"""

from __future__ import annotations

import torch

from service.schemas.schedules import scheduled_lr


class LearningRates:
    def __init__(self, spec, optimizer: torch.optim.Optimizer, step_fn, has_validation: bool):
        self.spec, self.optimizer, self.step_fn = spec, optimizer, step_fn
        self.schedule = spec.optimizer.schedule
        self.monitor = "val_loss" if has_validation else "loss"
        self.plateau = None
        if self.schedule.kind == "plateau":
            self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="min", factor=self.schedule.factor, patience=self.schedule.patience, threshold=0.0
            )
        self.current = spec.optimizer.lr

    def start_epoch(self, epoch: int) -> None:
        """Set the rate epoch `epoch` (1-based) trains at."""
        if self.plateau is None:
            self.set(scheduled_lr(self.schedule, self.spec.optimizer.lr, epoch, self.spec.epochs))
        else:
            self.set(float(self.optimizer.param_groups[0]["lr"]))

    def set(self, lr: float) -> None:
        self.current = lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.step_fn.lr is not None:  # plain SGD's update reads the rate from the step
            self.step_fn.lr = lr

    def observe(self, loss: torch.Tensor, val_loss: torch.Tensor | None) -> None:
        """A recorded epoch ended: plateau reads its monitored loss (a NaN never improves)."""
        if self.plateau is not None:
            metric = val_loss if self.monitor == "val_loss" else loss
            self.plateau.step(float(metric))

    def state(self) -> dict | None:
        return None if self.plateau is None else self.plateau.state_dict()

    def load_state(self, state: dict | None) -> None:
        if self.plateau is not None and state is not None:
            self.plateau.load_state_dict(state)


def eager_reason(spec, net) -> str | None:
    """Why a job trains eagerly even where CUDA graphs could replay it; None when nothing stops them.

    A captured graph replays fixed rates and a fixed dropout draw: schedules and dropout would be frozen.
    """
    if spec.optimizer.schedule is not None:
        return "a learning-rate schedule"
    if any(isinstance(m, torch.nn.Dropout) for m in net.modules()):
        return "dropout"
    return None
