"""Predictions from finished jobs, served from an in-memory LRU cache of loaded networks.

A succeeded job's weights never change, so once a network is loaded a request reads nothing from
the database: the cache entry carries the owner and the spec the answer needs.

A small batch on a small dense network is quicker to run than to hand to a worker thread (a forward
pass of a few rows through an MLP takes tens of microseconds, the hop about a hundred, more under
load); `LoadedModel.quick_rows` says up to how many rows the API may run it on its event loop.

Every other batch runs on a worker thread, in chunks of at most CHUNK_BYTES of activations, and a
request whose forward pass would need more than FITSERVE_MAX_PREDICT_BYTES in all is refused (413)
before anything runs: a convolution's feature maps can make one row cost megabytes (modelzoo.memory).
So is one whose answer would exceed FITSERVE_MAX_RESPONSE_BYTES: 10,000 rows of 4,096 class probabilities
are about a gigabyte of JSON.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

import modelzoo
from modelzoo.memory import format_bytes, forward_bytes_per_row, multiply_adds_per_row
from modelzoo.weights import load_weights
from service.db import session_scope
from service.errors import Conflict, InvalidField, PayloadTooLarge
from service.models import JobStatus
from service.schemas.spec import JobSpec, model_input_shape
from service.settings import Settings
from service.services.jobs import get_job, read_weights
from service.telemetry import PREDICT_SECONDS

if TYPE_CHECKING:  # torch is imported at the first prediction: the API's process starts without it (a second)
    import torch
    from torch import nn


@dataclass
class LoadedModel:
    owner_id: str | None
    spec: JobSpec
    net: nn.Module
    input_shape: tuple[int, ...]  # one sample, as the network takes it
    nbytes: int
    quick_rows: int  # batches up to this many rows are cheap enough to run without a worker thread
    row_bytes: int  # activations one row's forward pass needs at its widest layer
    answer_bytes: int  # bytes one row's answer takes as JSON, every output counted


@dataclass(frozen=True)
class AnswerLimits:
    """What one prediction may cost: its forward pass's activations and its answer's bytes."""

    forward_bytes: int  # FITSERVE_MAX_PREDICT_BYTES
    response_bytes: int  # FITSERVE_MAX_RESPONSE_BYTES

    @classmethod
    def of(cls, settings: Settings) -> "AnswerLimits":
        return cls(settings.MAX_PREDICT_BYTES, settings.MAX_RESPONSE_BYTES)

    def rows_that_fit(self, model: "LoadedModel") -> int:
        return min(self.forward_bytes // model.row_bytes, self.response_bytes // model.answer_bytes)


# A batch is quick when rows x multiply-adds per row is at most this (measured: under ~100 µs on one
# core, inputs converted and answers listed); past QUICK_MAX_ROWS the nested lists alone take longer.
QUICK_MAX_MULTIPLY_ADDS = 2**16
QUICK_MAX_ROWS = 64
JSON_NUMBER_BYTES = 24  # a float as JSON text with its separator, at most ("-1.2345678901234567e-300, ")
# rows per forward pass: enough to amortise torch's per-call cost, few enough that a request holds little
CHUNK_BYTES = 32 * 1024 * 1024


def count_quick_rows(spec: JobSpec) -> int:
    """A convolution's work is its weights times the positions of its map, so a CNN is rarely quick."""
    return min(QUICK_MAX_ROWS, QUICK_MAX_MULTIPLY_ADDS // multiply_adds_per_row(spec.model))


def answer_numbers_per_row(spec: JobSpec) -> int:
    """Numbers in one row's answer: the outputs, and for a classifier its label too (modelzoo.read_outputs)."""
    if spec.task == "regression":
        return spec.model.out_features
    return 1 + (2 if spec.loss == "bce" else spec.model.out_features)


def load_model(job_id: str, owner_id: str | None) -> LoadedModel:
    with session_scope(read_only=True) as s:
        job = get_job(s, job_id, owner_id)
        if job.status != JobStatus.SUCCEEDED:
            raise Conflict(f"job {job_id} is {job.status}; predictions need a succeeded job")
        blob = read_weights(s, job_id, owner_id)
        spec = JobSpec.model_validate(job.spec)
    net = load_weights(modelzoo.build_network(spec.model, spec.data.standardize_target), blob).eval()
    model = spec.model
    answer_bytes = answer_numbers_per_row(spec) * JSON_NUMBER_BYTES
    return LoadedModel(
        owner_id, spec, net, model_input_shape(model), len(blob), count_quick_rows(spec), forward_bytes_per_row(model),
        answer_bytes,
    )


def check_rows(model: LoadedModel, rows: int, limits: AnswerLimits) -> None:
    """413 naming FITSERVE_MAX_PREDICT_BYTES or FITSERVE_MAX_RESPONSE_BYTES when `rows` would need more."""
    need, limit = rows * model.row_bytes, limits.forward_bytes
    if need > limit:
        raise PayloadTooLarge(
            f"{rows} rows through this model would need about {format_bytes(need)} of activations; the limit "
            f"(FITSERVE_MAX_PREDICT_BYTES) is {format_bytes(limit)}: send at most {limits.rows_that_fit(model)} rows "
            "per request"
        )
    need, limit = rows * model.answer_bytes, limits.response_bytes
    if need > limit:
        raise PayloadTooLarge(
            f"the answer for {rows} rows of this model would be about {format_bytes(need)}; the response budget "
            f"(FITSERVE_MAX_RESPONSE_BYTES) is {format_bytes(limit)}: send at most {limits.rows_that_fit(model)} rows "
            "per request"
        )


class ModelCache:
    """Loaded networks by job id, least recently used evicted past `max_bytes`."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.entries: OrderedDict[str, LoadedModel] = OrderedDict()
        self.lock = threading.Lock()
        self.size = 0

    def get(self, job_id: str, owner_id: str | None) -> LoadedModel:
        entry = self.find(job_id, owner_id)
        if entry is not None:
            return entry
        entry = load_model(job_id, owner_id)  # raises 404 for another owner's job
        with self.lock:
            if job_id not in self.entries:
                self.entries[job_id] = entry
                self.size += entry.nbytes
            while self.size > self.max_bytes and len(self.entries) > 1:
                _, old = self.entries.popitem(last=False)
                self.size -= old.nbytes
        return entry

    def forget(self, job_ids: list[str]) -> None:
        """Drop the networks of deleted jobs."""
        with self.lock:
            for job_id in job_ids:
                entry = self.entries.pop(job_id, None)
                self.size -= entry.nbytes if entry is not None else 0

    def find(self, job_id: str, owner_id: str | None) -> LoadedModel | None:
        """The owner's network if it is loaded already; never reads the database."""
        with self.lock:
            entry = self.entries.get(job_id)
            if entry is None or entry.owner_id != owner_id:
                return None
            self.entries.move_to_end(job_id)
            return entry


def as_batch(inputs: list, input_shape: tuple[int, ...]) -> torch.Tensor:
    """Rows of any nesting whose size per row matches the network's input; 422 otherwise."""
    try:
        arr = np.asarray(inputs, dtype=np.float32)
    except (ValueError, TypeError):
        raise InvalidField(("inputs",), "inputs must be a rectangular list of numbers") from None
    per_row = int(np.prod(input_shape))
    if arr.ndim == 1 and per_row == 1:
        arr = arr[:, None]
    if arr.ndim < 2 or int(np.prod(arr.shape[1:])) != per_row:
        raise InvalidField(
            ("inputs",), f"each input must hold {per_row} numbers (shape {list(input_shape)}); got shape {list(arr.shape[1:])}"
        )
    if not np.isfinite(arr).all():
        raise InvalidField(("inputs",), "inputs must be finite numbers")
    import torch

    return torch.from_numpy(arr).reshape(len(arr), *input_shape)


def predict_tensors(
    cache: ModelCache, job_id: str, owner_id: str | None, inputs, limits: AnswerLimits
) -> dict[str, torch.Tensor]:
    """The named answer tensors for a batch of inputs (nested lists or an array), within `limits`."""
    with PREDICT_SECONDS.time():
        model = cache.get(job_id, owner_id)
        check_rows(model, len(inputs), limits)
        return run_network(model, inputs)


def run_network(model: LoadedModel, inputs) -> dict[str, torch.Tensor]:
    import torch

    x = as_batch(inputs, model.input_shape)
    rows = max(1, CHUNK_BYTES // model.row_bytes)
    with torch.inference_mode():
        outputs = torch.cat([model.net(chunk) for chunk in x.split(rows)])  # (N, out_features)
    if not torch.isfinite(outputs).all():  # finite inputs can still overflow float32 inside the network
        bad = int((~torch.isfinite(outputs)).any(dim=1).nonzero()[0, 0])
        raise InvalidField(("inputs",), f"the model's answer for row {bad} is not a finite number: its inputs are "
                           "too large for this network in float32")
    spec = model.spec
    return modelzoo.read_outputs(outputs, spec.task, spec.loss, spec.model.output_activation)


def predict(cache: ModelCache, job_id: str, owner_id: str | None, inputs: list, limits: AnswerLimits) -> dict:
    """The answer as lists, loading the network if need be (so: on a worker thread)."""
    return as_lists(predict_tensors(cache, job_id, owner_id, inputs, limits))


def predict_loaded(model: LoadedModel, inputs: list, limits: AnswerLimits) -> dict:
    """The answer of a network already loaded, for a batch of at most `model.quick_rows` rows."""
    with PREDICT_SECONDS.time():
        check_rows(model, len(inputs), limits)
        return as_lists(run_network(model, inputs))


def as_lists(answers: dict[str, torch.Tensor]) -> dict:
    return {name: t.tolist() for name, t in answers.items()}
