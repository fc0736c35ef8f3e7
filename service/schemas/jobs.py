"""What the jobs and datasets endpoints take and answer (the spec itself is in spec.py; the answers the client reads,
JobPublic, MetricsPage, PredictResponse ..., are the client package's: client/fitserve/schemas.py)."""

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from fitserve.schemas import JobPublic, Progress
from service.schemas.data import Strict
from service.schemas.limits import LIMITS
from service.schemas.lints import DatasetMoments, job_warnings
from service.schemas.numbers import Numbers
from service.schemas.spec import MAX_TAGS_PARSED, JobSpec, TagKey, TagValue
from service.schemas.webhooks import Notify


class JobCreate(JobSpec):
    """The body of `POST /v1/jobs`: the spec, and beside it whom to tell how the job went (not in the spec, which
    travels into weights files, ONNX exports and sweep members, while a webhook url may be a secret)."""

    notify: Notify | None = Field(None, description="webhooks: a signed POST to url at each of events (README)")


def job_public(job, datasets: DatasetMoments | None = None) -> JobPublic:
    """What the API answers for a stored job (with the lints of its spec; `datasets` as `moments_wanted` names them:
    services.jobs.public_jobs reads them)."""
    return JobPublic(
        id=job.id,
        sweep_id=job.sweep_id,
        continued_from=job.continued_from,
        alias=job.alias,
        name=job.name,
        status=job.status,
        priority=job.priority,
        tags=job.tags or {},
        spec=job.spec,
        warnings=job_warnings(job.id, job.spec, datasets),
        progress=Progress(epoch=job.epoch, epochs=job.epochs),
        metrics=job.latest_metrics,
        stopped_early_at=job.stopped_early_at,
        best_epoch=job.best_epoch,
        stop_reason=job.stop_reason,
        trained_seconds=job.trained_seconds or 0.0,
        best_metrics=job.best_metrics,
        evaluation=job.evaluation,
        device=job.device,
        node=job.node,
        execution=job.execution,
        error=job.error,
        attempt=job.attempt,
        max_attempts=job.max_attempts,
        interruptions=job.interruptions or 0,
        yields=job.yields or 0,
        cancel_requested=job.cancel_requested,
        notify=job.notify,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


class ContinueRequest(Strict):
    """The body of `POST /v1/jobs/{id}/continue`: how many more epochs, and any change to the optimizer's settings."""

    epochs: Annotated[int, Field(ge=1, le=LIMITS.max_epochs)] = Field(description="epochs to train past the parent's")
    lr: float | None = Field(None, gt=0.0, le=100.0, description="a new learning rate (short for optimizer.lr)")
    optimizer: dict[str, Any] | None = Field(
        None, description="fields of the spec's optimizer to change (lr, momentum, weight_decay, schedule, "
        "clip_grad_norm); the kind stays the parent's, whose state the job takes"
    )
    name: str | None = Field(None, max_length=200, description="default: the parent's name")


class JobUpdate(Strict):
    """The body of `PATCH /v1/jobs/{id}`: a name, and tags merged into the job's (a null value removes a key)."""

    name: str | None = Field(None, max_length=200, description="null removes the name")
    tags: Annotated[dict[TagKey, TagValue | None], Field(max_length=MAX_TAGS_PARSED)] | None = None


ALIAS_PATTERN = r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$"


class AliasUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alias: str = Field(pattern=ALIAS_PATTERN, description="e.g. house-prices")
    move: bool = Field(False, description="the alias names another job: move it here in one step (else 409)")


class AliasAssignmentPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    job_id: str
    assigned_at: datetime
    released_at: datetime | None = Field(description="null: it names the job still (or did until the job was deleted)")


class AliasPublic(BaseModel):
    alias: str
    job_id: str | None = Field(description="the job it names now; null: none")
    history: list[AliasAssignmentPublic] = Field(description="which job it named, from when to when, newest first")


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: Numbers = Field(min_length=1, max_length=LIMITS.max_predict_rows)


class TargetMoments(BaseModel):
    mean: list[float]
    std: list[float]


class DatasetPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str | None
    format: str
    n_rows: int
    sample_shape: list[int]
    n_classes: int | None
    target_width: int
    target_moments: TargetMoments | None = Field(
        None, description="per target column; null for targets wider than 64 and datasets uploaded before fitserve kept them"
    )
    size_bytes: int
    created_at: datetime


class DatasetPage(BaseModel):
    items: list[DatasetPublic]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last")


class ErrorResponse(BaseModel):
    """Every error: a message, or for 422 a list naming each bad field."""

    detail: str | list[dict[str, Any]]
