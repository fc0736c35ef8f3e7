"""Early stopping decided on the training device, so it costs no host sync per epoch.

At each recorded epoch `observe` takes the monitored figure by name from the epoch's figures (device tensors),
as a score to minimize (negated in mode max), asks `improved = score < best - min_delta` and, with torch.where,
updates the best value, the epoch it came from, the count of recorded epochs without improvement,
the epoch where that count reached `patience` (then everything freezes), and a copy of the best
epoch's weights. The same code keeps one job's state (0-d tensors, weights as the parameters) and
K members' (shape (K,), weights (K, ...)), so a member stops where the same spec trained alone stops.
The host reads the decision back with the losses, once per report (`settle`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from service.schemas.objectives import curve_metrics

if TYPE_CHECKING:
    from service.curves import Columns

FIELDS = ("best", "bad", "best_epoch", "stop_epoch")


class EarlyStopping:
    def __init__(self, spec, has_validation: bool, weights: list[torch.Tensor], members: int | None = None):
        """`members` None: one job, weights are its parameters; else weights are stacked (K, ...)."""
        settings = spec.early_stopping
        self.monitor = settings.monitor_for(has_validation)
        if self.monitor not in curve_metrics(spec, has_validation):  # the service refuses it at submit
            raise ValueError(f"early_stopping.monitor is {self.monitor} but the job records no such figure")
        self.sign = 1.0 if settings.mode_for(has_validation) == "min" else -1.0  # best is the lowest score
        device, shape = weights[0].device, (() if members is None else (members,))
        self.patience = settings.patience
        self.min_delta = torch.tensor(settings.min_delta, dtype=torch.float32, device=device)
        self.best = torch.full(shape, math.inf, dtype=torch.float32, device=device)  # the best score, sign * metric
        self.bad = torch.zeros(shape, dtype=torch.int64, device=device)  # recorded epochs since the best
        self.best_epoch = torch.zeros(shape, dtype=torch.int64, device=device)  # 0: none yet
        self.stop_epoch = torch.zeros(shape, dtype=torch.int64, device=device)  # 0: patience not run out
        self.weights = [w.detach().clone() for w in weights]
        # host side, as of the latest report: where each member stopped (0: not), its best epoch's point
        self.stops: list[int] = [0] * (members or 1)
        self.best_points: list[dict | None] = [None] * (members or 1)

    @torch.no_grad()
    def observe(self, figures: dict[str, torch.Tensor | None], epoch, weights: list[torch.Tensor]) -> None:
        """One recorded epoch's figures by curve name (0-d, or (K,) stacked); `epoch` an int, or a device tensor
        inside a CUDA graph. In place, no sync."""
        score = figures[self.monitor].reshape(self.best.shape) * self.sign  # one job's figures may come as (1,)
        running = self.stop_epoch == 0
        improved = running & (score < self.best - self.min_delta)  # NaN never improves
        self.best.copy_(torch.where(improved, score, self.best))
        self.best_epoch.copy_(torch.where(improved, epoch, self.best_epoch))
        self.bad.copy_(torch.where(improved, 0, torch.where(running, self.bad + 1, self.bad)))
        self.stop_epoch.copy_(torch.where(running & (self.bad >= self.patience), epoch, self.stop_epoch))
        for w, best in zip(weights, self.weights):
            mask = improved.view(*improved.shape, *([1] * (w.dim() - improved.dim())))
            best.copy_(torch.where(mask, w, best))

    def settle(self, points: list[Columns]) -> list[Columns]:
        """After a read-back: each member's new points up to the epoch it stopped at; one host sync."""
        stops, bests = torch.stack([self.stop_epoch, self.best_epoch]).reshape(2, -1).tolist()
        kept = []
        for k, member in enumerate(points):
            if stops[k]:
                member = member.through_epoch(stops[k])
            self.stops[k] = stops[k]
            best = member.at_epoch(bests[k])
            self.best_points[k] = best.as_dict() if best is not None else self.best_points[k]
            kept.append(member)
        return kept

    def stopped(self, k: int = 0) -> bool:
        return self.stops[k] > 0

    def has_best(self, k: int = 0) -> bool:
        """False when no recorded epoch improved (say, val_loss NaN throughout): the final weights stay."""
        return self.best_points[k] is not None

    def outcome(self, k: int, epochs: int) -> dict:
        """What the job records: where it stopped (None: it reached its last epoch) and the epoch it keeps."""
        best = self.best_points[k]
        return {
            "stopped_early_at": self.stops[k] if 0 < self.stops[k] < epochs else None,
            "best_epoch": best["epoch"] if best else None,
            "best_metrics": best,
        }

    # ------------------------------------------------------------ checkpoints

    def state(self, k: int | None = None) -> dict:
        """Everything to resume: one job's (k None) or member k's, in the same 0-d form."""
        at = () if k is None else (k,)
        state = {name: getattr(self, name)[at].clone() for name in FIELDS}
        state["weights"] = [w[at].clone() for w in self.weights]
        state["best_point"] = self.best_points[k or 0]
        return state

    def load_state(self, state: dict, k: int | None = None) -> None:
        at = () if k is None else (k,)
        for name in FIELDS:
            getattr(self, name)[at].copy_(state[name])
        for w, saved in zip(self.weights, state["weights"]):
            w[at].copy_(saved)
        self.best_points[k or 0] = state["best_point"]
