"""What the jobs and datasets endpoints answer (the spec itself is in spec.py)."""

from datetime import datetime
from typing import Annotated, Any, Union

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypeAliasType

from service.schemas.data import Numbers, Strict
from service.schemas.limits import LIMITS
from service.schemas.lints import job_warnings
from service.schemas.spec import MAX_TAGS_PARSED, JobSpec, TagKey, TagValue
from service.schemas.webhooks import Notify


class JobCreate(JobSpec):
    """The body of `POST /v1/jobs`: the spec, and beside it whom to tell how the job went (not in the spec, which
    travels into weights files, ONNX exports and sweep members, while a webhook url may be a secret)."""

    notify: Notify | None = Field(None, description="webhooks: a signed POST to url at each of events (README)")


class Progress(BaseModel):
    epoch: int
    epochs: int


class MetricPointPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    step: int
    epoch: int
    loss: float
    val_loss: float | None = None
    accuracy: float | None = None
    val_accuracy: float | None = None
    lr: float | None = Field(None, description="the learning rate the epoch trained at (jobs with a schedule)")


class JobPublic(BaseModel):
    id: str
    sweep_id: str | None = Field(None, description="the sweep this job is a member of")
    alias: str | None = Field(None, description="a second name for the v2 protocol")
    name: str | None
    status: str
    priority: int = Field(0, description="orders the owner's queued jobs: higher first")
    tags: dict[str, str] = Field(default_factory=dict)
    spec: dict[str, Any]
    warnings: list[str] = Field(
        default_factory=list, description="what in the spec is valid but likely not what was meant, field first"
    )
    progress: Progress
    metrics: MetricPointPublic | None = Field(description="the latest curve point")
    stopped_early_at: int | None = Field(
        None, description="early stopping: the recorded epoch where patience ran out; null if it reached its last epoch"
    )
    best_epoch: int | None = Field(None, description="early stopping: the recorded epoch whose weights the job kept")
    stop_reason: str | None = Field(
        None, description="a sweep member an adaptive search stopped at stopped_early_at: why, e.g. 'pruned at rung 2'"
    )
    best_metrics: MetricPointPublic | None = Field(None, description="early stopping: the curve point at best_epoch")
    evaluation: dict[str, Any] | None = Field(
        None,
        description="the kept weights measured on the held-out splits as training ended: "
        '{"validation": measures | null, "test": measures | null} (see POST /v1/jobs/{id}/evaluate)',
    )
    device: str | None
    node: str | None = Field(None, description="the host, or Ray node id, that ran the latest attempt")
    execution: str | None = Field(
        None, description="the path that trained the latest attempt (e.g. eager, cuda graph, batched), and any fallback"
    )
    error: str | None
    attempt: int
    max_attempts: int
    interruptions: int = Field(
        0, description="attempts that ended by no fault of the job's (handed back at shutdown, the lease expired): "
        "they do not count against max_attempts",
    )
    cancel_requested: bool
    notify: Notify | None = Field(None, description="the webhook told of this job's events (deliveries: …/deliveries)")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def from_job(cls, job) -> "JobPublic":
        return cls(
            id=job.id,
            sweep_id=job.sweep_id,
            alias=job.alias,
            name=job.name,
            status=job.status,
            priority=job.priority,
            tags=job.tags or {},
            spec=job.spec,
            warnings=job_warnings(job.id, job.spec),
            progress=Progress(epoch=job.epoch, epochs=job.epochs),
            metrics=job.latest_metrics,
            stopped_early_at=job.stopped_early_at,
            best_epoch=job.best_epoch,
            stop_reason=job.stop_reason,
            best_metrics=job.best_metrics,
            evaluation=job.evaluation,
            device=job.device,
            node=job.node,
            execution=job.execution,
            error=job.error,
            attempt=job.attempt,
            max_attempts=job.max_attempts,
            interruptions=job.interruptions or 0,
            cancel_requested=job.cancel_requested,
            notify=job.notify,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
        )


class JobPage(BaseModel):
    items: list[JobPublic]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last")


class MetricsPage(BaseModel):
    job_id: str
    status: str
    points: list[MetricPointPublic]
    next_since_step: int = Field(
        description="the step of the last point here: pass as `since_step` for the next page, or for newer points"
    )
    total_points: int = Field(description="points after `since_step`, in this page and the ones after it")
    has_more: bool = Field(False, description="more points follow `next_since_step` already: fetch the next page")
    downsampled: bool = Field(
        description="with `max_points` only: evenly spaced points of all those after `since_step` (first and last kept)"
    )


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


# a prediction: a number (a class index, a value), or a list of them per output; NaN and infinity come as null
Prediction = TypeAliasType("Prediction", Union[int, float, None, list["Prediction"]])


class PredictResponse(BaseModel):
    predictions: list[Prediction]
    probabilities: list[list[float]] | None = None


class DatasetPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str | None
    format: str
    n_rows: int
    sample_shape: list[int]
    n_classes: int | None
    target_width: int
    size_bytes: int
    created_at: datetime


class DatasetPage(BaseModel):
    items: list[DatasetPublic]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last")


class ErrorResponse(BaseModel):
    """Every error: a message, or for 422 a list naming each bad field."""

    detail: str | list[dict[str, Any]]
