"""What a sweep optimizes and what early stopping watches: a metric by name, minimized or maximized.

`curve_metrics` is the one answer to "which figures does this spec record every recorded epoch": sweeps'
objectives, ASHA, PBT and early stopping's monitor all check names against it. `evaluation_metrics` are what
the final evaluation measures on the validation split (workers/evaluation.py, modelzoo/metrics.py), named
`val_<measure>`: a sweep may rank by them once its members end, never prune or monitor by them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from service.schemas.data import Strict

if TYPE_CHECKING:
    from service.schemas.spec import JobSpec

Mode = Literal["min", "max"]
MetricName = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$", description="a curve metric (loss, val_loss, accuracy, val_accuracy, "
                   "a job's `metrics` as <name> and val_<name>) or, for a sweep's final ranking, an evaluation one (val_f1, ...)")
MINIMIZED = ("loss", "mse", "rmse", "mae", "log_loss")  # errors; every other measure is better higher
EVALUATED = {"regression": ("mse", "rmse", "mae", "r2"),
             "classification": ("log_loss", "precision", "recall", "f1", "roc_auc")}


def natural_mode(metric: str) -> Mode:
    """min for losses and errors, max for accuracies and scores."""
    return "min" if metric.removeprefix("val_") in MINIMIZED else "max"


class Objective(Strict):
    """The metric to rank by; mode defaults to the metric's natural direction (min for losses, max for accuracies)."""

    metric: str = MetricName
    mode: Mode | None = Field(None, description="default: min for losses and errors, max for accuracies and scores")

    @model_validator(mode="after")
    def _default_mode(self) -> Objective:
        if self.mode is None:
            self.mode = natural_mode(self.metric)
        return self

    def score(self, value: float | None) -> float | None:
        """The value as a number to minimize (negated for max): how searches and rankings compare members."""
        return None if value is None else (value if self.mode == "min" else -value)


def default_objective(has_validation: bool) -> Objective:
    return Objective(metric="val_loss" if has_validation else "loss", mode="min")


def sweep_objective(request: dict) -> Objective:
    """A stored sweep request's objective: its own, else val_loss (loss without a validation split) min."""
    if request.get("objective"):
        return Objective.model_validate(request["objective"])
    return default_objective(bool(request["base"]["data"].get("validation_fraction")))


def curve_metrics(spec: JobSpec, has_validation: bool) -> set[str]:
    """The figures every recorded epoch of a job of this spec keeps (its curve's columns, lr aside): the loss, the
    accuracy of a classifier, and the spec's `metrics`, each also as val_<name> with a validation split."""
    names = {"loss", "accuracy"} if spec.task == "classification" else {"loss"}
    names |= set(spec.metrics)
    return names | {f"val_{name}" for name in names} if has_validation else names


def evaluation_metrics(spec: JobSpec, has_validation: bool) -> set[str]:
    """The measures the final evaluation takes on the validation split, as `val_<measure>` (none without one)."""
    measures = EVALUATED[spec.task]
    if spec.task == "classification" and spec.model.out_features > 2:  # roc_auc is two-class only
        measures = tuple(m for m in measures if m != "roc_auc")
    return {f"val_{m}" for m in measures} if has_validation else set()


def evaluation_value(evaluation: dict | None, metric: str) -> float | None:
    """An evaluation metric's value in a job's stored evaluation (None: not measured, or not a `val_` name)."""
    if not metric.startswith("val_"):
        return None
    validation = (evaluation or {}).get("validation") or {}
    value = validation.get(metric.removeprefix("val_"))
    return value if isinstance(value, (int, float)) else None
