"""Learning-rate schedules of the job spec (`optimizer.schedule`), and the rate each epoch trains at.

The rates of step, cosine and one_cycle are functions of the epoch alone (`scheduled_lr`), so a resumed
job, or a member of a batched sweep, finds its rate without any state; plateau reacts to the monitored
loss and keeps state (workers/engines/schedules.py).
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Union

from pydantic import Field

from service.schemas.data import Strict

Rate = Annotated[float, Field(gt=0.0, le=100.0)]
ONE_CYCLE_RISE = 0.3  # share of the epochs spent rising to max_lr (torch's OneCycleLR pct_start)
ONE_CYCLE_FINAL_DIV = 1e4  # the last epoch trains at lr / this (torch's final_div_factor)


class StepSchedule(Strict):
    """lr x gamma^floor((epoch - 1) / step_epochs): as torch's StepLR stepped once per epoch."""

    kind: Literal["step"]
    step_epochs: Annotated[int, Field(ge=1)]
    gamma: float = Field(gt=0.0, le=1.0)


class CosineSchedule(Strict):
    """Linear warm-up to lr over warmup_epochs, then a cosine from lr down to min_lr at the last epoch."""

    kind: Literal["cosine"]
    warmup_epochs: Annotated[int, Field(ge=0)] = 0
    min_lr: float = Field(0.0, ge=0.0)


class OneCycleSchedule(Strict):
    """From lr up to max_lr over the first 30% of the epochs, then a cosine down to lr / 1e4 (torch's OneCycleLR)."""

    kind: Literal["one_cycle"]
    max_lr: Rate


class PlateauSchedule(Strict):
    """lr x factor once the monitored loss has not improved for more than `patience` recorded epochs."""

    kind: Literal["plateau"]
    factor: float = Field(0.1, gt=0.0, lt=1.0)
    patience: Annotated[int, Field(ge=0)] = 10


Schedule = Annotated[
    Union[StepSchedule, CosineSchedule, OneCycleSchedule, PlateauSchedule], Field(discriminator="kind")
]


def scheduled_lr(schedule, lr: float, epoch: int, epochs: int) -> float:
    """The rate epoch `epoch` (1-based) of `epochs` trains at; plateau's starting rate is lr."""
    if schedule is None or schedule.kind == "plateau":
        return lr
    if schedule.kind == "step":
        return lr * schedule.gamma ** ((epoch - 1) // schedule.step_epochs)
    if schedule.kind == "cosine":
        warm = schedule.warmup_epochs
        if epoch <= warm:
            return lr * epoch / warm
        progress = (epoch - 1 - warm) / max(1, epochs - 1 - warm)  # 0 at the first epoch after warm-up, 1 at the last
        return schedule.min_lr + (lr - schedule.min_lr) * (1 + math.cos(math.pi * progress)) / 2
    return one_cycle_lr(schedule.max_lr, lr, epoch, epochs)


def one_cycle_lr(max_lr: float, lr: float, epoch: int, epochs: int) -> float:
    """torch.optim.lr_scheduler.OneCycleLR's cosine annealing, one scheduler step per epoch, starting at lr."""
    t = epoch - 1
    rise_end = float(ONE_CYCLE_RISE * epochs) - 1
    final = lr / ONE_CYCLE_FINAL_DIV
    if t <= rise_end:
        start, end, pct = lr, max_lr, (t / rise_end if rise_end > 0 else 1.0)
    else:
        start, end, pct = max_lr, final, (t - rise_end) / max(1e-12, (epochs - 1) - rise_end)
    return end + (start - end) * (1 + math.cos(math.pi * pct)) / 2
