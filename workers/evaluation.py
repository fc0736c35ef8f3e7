"""The kept weights measured on the held-out splits when training ends: the job's `evaluation`."""

from __future__ import annotations

import torch
from torch import nn

from modelzoo import read_outputs
from modelzoo.metrics import score
from workers.data import TrainingData

EVAL_ROWS = 8192  # rows per forward pass: the split may be large, a pass's activations should not be
# regression: this many (actual, predicted) pairs of the first target are kept for the dashboard's scatter
# plot; few enough that a page of 200 jobs stays light
SAMPLE_ROWS = 64


@torch.no_grad()
def evaluate_splits(net: nn.Module, data: TrainingData, spec) -> dict | None:
    """{"validation": measures, "test": measures} for the splits the job holds out (None without any).

    In eval mode (dropout off, batch norm's running statistics), as /predict answers; the network is
    left in eval mode, as it is stored.
    """
    splits = {"validation": (data.x_val, data.y_val), "test": (data.x_test, data.y_test)}
    present = {name: xy for name, xy in splits.items() if xy[0] is not None}
    if not present:
        return None
    net.eval()
    return {name: measure(net, x, y, spec) for name, (x, y) in present.items()} | {
        name: None for name in splits if name not in present
    }


def measure(net: nn.Module, x: torch.Tensor, y: torch.Tensor, spec) -> dict:
    outputs = torch.cat([net(chunk) for chunk in x.split(EVAL_ROWS)])  # x: raw rows; net[0] transforms them
    answers = read_outputs(outputs, spec.task, spec.loss, spec.model.output_activation)
    arrays = {name: t.double().cpu().numpy() if t.is_floating_point() else t.cpu().numpy() for name, t in answers.items()}
    measures = score(arrays, y.cpu().numpy(), spec.task)
    if spec.task == "regression":
        actual = y[:SAMPLE_ROWS].reshape(min(len(y), SAMPLE_ROWS), -1)[:, 0]
        predicted = arrays["predictions"][:SAMPLE_ROWS].reshape(len(actual), -1)[:, 0]
        measures["sample"] = {"actual": actual.double().cpu().tolist(), "predicted": predicted.tolist()}
    return measures
