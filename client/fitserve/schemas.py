"""What the API answers that the client reads: jobs, curves, predictions, usage, workers, webhooks.

Defined here, once: the server answers with these same classes (service/ imports them), so the client needs
neither the server nor its dependencies to read them.
"""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, model_serializer
from typing_extensions import TypeAliasType


class Progress(BaseModel):
    epoch: int
    epochs: int


EPOCH_METRICS = ("mse", "rmse", "mae", "r2", "log_loss", "precision", "recall", "f1", "roc_auc")
EPOCH_FIELDS = frozenset(EPOCH_METRICS + tuple(f"val_{name}" for name in EPOCH_METRICS))


class _MetricPointFields(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    step: int
    epoch: int
    loss: float
    val_loss: float | None = None
    accuracy: float | None = None
    val_accuracy: float | None = None
    lr: float | None = Field(None, description="the learning rate the epoch trained at (jobs with a schedule)")

    @model_serializer(mode="wrap")
    def _only_recorded_metrics(self, handler):
        """A job's curve keeps the fields it always had; of `metrics`, only those it recorded."""
        return {k: v for k, v in handler(self).items() if v is not None or k not in EPOCH_FIELDS}


# the job's `metrics` (README, Per-epoch metrics): the training split's as <name>, the validation split's as
# val_<name>; present only in the points of a job that asked for them
MetricPointPublic = create_model(
    "MetricPointPublic",
    __base__=_MetricPointFields,
    __module__=__name__,
    **{name: (float | None, None) for name in (*EPOCH_METRICS, *(f"val_{name}" for name in EPOCH_METRICS))},
)


class ObjectivePublic(BaseModel):
    """What a sweep ranks its members by: a metric, minimized or maximized."""

    metric: str
    mode: str


class SweepPublic(BaseModel):
    """A sweep as the client reads it: the server's answer (service/schemas/sweeps.py) carries more, ignored here."""

    id: str
    name: str | None
    status: str
    ranked_by: str
    objective: ObjectivePublic
    best_job_id: str | None = Field(None, description="the leaderboard's first member, once one has succeeded")


class NotifyPublic(BaseModel):
    """A job's or sweep's webhook: a signed POST to `url` at each of `events` (README, Webhooks)."""

    url: str
    events: list[str]


class JobPublic(BaseModel):
    id: str
    sweep_id: str | None = Field(None, description="the sweep this job is a member of")
    continued_from: str | None = Field(
        None, description="the job whose final weights and optimizer state this one continues (POST …/continue)"
    )
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
        None, description="why it stopped before its last epoch (at stopped_early_at), e.g. 'pruned at rung 2' by an "
        "adaptive search, or 'time limit: ...' (max_seconds, the job's or its sweep's)",
    )
    trained_seconds: float = Field(0.0, description="seconds trained over all its attempts (what max_seconds limits)")
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
    yields: int = Field(
        0, description="of the interruptions, turns the job gave its worker to another owner's waiting job "
        "(FITSERVE_YIELD_SECONDS): each resumed from its checkpoint",
    )
    cancel_requested: bool
    notify: NotifyPublic | None = Field(None, description="the webhook told of this job's events (deliveries: …/deliveries)")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


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


# a prediction: a number (a class index, a value), or a row of them, one per output; NaN and infinity come as
# null. Answers are (N,) or (N, k) (modelzoo.read_outputs), so the type needs no recursion
Prediction = TypeAliasType("Prediction", int | float | None | list[float | None])


class PredictResponse(BaseModel):
    predictions: list[Prediction]
    probabilities: list[list[float]] | None = None


class JobCounts(BaseModel):
    queued: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    total: int = 0


class StoredBytes(BaseModel):
    """Byte lengths of the stored blobs (what the database holds besides its own overhead)."""

    curves: int
    weights: int
    checkpoints: int
    datasets: int
    total: int


class TrainingSeconds(BaseModel):
    today: float = Field(description="since midnight UTC")
    total: float = Field(description="in all; each job's latest attempt, from its start to its end (or now)")


class UsagePublic(BaseModel):
    owner: str | None = Field(description="the owner the figures are for (null: the anonymous local owner)")
    jobs: JobCounts
    stored_bytes: StoredBytes
    training_seconds: TrainingSeconds


class WorkerPublic(BaseModel):
    id: str
    host: str = Field(description="host name, or the Ray node id of a Ray task")
    pid: int
    kind: str = Field(description="pool (a local worker process), ray_task, or dispatcher")
    device: str
    gpu_total_bytes: int | None = Field(None, description="a GPU worker's GPU: its total memory (None on a CPU worker)")
    gpu_free_bytes: int | None = Field(
        None, description="a GPU worker's GPU: its free memory at the last heartbeat, other processes' use taken off"
    )
    state: str = Field(description="busy while it trains a job, else idle")
    job_id: str | None = Field(None, description="the job it trains, shown only to that job's owner")
    started_at: datetime
    heartbeat_at: datetime


class WorkerList(BaseModel):
    workers: list[WorkerPublic]
    lease_seconds: float = Field(description="a worker silent for this long is taken for dead, and its jobs rescued")


WebhookEvent = Literal["started", "succeeded", "failed", "cancelled"]


class WebhookSecretPublic(BaseModel):
    secret: str = Field(description="the HMAC-SHA256 key of X-Fitserve-Signature (as ASCII bytes)")
    created_at: datetime


class DeliveryAttemptPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    number: int = Field(description="1 for the first attempt")
    started_at: datetime
    seconds: float = Field(description="how long the attempt took")
    status_code: int | None = Field(description="the receiver's answer; null when none came (see error)")
    error: str | None = Field(description="why the attempt failed; null once a 2xx came")


class DeliveryPublic(BaseModel):
    id: str = Field(description="sent as X-Fitserve-Delivery")
    event: WebhookEvent
    url: str
    status: Literal["pending", "delivered", "failed"]
    created_at: datetime = Field(description="when the event was seen")
    next_attempt_at: datetime | None = Field(description="pending: when the next attempt starts at the earliest")
    ended_at: datetime | None = Field(description="when it was delivered, or given up")
    attempts: list[DeliveryAttemptPublic]


class DeliveryList(BaseModel):
    items: list[DeliveryPublic] = Field(description="oldest first; one per event at most")
