"""A succeeded job's network as ONNX, answering what `/predict` answers, its spec and classes in `metadata_props`."""

import copy
import io
import json
import threading
import warnings
from importlib.metadata import PackageNotFoundError, version

import onnx
import torch
from torch import nn

from modelzoo import read_outputs
from modelzoo.memory import format_bytes
from modelzoo.weights import SPEC_KEY
from service.errors import PayloadTooLarge
from service.schemas.spec import JobSpec
from service.services.predictions import ModelCache
from service.services.tensors import INPUT_NAME

GRAPH_BYTES = 64 * 1024  # what an exported graph holds beside its weights: nodes, names, metadata
EXPORT_LOCK = threading.Lock()  # the exporter keeps process-wide state while it traces


class Answering(nn.Module):
    """The network followed by the reading of its outputs that `/predict` does, so the graph gives the same answers."""

    def __init__(self, net: nn.Module, spec: JobSpec):
        super().__init__()
        self.net = net
        self.task, self.loss, self.output_activation = spec.task, spec.loss, spec.model.output_activation

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(read_outputs(self.net(x), self.task, self.loss, self.output_activation).values())


def class_labels(spec: JobSpec) -> list[int] | None:
    """The labels `predictions` takes, in the order of the `probabilities` columns; None for regression."""
    if spec.task == "regression":
        return None
    return [0, 1] if spec.loss == "bce" else list(range(spec.model.out_features))


def fitserve_version() -> str:
    try:
        return version("fitserve")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def metadata_props(spec: JobSpec, job_id: str) -> dict[str, str]:
    """What a runtime cannot read from the graph: where the model came from and what its outputs mean."""
    props = {
        SPEC_KEY: json.dumps(spec.model_dump(mode="json")),
        "fitserve.job_id": job_id,
        "fitserve.version": fitserve_version(),
        "fitserve.task": spec.task,
    }
    classes = class_labels(spec)
    if classes is not None:
        props["fitserve.classes"] = json.dumps(classes)
    return props


def with_metadata(blob: bytes, props: dict[str, str]) -> bytes:
    model = onnx.load_model_from_string(blob)
    onnx.helper.set_model_props(model, props)
    return model.SerializeToString()


def output_names(spec: JobSpec) -> list[str]:
    return ["predictions"] if spec.task == "regression" else ["predictions", "probabilities"]


def export_onnx(cache: ModelCache, job_id: str, owner_id: str | None, limit: int) -> bytes:
    """ONNX bytes with input `input` (batch, *sample shape), outputs named as `/predict` names them, and
    `metadata_props` (see docs/artifacts.md); 413 when the graph would exceed `limit` bytes (its weights and more)."""
    model = cache.get(job_id, owner_id)
    if (need := model.nbytes + GRAPH_BYTES) > limit:
        raise PayloadTooLarge(
            f"this model's ONNX graph would be about {format_bytes(need)}; the response budget "
            f"(FITSERVE_MAX_RESPONSE_BYTES) is {format_bytes(limit)}"
        )
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
    return with_metadata(buffer.getvalue(), metadata_props(model.spec, job_id))
