"""The job spec: the body of `POST /v1/jobs`, the contract users' scripts rely on.

Every check that can be made without the database happens here, so a bad spec is a 422 naming
its field before anything is stored. Checks that need a stored dataset run in the job service.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Union

from pydantic import Field, StrictBool, field_validator, model_validator

from service.schemas.data import DataShape, DataSpec, Strict
from modelzoo.memory import count_parameters
from modelzoo.metrics import EPOCH_METRICS
from service.schemas.layers import Activation, DropoutRate, OutputActivation, SequentialBase
from service.schemas.limits import LIMITS
from service.schemas.objectives import curve_metrics, natural_mode
from service.schemas.schedules import Schedule

PositiveInt = Annotated[int, Field(ge=1)]
Width = Annotated[int, Field(ge=1, le=LIMITS.max_layer_width)]

# tags: keys never hold ':' (`?tag=key:value` splits on the first one); sizes are the job_tags columns'.
# How many a job may carry is FITSERVE_MAX_TAGS (checked by the services); MAX_TAGS_PARSED bounds the parse.
MAX_TAGS_PARSED = 256
TagKey = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-/]{1,64}$")]
TagValue = Annotated[str, Field(max_length=256)]
Tags = Annotated[dict[TagKey, TagValue], Field(max_length=MAX_TAGS_PARSED)]
Priority = Annotated[int, Field(ge=-1000, le=1000)]
# a wall-clock limit in seconds (workers/run.py, README "Time limits")
MaxSeconds = Annotated[float, Field(gt=0, le=LIMITS.max_seconds, allow_inf_nan=False)]


class SpecError(ValueError):
    """A spec that contradicts itself; `loc` names the field inside the spec."""

    def __init__(self, loc: tuple[str | int, ...], msg: str):
        super().__init__(msg)
        self.loc = loc
        self.msg = msg


# ---------------------------------------------------------------- model


class UniformInit(Strict):
    kind: Literal["uniform"]
    low: float = 0.0
    high: float = 1.0

    @model_validator(mode="after")
    def _check_range(self) -> UniformInit:
        if not self.low < self.high:
            raise ValueError("init.low must be below init.high")
        return self


class ZerosInit(Strict):
    kind: Literal["zeros"]


class DefaultInit(Strict):
    kind: Literal["default"]


Init = Annotated[Union[UniformInit, ZerosInit, DefaultInit], Field(discriminator="kind")]
# one rate for every hidden layer, or one per hidden layer
Dropout = DropoutRate | list[DropoutRate]


class HiddenLayerOptions(Strict):
    """Dropout after, and batch norm before, the activation of each hidden layer (conv blocks: batch norm only)."""

    dropout: Dropout | None = Field(None, description="rate (0 <= rate < 1) after each hidden layer, or one per layer")
    batch_norm: StrictBool = False

    def dropout_rates(self, hidden: int) -> list[float]:
        """The rate after each of `hidden` hidden layers (0: none)."""
        if self.dropout is None:
            return [0.0] * hidden
        return list(self.dropout) if isinstance(self.dropout, list) else [self.dropout] * hidden

    def check_dropout(self, hidden: int) -> None:
        if isinstance(self.dropout, list) and len(self.dropout) != hidden:
            raise ValueError(f"dropout lists {len(self.dropout)} rates for {hidden} hidden layers")
        if self.dropout is not None and hidden == 0:
            raise ValueError("dropout acts after hidden layers; this model has none")


class LinearModel(Strict):
    kind: Literal["linear"]
    in_features: Width
    out_features: Width
    output_activation: OutputActivation | None = None
    init: Init | None = None


class MLPModel(HiddenLayerOptions):
    kind: Literal["mlp"]
    in_features: Width
    hidden: list[Width] = Field(min_length=1, max_length=LIMITS.max_layers)
    out_features: Width
    activation: Activation = "relu"
    output_activation: OutputActivation | None = None
    init: Init | None = None

    @model_validator(mode="after")
    def _check_dropout(self) -> MLPModel:
        self.check_dropout(len(self.hidden))
        return self


class PoolSpec(Strict):
    kind: Literal["max", "avg"]
    size: Annotated[int, Field(ge=1, le=16)]


class ConvLayer(Strict):
    out_channels: Width
    kernel_size: Annotated[int, Field(ge=1, le=16)]
    stride: Annotated[int, Field(ge=1, le=16)] = 1
    padding: Annotated[int, Field(ge=0, le=16)] = 0
    pool: PoolSpec | None = None


class CNNModel(HiddenLayerOptions):
    kind: Literal["cnn"]
    in_channels: Annotated[int, Field(ge=1, le=64)]
    input_size: tuple[Annotated[int, Field(ge=1, le=512)], Annotated[int, Field(ge=1, le=512)]]
    conv: list[ConvLayer] = Field(min_length=1, max_length=LIMITS.max_layers)
    hidden: list[Width] = Field(default_factory=list, max_length=LIMITS.max_layers)
    out_features: Width
    activation: Activation = "relu"
    output_activation: OutputActivation | None = None
    init: Init | None = None

    @model_validator(mode="after")
    def _check_shapes(self) -> CNNModel:
        self.feature_map_shapes()
        self.check_dropout(len(self.hidden))
        return self

    def feature_map_shapes(self) -> list[tuple[int, int, int]]:
        """(C, H, W) after each conv block; raises when a block shrinks the map to nothing."""
        c, (h, w) = self.in_channels, self.input_size
        shapes = []
        for i, layer in enumerate(self.conv):
            h = (h + 2 * layer.padding - layer.kernel_size) // layer.stride + 1
            w = (w + 2 * layer.padding - layer.kernel_size) // layer.stride + 1
            if layer.pool is not None:
                h, w = h // layer.pool.size, w // layer.pool.size
            if h < 1 or w < 1:
                raise ValueError(
                    f"conv[{i}] shrinks the {self.input_size[0]}x{self.input_size[1]} input to nothing"
                )
            c = layer.out_channels
            shapes.append((c, h, w))
        return shapes


class SequentialModel(SequentialBase):
    init: Init | None = None


ModelSpec = Annotated[Union[LinearModel, MLPModel, CNNModel, SequentialModel], Field(discriminator="kind")]


def model_input_shape(model) -> tuple[int, ...]:
    """One sample's shape as the network takes it."""
    if isinstance(model, CNNModel):
        return (model.in_channels, *model.input_size)
    if isinstance(model, SequentialModel):
        return tuple(model.input_shape)
    return (model.in_features,)


# ---------------------------------------------------------------- training


class OptimizerSpec(Strict):
    kind: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = Field(gt=0.0, le=100.0)
    momentum: float = Field(0.0, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0, le=100.0, description="L2 penalty (AdamW: decoupled), as bounded as lr")
    schedule: Schedule | None = Field(None, description="how lr changes from epoch to epoch; none: constant")
    clip_grad_norm: float | None = Field(
        None, gt=0.0, description="scale each step's gradients so their global L2 norm is at most this"
    )

    @model_validator(mode="after")
    def _check_schedule(self) -> OptimizerSpec:
        schedule = self.schedule
        if schedule is not None and schedule.kind == "one_cycle" and schedule.max_lr < self.lr:
            raise ValueError("schedule.max_lr must be at least lr (one_cycle starts at lr and rises to max_lr)")
        if schedule is not None and schedule.kind == "cosine" and schedule.min_lr >= self.lr:
            raise ValueError("schedule.min_lr must be below lr (cosine falls from lr to min_lr)")
        return self


class EarlyStoppingSpec(Strict):
    """Stop when the monitored metric has not improved for `patience` recorded epochs; keep the best epoch's weights."""

    patience: PositiveInt = Field(description="recorded epochs (see metrics_every) without improvement before stopping")
    min_delta: float = Field(0.0, ge=0.0, description="an improvement is a change of more than this, in mode's direction")
    monitor: str | None = Field(
        None, pattern=r"^[a-z][a-z0-9_]{0,63}$", description="a curve metric (loss, val_loss, accuracy, val_accuracy); "
        "default: val_loss when the data holds out a validation split, else loss (a sweep's member: its objective)"
    )
    mode: Literal["min", "max"] | None = Field(None, description="default: min for losses, max for accuracies")

    def monitor_for(self, has_validation: bool) -> str:
        return self.monitor or ("val_loss" if has_validation else "loss")

    def mode_for(self, has_validation: bool) -> str:
        return self.mode or natural_mode(self.monitor_for(has_validation))


class InitSpec(Strict):
    """Where a job's network starts: another succeeded job's weights (not its optimizer state)."""

    from_job: str = Field(max_length=32, description="a succeeded job of yours whose layers have this spec's shapes")


Loss = Literal["mse", "sse", "cross_entropy", "bce"]
# what `metrics` may name: the final evaluation's measures (modelzoo/metrics.py), those of the job's task
EpochMetric = Literal[tuple(name for names in EPOCH_METRICS.values() for name in names)]  # type: ignore[valid-type]
MAX_EPOCH_METRICS = max(len(names) for names in EPOCH_METRICS.values())
Task = Literal["regression", "classification"]


class JobSpec(Strict):
    """A training job: model, data, loss and optimizer, as a tutorial's script would set them."""

    name: str | None = Field(None, max_length=200)
    model: ModelSpec
    task: Task
    data: DataSpec
    loss: Loss
    optimizer: OptimizerSpec
    epochs: Annotated[int, Field(ge=1, le=LIMITS.max_epochs)]
    batch_size: Annotated[int, Field(ge=1)] | None = None
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] = 0
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda|cuda:\d{1,2})$")
    metrics_every: Annotated[int, Field(ge=1)] = Field(
        1, description="record a curve point every this many epochs (the last epoch always); raised where needed so "
        f"a curve keeps at most {LIMITS.max_curve_points:,} points", validate_default=True,
    )
    early_stopping: EarlyStoppingSpec | None = None
    max_seconds: MaxSeconds | None = Field(
        None, description="stop training after this many seconds of it, over all attempts: the job succeeds with "
        f"stop_reason 'time limit ...' and its kept weights (at most {LIMITS.max_seconds:,})",
    )
    metrics: list[EpochMetric] = Field(
        default_factory=list, max_length=MAX_EPOCH_METRICS,
        description="measures recorded on the curve at every recorded epoch, as the final evaluation defines them: "
        "<name> on the training split, val_<name> on the validation split; regression: mse, rmse, mae, r2; "
        "classification: log_loss, precision, recall, f1 (macro), roc_auc (two classes)",
    )
    init: InitSpec | None = Field(None, description="start from another job's weights; none: freshly initialized")
    priority: Priority = Field(0, description="orders this owner's queued jobs: higher first (-1000..1000)")
    tags: Tags = Field(default_factory=dict, description="string keys and values, to find jobs by (`?tag=key:value`)")

    @field_validator("metrics_every")
    @classmethod
    def _thin_long_curves(cls, every: int, info) -> int:
        """A job longer than LIMITS.max_curve_points epochs records every n-th, n raised so its curve fits."""
        epochs = info.data.get("epochs")
        return every if epochs is None else max(every, fewest_every(epochs))


def fewest_every(epochs: int) -> int:
    """The smallest metrics_every that keeps a job of `epochs` within LIMITS.max_curve_points points."""
    return math.ceil(epochs / LIMITS.max_curve_points)


def check_spec(spec: JobSpec, shape: DataShape) -> None:
    """Cross-field checks, given the data's shape; raises SpecError naming the field."""
    check_task(spec)
    params = count_parameters(spec.model)
    if params > LIMITS.max_parameters:
        raise SpecError(("model",), f"the model has {params} parameters; at most {LIMITS.max_parameters}")
    check_data_fits(spec, shape)
    check_early_stopping(spec, shape)
    check_schedule(spec)
    check_splits(spec, shape)


def check_task(spec: JobSpec) -> None:
    """Loss, task and output layer must agree."""
    out = spec.model.out_features
    if spec.task == "regression" and spec.loss not in ("mse", "sse"):
        raise SpecError(("loss",), f"loss {spec.loss!r} is for classification; regression takes mse or sse")
    if spec.task == "classification" and spec.loss not in ("cross_entropy", "bce"):
        raise SpecError(("loss",), f"loss {spec.loss!r} is for regression; classification takes cross_entropy or bce")
    if spec.loss == "cross_entropy" and out < 2:
        raise SpecError(("model", "out_features"), "cross_entropy needs out_features >= 2 (one per class)")
    if spec.loss == "bce" and out != 1:
        raise SpecError(("model", "out_features"), "bce needs out_features = 1 (the probability of class 1)")
    if spec.loss == "bce" and spec.model.output_activation == "softmax":
        raise SpecError(("model", "output_activation"), "softmax over one output is constant; use sigmoid")
    if spec.data.standardize_target and spec.task != "regression":
        raise SpecError(("data", "standardize_target"), "standardize_target scales regression targets; "
                        "a classification's targets are class labels")
    check_metrics(spec)


def check_metrics(spec: JobSpec) -> None:
    """Each of `metrics` once, and a measure of the job's task (roc_auc: of two classes)."""
    allowed = EPOCH_METRICS[spec.task]
    for i, name in enumerate(spec.metrics):
        if name not in allowed:
            raise SpecError(("metrics", i), f"{name!r} does not measure a {spec.task}; it records {', '.join(allowed)}")
        if name in spec.metrics[:i]:
            raise SpecError(("metrics", i), f"{name!r} is listed twice")
        if name == "roc_auc" and spec.loss == "cross_entropy" and spec.model.out_features != 2:
            raise SpecError(("metrics", i), "roc_auc is defined for two classes (bce, or cross_entropy with "
                            f"out_features 2); this model tells {spec.model.out_features}")


def check_data_fits(spec: JobSpec, shape: DataShape) -> None:
    """The model's input and output must fit the data; raises SpecError naming the field."""
    model = spec.model
    sample = shape.sample_shape
    if isinstance(model, CNNModel):
        expected = (model.in_channels, *model.input_size)
        fits = sample == expected or (model.in_channels == 1 and sample == expected[1:])
        fits = fits or sample == (math.prod(expected),)
        if not fits:
            raise SpecError(
                ("model", "input_size"),
                f"the data's samples have shape {list(sample)}; the model expects {list(expected)}",
            )
    elif isinstance(model, SequentialModel):
        if math.prod(sample) != math.prod(model.input_shape):
            raise SpecError(
                ("model", "input_shape"),
                f"the data's samples have shape {list(sample)}; the model expects {model.input_shape}",
            )
    elif math.prod(sample) != model.in_features:
        raise SpecError(
            ("model", "in_features"),
            f"the data has {math.prod(sample)} features per sample; in_features is {model.in_features}",
        )
    if spec.task == "classification":
        if shape.n_classes is None or shape.target_width != 1:
            raise SpecError(("data",), "classification needs y as class labels 0..k-1")
        limit = 2 if spec.loss == "bce" else model.out_features
        if shape.n_classes > limit:
            field = ("loss",) if spec.loss == "bce" else ("model", "out_features")
            raise SpecError(field, f"the data has {shape.n_classes} classes; the model can tell {limit}")
    elif shape.target_width != model.out_features:
        raise SpecError(
            ("model", "out_features"),
            f"the data has {shape.target_width} targets per sample; out_features is {model.out_features}",
        )
    if spec.batch_size is not None and spec.batch_size > shape.n_rows:
        raise SpecError(("batch_size",), f"batch_size {spec.batch_size} exceeds the {shape.n_rows} rows of data")
    budget = shape.n_rows * spec.epochs
    if budget > LIMITS.max_sample_epochs:
        raise SpecError(
            ("epochs",),
            f"epochs x rows = {budget} exceeds the budget of {LIMITS.max_sample_epochs} sample-epochs",
        )


def validation_rows(spec: JobSpec, shape: DataShape) -> int:
    """Rows the worker will hold out (workers/data/loading.py rounds the same way)."""
    return int(round(shape.n_rows * spec.data.validation_fraction))


def test_rows(spec: JobSpec, shape: DataShape) -> int:
    """Rows the worker sets aside for the final evaluation only (workers/data/loading.py rounds the same way)."""
    return int(round(shape.n_rows * spec.data.test_fraction))


def check_schedule(spec: JobSpec) -> None:
    schedule = spec.optimizer.schedule
    if schedule is not None and schedule.kind == "cosine" and schedule.warmup_epochs >= spec.epochs:
        raise SpecError(
            ("optimizer", "schedule", "warmup_epochs"),
            f"warmup_epochs ({schedule.warmup_epochs}) must be below epochs ({spec.epochs})",
        )


def check_splits(spec: JobSpec, shape: DataShape) -> None:
    held_out = validation_rows(spec, shape) + test_rows(spec, shape)
    if held_out >= shape.n_rows:
        raise SpecError(
            ("data", "test_fraction"),
            f"validation and test splits take {held_out} of the {shape.n_rows} rows: none would be left to train on",
        )


def check_early_stopping(spec: JobSpec, shape: DataShape) -> None:
    early = spec.early_stopping
    if early is None or early.monitor is None:
        return
    has_validation = validation_rows(spec, shape) > 0
    if early.monitor not in curve_metrics(spec, has_validation):
        raise SpecError(("early_stopping", "monitor"), unrecorded(spec, early.monitor, has_validation))


def unrecorded(spec: JobSpec, metric: str, has_validation: bool) -> str:
    """Why a job of this spec records no curve of `metric`."""
    if metric.startswith("val_") and not has_validation:
        return f"{metric} needs a validation split: set data.validation_fraction"
    recorded = ", ".join(sorted(curve_metrics(spec, has_validation)))
    return f"a {spec.task} job records no {metric} every epoch; it records {recorded}"
