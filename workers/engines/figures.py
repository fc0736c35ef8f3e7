"""An epoch's figures from outputs a step already has, on the device: the correct count and the spec's `metrics`.

Training figures come from the epoch's own outputs (each batch's by the weights of its step, as the loss and the
accuracy are: no second forward pass); validation figures from the pass after the epoch. Members stacked,
(K, rows, ...) in, (K,) per figure out, with no host sync, so a CUDA graph captures them too. The definitions
are the final evaluation's (modelzoo/metrics.py, scikit-learn's): macro precision, recall and F1 with 0 where
undefined, R² of a constant target 1 for a perfect fit else 0, log loss on probabilities clipped to float64's
eps, ROC AUC by average ranks (two classes; NaN, no value on the curve, when a split holds one class only).
Sums are float64, as the evaluation's numpy is.
"""

from __future__ import annotations

import torch

from modelzoo.layers import TargetScale
from modelzoo.outputs import class_probabilities
from workers.engines.steps import count_correct

EPS = torch.finfo(torch.float64).eps


class Figures:
    def __init__(self, spec, nets: list, device: torch.device):
        """`nets`: the members' networks, whose target scales (regression) turn errors into the targets' units."""
        self.metrics = tuple(spec.metrics)
        self.classify = spec.task == "classification"
        self.loss, self.activation = spec.loss, spec.model.output_activation
        scaled = self.metrics and isinstance(nets[0][-1], TargetScale)
        # (K, targets): a standardized error times the std is the error in the targets' units
        self.std = torch.stack([net[-1].std for net in nets]).to(device, torch.float64) if scaled else None

    def __call__(self, out: torch.Tensor, y: torch.Tensor, prefix: str = "") -> dict[str, torch.Tensor]:
        """`out` (K, rows, outputs) against `y` (K, rows, ...): {prefix + name: (K,)}."""
        figures = {}
        if self.classify:
            figures["correct"] = count_correct(out, y, self.loss, self.activation, stacked=True)
            if self.metrics:
                figures |= classification_figures(self.metrics, out, y, self.loss, self.activation)
        elif self.metrics:
            figures |= regression_figures(self.metrics, out, y, self.std)
        return {prefix + name: value for name, value in figures.items()}

    def keep(self, index: torch.Tensor) -> None:
        """Only members `index` stay (a stack that shrinks)."""
        if self.std is not None:
            self.std = self.std[index]


def regression_figures(names, out: torch.Tensor, y: torch.Tensor, std: torch.Tensor | None) -> dict:
    """mse, rmse, mae, r2, each averaged over targets (scikit-learn's "uniform_average")."""
    true = y.reshape(out.shape).double()  # (K, rows, targets)
    err = out.double() - true
    if std is not None:
        err, true = err * std[:, None, :], true * std[:, None, :]
    figures = {}
    ss_res = err.square().sum(dim=1)  # (K, targets)
    mse_each = ss_res / out.shape[1]
    if "mse" in names:
        figures["mse"] = mse_each.mean(dim=-1)
    if "rmse" in names:
        figures["rmse"] = mse_each.sqrt().mean(dim=-1)
    if "mae" in names:
        figures["mae"] = err.abs().mean(dim=1).mean(dim=-1)
    if "r2" in names:
        ss_tot = (true - true.mean(dim=1, keepdim=True)).square().sum(dim=1)
        r2_each = torch.where(ss_tot > 0, 1 - ss_res / ss_tot, (ss_res == 0).double())
        figures["r2"] = r2_each.mean(dim=-1)
    return figures


def classification_figures(names, out: torch.Tensor, y: torch.Tensor, loss: str, activation: str | None) -> dict:
    """log_loss, macro precision/recall/F1, and two-class roc_auc, from the classes' probabilities."""
    K, rows = out.shape[:2]
    # float32 probabilities, read as the evaluation reads them (modelzoo/outputs.py), then float64
    probs = class_probabilities(out.reshape(K * rows, -1), loss, activation).reshape(K, rows, -1)
    true = y.reshape(K, rows).long()
    figures = {}
    if "log_loss" in names:
        picked = probs.double().clamp(EPS, 1 - EPS).gather(2, true[..., None])
        figures["log_loss"] = -picked.log().mean(dim=(1, 2))
    if {"precision", "recall", "f1"} & set(names):
        figures |= macro_scores(probs.argmax(dim=2), true, probs.shape[2])
    if "roc_auc" in names:
        figures["roc_auc"] = roc_auc(probs[..., 1].double().contiguous(), true)
    return {name: figures[name] for name in names}


def macro_scores(pred: torch.Tensor, true: torch.Tensor, k: int) -> dict:
    """precision, recall and F1 per class from the (K, k, k) confusion counts, averaged over the k classes."""
    cells = torch.zeros(pred.shape[0], k * k, dtype=torch.int64, device=pred.device)
    matrix = cells.scatter_add_(1, true * k + pred, torch.ones_like(true)).view(-1, k, k).double()  # true x predicted
    tp = matrix.diagonal(dim1=1, dim2=2)
    precision, recall = ratio(tp, matrix.sum(dim=1)), ratio(tp, matrix.sum(dim=2))
    f1 = ratio(2 * precision * recall, precision + recall)
    return {"precision": precision.mean(dim=1), "recall": recall.mean(dim=1), "f1": f1.mean(dim=1)}


def ratio(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a / b, 0 where b is 0 (scikit-learn's zero_division=0)."""
    return torch.where(b > 0, a / b, torch.zeros_like(a))


def roc_auc(scores: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """(K, rows) scores of class 1: the chance a positive outranks a negative, ties half; NaN without both."""
    ordered = scores.sort(dim=1).values
    low = torch.searchsorted(ordered, scores)
    high = torch.searchsorted(ordered, scores, right=True)
    ranks = (low + high + 1).double() / 2  # 1-based, averaged over a run of equal scores
    positive = true == 1
    p = positive.sum(dim=1).double()
    n = true.shape[1] - p
    return ((ranks * positive).sum(dim=1) - p * (p + 1) / 2) / (p * n)
