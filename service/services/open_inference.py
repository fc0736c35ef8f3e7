"""Open Inference Protocol v2 on the prediction cache: model metadata, and inference on JSON tensors."""

import math

import numpy as np
import torch

from service.db import session_scope
from service.errors import InvalidField, NotFound
from service.schemas.limits import LIMITS
from service.schemas.spec import JobSpec
from service.schemas.v2 import InferInputTensor, InferOutputTensor, InferRequest, InferResponse, ModelMetadata
from service.schemas.v2 import TensorMetadata
from service.services.exports import INPUT_NAME
from service.services.jobs import resolve_model_name
from service.services.predictions import ModelCache, predict_tensors

NUMERIC = {"FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}
DATATYPES = {torch.float32: "FP32", torch.int64: "INT64"}


def output_metadata(spec: JobSpec) -> list[TensorMetadata]:
    width = spec.model.out_features
    if spec.task == "regression":
        return [TensorMetadata(name="predictions", datatype="FP32", shape=[-1] if width == 1 else [-1, width])]
    classes = 2 if spec.loss == "bce" else width
    return [
        TensorMetadata(name="predictions", datatype="INT64", shape=[-1]),
        TensorMetadata(name="probabilities", datatype="FP32", shape=[-1, classes]),
    ]


def job_id_for(cache: ModelCache, name: str, owner_id: str | None) -> str:
    """The job a v2 model name means: its id (a warm cache answers without the database), or its alias."""
    try:
        cache.get(name, owner_id)
        return name
    except NotFound:
        with session_scope(read_only=True) as s:
            return resolve_model_name(s, name, owner_id)


def model_metadata(cache: ModelCache, name: str, owner_id: str | None) -> ModelMetadata:
    model = cache.get(job_id_for(cache, name, owner_id), owner_id)
    return ModelMetadata(
        name=name,
        platform="pytorch",
        inputs=[TensorMetadata(name=INPUT_NAME, datatype="FP32", shape=[-1, *model.input_shape])],
        outputs=output_metadata(model.spec),
    )


def input_array(request: InferRequest) -> np.ndarray:
    """The one input tensor as an array of its declared shape; 422 naming the field otherwise."""
    if len(request.inputs) != 1 or request.inputs[0].name != INPUT_NAME:
        names = [t.name for t in request.inputs]
        raise InvalidField(("inputs",), f"expected one input named {INPUT_NAME!r}; got {names}")
    tensor: InferInputTensor = request.inputs[0]
    if tensor.datatype not in NUMERIC:
        raise InvalidField(("inputs", 0, "datatype"), f"datatype {tensor.datatype} is not numeric; send FP32")
    if len(tensor.shape) < 1 or min(tensor.shape) < 1 or tensor.shape[0] > LIMITS.max_predict_rows:
        raise InvalidField(("inputs", 0, "shape"), f"need a batch of 1 to {LIMITS.max_predict_rows} rows")
    try:
        flat = np.asarray(tensor.data, dtype=np.float32).reshape(-1)
    except (ValueError, TypeError):
        raise InvalidField(("inputs", 0, "data"), "data must be numbers") from None
    if flat.size != math.prod(tensor.shape):
        raise InvalidField(("inputs", 0, "data"), f"shape {tensor.shape} needs {math.prod(tensor.shape)} values")
    return flat.reshape(tensor.shape)


def infer(cache: ModelCache, name: str, owner_id: str | None, request: InferRequest, limit: int) -> InferResponse:
    """The answer tensors; 413 when the batch's forward pass would need more than `limit` bytes."""
    answers = predict_tensors(cache, job_id_for(cache, name, owner_id), owner_id, input_array(request), limit)
    wanted = [o.name for o in request.outputs] if request.outputs else list(answers)
    for i, output in enumerate(wanted):
        if output not in answers:
            raise InvalidField(("outputs", i, "name"), f"no output {output!r}; this model has {list(answers)}")
    outputs = [
        InferOutputTensor(name=n, shape=list(t.shape), datatype=DATATYPES[t.dtype], data=t.flatten().tolist())
        for n, t in ((n, answers[n]) for n in wanted)
    ]
    return InferResponse(model_name=name, id=request.id, outputs=outputs)
