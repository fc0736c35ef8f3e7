"""A succeeded job's network as ONNX, answering what `/predict` answers."""

import copy
import io
import threading
import warnings

import torch
from torch import nn

from modelzoo import read_outputs
from service.schemas.spec import JobSpec
from service.services.predictions import ModelCache

INPUT_NAME = "input"
EXPORT_LOCK = threading.Lock()  # the exporter keeps process-wide state while it traces


class Answering(nn.Module):
    """The network followed by the reading of its outputs that `/predict` does, so the graph gives the same answers."""

    def __init__(self, net: nn.Module, spec: JobSpec):
        super().__init__()
        self.net = net
        self.task, self.loss, self.output_activation = spec.task, spec.loss, spec.model.output_activation

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(read_outputs(self.net(x), self.task, self.loss, self.output_activation).values())


def output_names(spec: JobSpec) -> list[str]:
    return ["predictions"] if spec.task == "regression" else ["predictions", "probabilities"]


def export_onnx(cache: ModelCache, job_id: str, owner_id: str | None) -> bytes:
    """ONNX bytes with input `input` (batch, *sample shape) and outputs named as `/predict` names them."""
    model = cache.get(job_id, owner_id)
    # the cached network serves predictions on other threads meanwhile; tracing gets a copy of its own
    graph = Answering(copy.deepcopy(model.net), model.spec).eval()
    names = output_names(model.spec)
    example = torch.zeros(2, *model.input_shape)
    buffer = io.BytesIO()
    with EXPORT_LOCK, warnings.catch_warnings():
        # the TorchScript exporter is deprecated, but the dynamo one needs onnxscript and torch.export for no gain here
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            graph,
            (example,),
            buffer,
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=names,
            dynamic_axes={name: {0: "batch"} for name in [INPUT_NAME, *names]},
        )
    return buffer.getvalue()
