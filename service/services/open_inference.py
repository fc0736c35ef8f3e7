"""Open Inference Protocol v2 on the prediction cache: metadata, Triton's config and index, and inference on JSON
or binary tensors."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from service.db import session_scope
from service.errors import FitserveError, InvalidField, NotFound
from service.models import JobStatus
from service.repositories.model_index import list_models
from service.schemas.limits import LIMITS
from service.schemas.spec import JobSpec
from service.schemas.v2 import (
    MODEL_VERSION,
    InferInputTensor,
    InferOutputTensor,
    InferRequest,
    InferResponse,
    ModelMetadata,
    RepositoryModel,
    TensorMetadata,
)
from service.services.inference_stats import InferenceStats
from service.services.jobs import resolve_model_name
from service.services.predictions import AnswerLimits, ModelCache, predict_tensors
from service.services.tensors import DTYPES, INPUT_NAME, binary_size, check_all_read, encode_binary, read_binary, wants_binary

if TYPE_CHECKING:
    import torch

DATATYPES = {"torch.float32": "FP32", "torch.int64": "INT64"}  # by str(dtype): torch loads at the first answer


def output_metadata(spec: JobSpec) -> list[TensorMetadata]:
    width = spec.model.out_features
    if spec.task == "regression":
        return [TensorMetadata(name="predictions", datatype="FP32", shape=[-1] if width == 1 else [-1, width])]
    classes = 2 if spec.loss == "bce" else width
    return [
        TensorMetadata(name="predictions", datatype="INT64", shape=[-1]),
        TensorMetadata(name="probabilities", datatype="FP32", shape=[-1, classes]),
    ]


def check_version(version: str | None) -> None:
    """A job's model has one version; any other is the protocol's 404."""
    if version is not None and version != MODEL_VERSION:
        raise NotFound(f"no version {version!r} of this model; its only version is {MODEL_VERSION!r}")


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


def config_tensor(tensor: TensorMetadata) -> dict:
    """Triton's tensor config: dims leave out the batch dimension; a scalar per row is dims [1] reshaped to []."""
    dims = tensor.shape[1:]
    entry = {"name": tensor.name, "data_type": f"TYPE_{tensor.datatype}", "dims": dims or [1]}
    return entry if dims else {**entry, "reshape": {"shape": []}}


def model_config(cache: ModelCache, name: str, owner_id: str | None, limits: AnswerLimits) -> dict:
    """Triton's model configuration; `max_batch_size` is the most rows one request may send (rows, memory and
    response caps)."""
    meta = model_metadata(cache, name, owner_id)
    model = cache.get(job_id_for(cache, name, owner_id), owner_id)
    return {
        "name": name,
        "platform": meta.platform,
        "backend": meta.platform,
        "version_policy": {"specific": {"versions": [int(MODEL_VERSION)]}},
        "max_batch_size": max(1, min(LIMITS.max_predict_rows, limits.rows_that_fit(model))),
        "input": [config_tensor(t) for t in meta.inputs],
        "output": [config_tensor(t) for t in meta.outputs],
    }


def model_stats(stats: InferenceStats, name: str, owner_id: str | None) -> list[dict]:
    """Triton's statistics of one model, trained or not (so not through the cache, which loads succeeded jobs only)."""
    with session_scope(read_only=True) as s:
        return stats.of_owner(owner_id, resolve_model_name(s, name, owner_id))


def repository_index(owner_id: str | None, ready_only: bool, limit: int) -> list[RepositoryModel]:
    """The owner's newest `limit` jobs as models: READY once succeeded, else UNAVAILABLE with the job's status."""
    with session_scope(read_only=True) as s:
        rows = list_models(s, owner_id, ready_only, limit)
    return [
        RepositoryModel(name=job_id, state="READY")
        if status == JobStatus.SUCCEEDED
        else RepositoryModel(name=job_id, state="UNAVAILABLE", reason=status)
        for job_id, status in rows
    ]


def input_array(request: InferRequest, raw: memoryview) -> np.ndarray:
    """The one input tensor, from its JSON `data` or its raw bytes, in its declared shape; 422 naming the field."""
    if len(request.inputs) != 1 or request.inputs[0].name != INPUT_NAME:
        names = [t.name for t in request.inputs]
        raise InvalidField(("inputs",), f"expected one input named {INPUT_NAME!r}; got {names}")
    tensor: InferInputTensor = request.inputs[0]
    if tensor.datatype not in DTYPES:
        raise InvalidField(("inputs", 0, "datatype"), f"datatype {tensor.datatype} is not numeric; send FP32")
    if len(tensor.shape) < 1 or min(tensor.shape) < 1 or tensor.shape[0] > LIMITS.max_predict_rows:
        raise InvalidField(("inputs", 0, "shape"), f"need a batch of 1 to {LIMITS.max_predict_rows} rows")
    size = binary_size(tensor.parameters, ("inputs", 0))
    if (size is None) == (tensor.data is None):
        raise InvalidField(("inputs", 0, "data"), "send either data or parameters.binary_data_size (raw bytes)")
    if size is not None:
        array = read_binary(raw, 0, size, tensor.datatype, tensor.shape, ("inputs", 0))
        check_all_read(raw, size)
        return array.astype(np.float32)  # a copy: the body's bytes are read-only, and torch wants float32
    check_all_read(raw, 0)
    try:
        flat = np.asarray(tensor.data, dtype=np.float32).reshape(-1)
    except (ValueError, TypeError):
        raise InvalidField(("inputs", 0, "data"), "data must be numbers") from None
    if flat.size != math.prod(tensor.shape):
        raise InvalidField(("inputs", 0, "data"), f"shape {tensor.shape} needs {math.prod(tensor.shape)} values")
    return flat.reshape(tensor.shape)


@dataclass
class InferAnswer:
    """A JSON answer, or a binary one: its body and the length of the JSON header that starts it."""

    response: InferResponse | None = None
    body: bytes = b""
    header_length: int = 0


def encode_answer(name: str, request: InferRequest, answers: dict[str, torch.Tensor]) -> InferAnswer:
    """The requested outputs (all when none are named), each as JSON data or raw bytes as the request asks."""
    wanted = [(o.name, o.parameters) for o in request.outputs] if request.outputs else [(n, None) for n in answers]
    named: set[str] = set()
    for i, (output, _) in enumerate(wanted):
        if output not in answers:
            raise InvalidField(("outputs", i, "name"), f"no output {output!r}; this model has {list(answers)}")
        if output in named:  # each repeat would be the whole tensor again: a small request, a huge answer
            raise InvalidField(("outputs", i, "name"), f"output {output!r} is named twice; name each output once")
        named.add(output)
    outputs, raw = [], []
    for output, parameters in wanted:
        tensor = answers[output]
        meta = {"name": output, "shape": list(tensor.shape), "datatype": DATATYPES[str(tensor.dtype)]}
        if wants_binary(parameters, request.parameters):
            raw.append(tensor.numpy())
            outputs.append({**meta, "parameters": {"binary_data_size": raw[-1].nbytes}})
        else:
            outputs.append({**meta, "data": tensor.flatten().tolist()})
    if not raw:
        return InferAnswer(InferResponse(model_name=name, id=request.id, outputs=[InferOutputTensor(**o) for o in outputs]))
    header = {"model_name": name, "model_version": MODEL_VERSION, "outputs": outputs}
    body, length = encode_binary({**header, "id": request.id} if request.id is not None else header, raw)
    return InferAnswer(body=body, header_length=length)


@contextmanager
def timed(phases: dict[str, int], phase: str) -> Iterator[None]:
    start = time.perf_counter_ns()
    try:
        yield
    finally:
        phases[phase] = time.perf_counter_ns() - start


def infer(
    cache: ModelCache, stats: InferenceStats, name: str, owner_id: str | None, request: InferRequest,
    raw: memoryview, limits: AnswerLimits,
) -> InferAnswer:
    """The answer; 413 when the batch's forward pass or answer would exceed `limits`. Counted in `stats`."""
    job_id, phases = job_id_for(cache, name, owner_id), {}
    try:
        with timed(phases, "compute_input"):
            inputs = input_array(request, raw)
        with timed(phases, "compute_infer"):
            answers = predict_tensors(cache, job_id, owner_id, inputs, limits)
        with timed(phases, "compute_output"):
            answer = encode_answer(name, request, answers)
    except FitserveError:
        stats.record(job_id, owner_id, 0, phases, ok=False)
        raise
    stats.record(job_id, owner_id, len(inputs), phases, ok=True)
    return answer
