"""The sweep request (body of `POST /v1/sweeps`) and what the sweep endpoints answer."""

import itertools
import math
import random
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator

from service.schemas.layers import DropoutRate
from service.schemas.objectives import Objective, curve_metrics
from service.schemas.schedules import Schedule
from service.schemas.search import AshaSettings, PbtSettings, TpeSettings
from service.schemas.spec import Activation, JobSpec, Loss, MaxSeconds, Strict, Tags, Width
from service.schemas.webhooks import SweepNotify

OPTIMIZER_AXES = ("lr", "momentum", "weight_decay", "schedule", "clip_grad_norm")
MODEL_AXES = ("dropout",)

MAX_MEMBERS = 4096


class LogUniform(Strict):
    """Sampled log-uniformly between low and high (random search only)."""

    distribution: Literal["log_uniform"]
    low: float = Field(gt=0)
    high: float = Field(gt=0)


class Uniform(Strict):
    """Sampled uniformly between low and high (random search only)."""

    distribution: Literal["uniform"]
    low: float
    high: float


Range = Annotated[LogUniform | Uniform, Field(discriminator="distribution")]


ARCHITECTURE = ("hidden", "activation", "channels")  # axes that change a member's network: members grouped by shape


class SearchSpace(Strict):
    """Values to try: a list each (or `{"distribution": "categorical", "choices": [...]}`, the same), or a range for
    random search; `hidden`, `activation` and (CNN) `channels`, one out_channels per conv layer, change the
    architecture; `optimizer` (its kind) and `loss` too change what members can share: each forms groups as shapes do."""

    lr: list[Annotated[float, Field(gt=0, le=100)]] | Range | None = None
    momentum: list[Annotated[float, Field(ge=0, lt=1)]] | Range | None = None
    weight_decay: list[Annotated[float, Field(ge=0, le=100)]] | Range | None = None
    seed: list[Annotated[int, Field(ge=0, le=2**63 - 1)]] | None = None
    batch_size: list[Annotated[int, Field(ge=1)] | None] | None = None
    schedule: list[Schedule | None] | None = Field(None, description="optimizer.schedule values (null: constant lr)")
    clip_grad_norm: list[Annotated[float, Field(gt=0)] | None] | None = None
    dropout: list[DropoutRate] | None = Field(None, description="model.dropout values (mlp and cnn)")
    hidden: list[list[Width]] | None = None
    activation: list[Activation] | None = None
    channels: list[list[Width]] | None = None
    optimizer: list[Literal["sgd", "adam", "adamw"]] | None = Field(None, description="optimizer.kind values")
    loss: list[Loss] | None = None

    @model_validator(mode="before")
    @classmethod
    def _categorical_as_list(cls, data: Any) -> Any:
        """`{"distribution": "categorical", "choices": [...]}` is the list of its choices, for any axis."""
        if not isinstance(data, dict):
            return data
        return {name: value["choices"] if isinstance(value, dict) and value.get("distribution") == "categorical"
                and set(value) == {"distribution", "choices"} else value for name, value in data.items()}

    def axes(self) -> dict[str, Any]:
        return {name: value for name, value in self if value is not None}


class SweepCreate(Strict):
    name: str | None = Field(None, max_length=200)
    base: JobSpec
    space: SearchSpace
    search: Literal["grid", "random", "asha", "pbt", "tpe"] = "grid"
    count: Annotated[int, Field(ge=1, le=MAX_MEMBERS)] | None = Field(
        None, description="members, for random, asha and pbt search (sampled as random search samples them); tpe: per round"
    )
    search_seed: int = Field(0, ge=0, description="seeds the sampling (and PBT's choices), so a resubmitted sweep is the same")
    asha: AshaSettings | None = Field(None, description="search asha (or tpe, inside each round): the rungs")
    pbt: PbtSettings | None = Field(None, description="search pbt: how often and how many members exploit and explore")
    tpe: TpeSettings | None = Field(None, description="search tpe: how many rounds of count members")
    tags: Tags = Field(default_factory=dict, description="the sweep's; each member carries them too, over the base's")
    execution: Literal["auto", "batched", "one_by_one"] = Field(
        "auto", description="auto: batched when a probe measures it faster on the worker's device"
    )
    notify: SweepNotify | None = Field(None, description="webhooks: the sweep's events, and with members its members'")
    objective: Objective | None = Field(
        None, description="what ranks, prunes (asha), exploits (pbt) and guides (tpe) the members, and what members' "
        "early_stopping monitors unless it names its own: default val_loss (loss without a validation split), min"
    )
    max_seconds: MaxSeconds | None = Field(
        None, description="the sweep ends this many seconds after it was created: running members stop as at their "
        "own max_seconds, members not yet started end cancelled (README, Time limits)",
    )

    @model_validator(mode="after")
    def _check_search(self) -> "SweepCreate":
        axes = self.space.axes()
        if not axes:
            raise ValueError("space names nothing to vary")
        if self.search != "grid" and self.count is None:
            raise ValueError(f"{self.search} search needs count")
        if self.search == "grid":
            if self.count is not None:
                raise ValueError("count is for random search; a grid has every combination")
            ranged = [name for name, value in axes.items() if not isinstance(value, list)]
            if ranged:
                raise ValueError(f"a grid needs lists of values; {ranged} are ranges")
            size = math.prod(len(v) for v in axes.values())
            if size > MAX_MEMBERS:
                raise ValueError(f"the grid has {size} members; at most {MAX_MEMBERS}")
        for name, value in axes.items():
            if isinstance(value, list) and not value:
                raise ValueError(f"space.{name} is an empty list")
            if isinstance(value, (LogUniform, Uniform)) and not value.low < value.high:
                raise ValueError(f"space.{name}: low must be below high")
        return self

    def member_overrides(self) -> list[dict[str, Any]]:
        """Each member's values, in a stable order."""
        axes = self.space.axes()
        if self.search == "grid":
            names = list(axes)
            return [dict(zip(names, combo)) for combo in itertools.product(*(axes[n] for n in names))]
        rng = random.Random(self.search_seed)
        return [{name: sample(value, rng) for name, value in axes.items()} for _ in range(self.count)]

    def member_specs(self, overrides: list[dict[str, Any]] | None = None) -> list[JobSpec]:
        """The members' specs: of `overrides` when given (a TPE round's suggestions), else of the search's own."""
        base = self.base.model_dump(mode="json")
        early = base["early_stopping"]
        if early is not None and early["monitor"] is None and self.monitors_objective():
            base["early_stopping"] = {**early, "monitor": self.objective.metric, "mode": self.objective.mode}
        specs = []
        for member in self.member_overrides() if overrides is None else overrides:
            spec = {**base, "optimizer": dict(base["optimizer"]), "model": dict(base["model"])}
            for name, value in member.items():
                if isinstance(value, Strict):  # a schedule
                    value = value.model_dump(mode="json")
                if name in OPTIMIZER_AXES:
                    spec["optimizer"][name] = value
                elif name == "optimizer":
                    spec["optimizer"]["kind"] = value
                elif name == "channels":
                    spec["model"]["conv"] = with_channels(spec["model"].get("conv"), value)
                elif name in ARCHITECTURE or name in MODEL_AXES:
                    spec["model"][name] = value
                else:
                    spec[name] = value
            specs.append(JobSpec.model_validate(spec))
        return specs

    def monitors_objective(self) -> bool:
        """Whether members' early stopping without a monitor of its own watches the objective: one recorded every
        epoch (an evaluation metric is not: they keep the usual val_loss, or loss)."""
        has_validation = bool(self.base.data.validation_fraction)
        return self.objective is not None and self.objective.metric in curve_metrics(self.base, has_validation)


def with_channels(conv: list[dict] | None, channels: list[int]) -> list[dict]:
    """The base's conv layers with these out_channels, one a layer."""
    if conv is None:
        raise ValueError("space.channels is for a cnn base")
    if len(channels) != len(conv):
        raise ValueError(f"space.channels: {len(channels)} values for {len(conv)} conv layers")
    return [{**layer, "out_channels": c} for layer, c in zip(conv, channels)]


def sample(value, rng: random.Random):
    if isinstance(value, list):
        return rng.choice(value)
    if isinstance(value, LogUniform):
        return math.exp(rng.uniform(math.log(value.low), math.log(value.high)))
    return rng.uniform(value.low, value.high)


class LeaderboardEntry(BaseModel):
    rank: int
    job_id: str
    status: str
    hyperparameters: dict[str, Any]
    loss: float | None
    val_loss: float | None
    accuracy: float | None
    val_accuracy: float | None
    objective: float | None = Field(None, description="the member's value of the sweep's objective metric")
    best_epoch: int | None = Field(None, description="with early stopping: the epoch of these metrics and the kept weights")
    stopped_early_at: int | None = Field(None, description="where early stopping or an adaptive search stopped it")
    stop_reason: str | None = Field(
        None, description="why an adaptive search or a time limit stopped it, e.g. 'pruned at rung 2'"
    )


class SweepProgress(BaseModel):
    members: int
    queued: int
    running: int
    succeeded: int
    failed: int
    cancelled: int
    epochs_done: int
    epochs_total: int


class SweepPublic(BaseModel):
    id: str
    name: str | None
    status: str
    execution: str | None = Field(description="how the worker trained the members (batched or one by one) and why")
    progress: SweepProgress
    ranked_by: str = Field(description="the objective's metric: by default val_loss when the members hold out a "
                           "validation split, else loss")
    objective: Objective = Field(description="the metric and direction the leaderboard ranks by")
    best_job_id: str | None = Field(None, description="the leaderboard's first member, once one has succeeded")
    leaderboard: list[LeaderboardEntry]
    search_state: dict[str, Any] | None = Field(
        None, description="an adaptive search's decisions: asha's rungs (who went on, who stopped, their values)"
    )
    request: dict[str, Any]
    tags: dict[str, str] = Field(default_factory=dict)
    created_at: datetime


class SweepSummary(BaseModel):
    id: str
    name: str | None
    status: str
    tags: dict[str, str] = Field(default_factory=dict)
    progress: SweepProgress
    created_at: datetime


class SweepPage(BaseModel):
    items: list[SweepSummary]
    next_cursor: str | None

