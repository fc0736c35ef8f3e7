"""`POST /v1/jobs/{id}/evaluate`: a succeeded job's network measured on data the caller brings.

The measures are those of the job's own `evaluation` (modelzoo/metrics.py), through the same loaded
network, eval mode and limits as `/predict`.
"""

from __future__ import annotations

import math

import numpy as np
from sqlalchemy.orm import Session

from modelzoo.metrics import score
from service.dataset_files import read_npz
from service.errors import InvalidField
from service.schemas.evaluation import EvaluateRequest
from service.services.datasets import get_dataset
from modelzoo.memory import format_bytes
from service.errors import PayloadTooLarge
from service.services.predictions import AnswerLimits, LoadedModel, ModelCache, check_rows, run_network

CLASS_ROW_BYTES = 128  # one class's per_class entry as JSON


def evaluate(
    session: Session, cache: ModelCache, job_id: str, owner_id: str | None, body: EvaluateRequest, limits: AnswerLimits
):
    """The measures of the job's answers on the body's rows; 404 for another owner's job or dataset."""
    model = cache.get(job_id, owner_id)
    check_measures_bytes(model, limits.response_bytes)
    if body.dataset_id is not None:
        x, y = read_npz(get_dataset(session, body.dataset_id, owner_id).data)
        x_field = y_field = ("dataset_id",)
    else:
        x, y = body.x, body.y
        x_field, y_field = ("x",), ("y",)
    check_rows(model, len(x), limits)
    targets = check_targets(model, np.asarray(y, dtype=np.float64), y_field)
    try:
        answers = run_network(model, x)
    except InvalidField as exc:  # /predict's check of the rows' shape, which names its own field
        raise InvalidField(x_field, exc.detail[0]["msg"]) from None
    arrays = {name: t.double().numpy() if t.is_floating_point() else t.numpy() for name, t in answers.items()}
    measures = score(arrays, targets, model.spec.task)
    if not all(math.isfinite(v) for v in measures.values() if isinstance(v, float)):
        raise InvalidField(y_field, "the targets are too large to measure against: a measure overflows float64")
    return measures


def check_measures_bytes(model: LoadedModel, limit: int) -> None:
    """413 naming FITSERVE_MAX_RESPONSE_BYTES when a classifier's confusion matrix (k x k counts) and per-class rows
    would make a larger answer: 4,096 classes are 16.8M counts."""
    spec = model.spec
    if spec.task != "classification":
        return
    k = 2 if spec.loss == "bce" else spec.model.out_features
    need = k * k * 4 + k * CLASS_ROW_BYTES  # a count as JSON is at least "0, "
    if need > limit:
        raise PayloadTooLarge(
            f"the measures of a {k}-class model (a {k} x {k} confusion matrix) would be about {format_bytes(need)}; "
            f"the response budget (FITSERVE_MAX_RESPONSE_BYTES) is {format_bytes(limit)}"
        )


def check_targets(model: LoadedModel, y: np.ndarray, field: tuple[str, ...]) -> np.ndarray:
    """Targets the job's task can be measured on: class labels 0..k-1, or as many values per row as outputs."""
    spec = model.spec
    if not np.isfinite(y).all():
        raise InvalidField(field, "targets must be finite numbers")
    if spec.task == "classification":
        classes = 2 if spec.loss == "bce" else spec.model.out_features
        labels = y.reshape(len(y), -1)
        if labels.shape[1] != 1 or not np.all(np.mod(labels, 1) == 0) or labels.min() < 0 or labels.max() >= classes:
            raise InvalidField(field, f"classification targets are one class label per row, 0..{classes - 1}")
        return labels.reshape(-1).astype(np.int64)
    width = spec.model.out_features
    if int(np.prod(y.shape[1:])) != width:
        raise InvalidField(field, f"each row needs {width} target value(s); got shape {list(y.shape[1:])}")
    return y.reshape(len(y), width)
