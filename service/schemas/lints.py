"""Spec lints: specs that are valid, and train, but are likely not what their author meant.

A lint never refuses a job (that is `check_spec`'s business); its words go in the job's `warnings`.
They are computed from the stored spec whenever a job is shown, so they need no column and old jobs get
them too; each job's are kept in a small cache, and the costly one (a learning rate's stability limit,
below) only runs on data whose moments are known in closed form or that is small. An uploaded dataset's
target moments, stored with it at upload, are the one thing read besides the spec: the caller passes them
(`DatasetMoments`, by dataset id), for the datasets `moments_wanted` names.
"""

import math
from collections.abc import Mapping

import numpy as np

from service.schemas.limits import LIMITS
from service.schemas.spec import fewest_every

INLINE_VALUES_SCANNED = 10_000  # inline x larger than this is not read for the stability limit
MAX_FEATURES_SCANNED = 64  # an eigenvalue problem of this size costs well under a millisecond
STATIC_LR_LIMIT = 1.0  # plain SGD past this on unstandardized data diverges for most tutorial models
# regression targets whose |mean| or std pass this, or whose std is below its inverse, are two orders of magnitude
# from the unit scale a network's first outputs have; the tutorial's examples (mean 61 and std 36 in example 1, std
# 10 for example 3's cubic) train well as they are and stay inside
TARGET_SCALE_LIMIT = 100.0
GRID_POINTS = 10_000  # a polynomial target's moments are taken over this many evenly spaced x at most
# the targets of the builtin regression data set (scikit-learn's load_diabetes): mean, std
BUILTIN_TARGET_MOMENTS = {"diabetes": (152.133, 77.006)}
CACHE_JOBS = 4096
CACHE: dict[str, tuple[str, ...]] = {}  # job id -> its warnings
# dataset id -> its stored target moments ({"mean": [...], "std": [...]}, None for one uploaded before they were)
DatasetMoments = Mapping[str, dict | None]


def lint_spec(spec: dict, datasets: DatasetMoments | None = None) -> list[str]:
    """Warnings, each naming the field it is about, for a spec as stored (`JobSpec.model_dump(mode="json")`)."""
    return [*output_lints(spec), *learning_rate_lints(spec), *target_lints(spec, datasets), *curve_lints(spec)]


def curve_lints(spec: dict) -> list[str]:
    every = spec.get("metrics_every", 1)
    if every > 1 and every == fewest_every(spec["epochs"]):
        patience = " (and early stopping's patience counts recorded epochs)" if spec.get("early_stopping") else ""
        message = (f"metrics_every: {every}: a curve keeps at most {LIMITS.max_curve_points:,} points, so this job "
                   f"of {spec['epochs']:,} epochs records one epoch in {every}{patience}")
        return [message]
    return []


def job_warnings(job_id: str, spec: dict, datasets: DatasetMoments | None = None) -> list[str]:
    """A job's warnings, linted once per process: its spec never changes, and a list shows 200 jobs at once."""
    found = CACHE.get(job_id)
    if found is None:
        try:
            found = tuple(lint_spec(spec, datasets))
            wanted = moments_dataset(spec)
        except (KeyError, TypeError):  # a spec stored by an older version may lack a field a lint reads
            found, wanted = (), None
        if wanted is not None and wanted not in (datasets or {}):
            return list(found)  # linted without the dataset's moments: the next caller may pass them
        if len(CACHE) >= CACHE_JOBS:
            CACHE.clear()
        CACHE[job_id] = found
    return list(found)


def moments_wanted(job_id: str, spec: dict) -> str | None:
    """The uploaded dataset whose target moments the job's warnings read, while they are not cached."""
    if job_id in CACHE:
        return None
    try:
        return moments_dataset(spec)
    except (KeyError, TypeError):
        return None


def moments_dataset(spec: dict) -> str | None:
    data = spec["data"]
    if data["source"] == "dataset" and spec["task"] == "regression" and not data.get("standardize_target"):
        return data["dataset_id"]
    return None


def output_lints(spec: dict) -> list[str]:
    model, loss = spec["model"], spec["loss"]
    activation, k = model.get("output_activation"), model.get("out_features") or last_linear_width(model)
    if loss == "cross_entropy" and activation in ("softmax", "sigmoid"):
        # cross-entropy applies log-softmax itself; outputs confined to [0, 1] reach at best
        # softmax([1, 0, ..., 0]) = e / (e + k - 1), and the loss at best -log of that
        best = math.e / (math.e + k - 1)
        if activation == "softmax":
            effect = "applies softmax twice"
            fix = ": /predict then answers the softmax of the logits as probabilities"
        else:
            effect = f"reads outputs in [0, 1] as logits, so no probability can pass {best:.2f}, even where it is sure"
            fix = " (/predict answers the softmax of the logits), or for two classes use loss bce with out_features 1"
        message = (
            f"model.output_activation: {activation} before cross_entropy {effect} (cross_entropy takes logits); "
            f"the loss cannot fall below {-math.log(best):.3g} and learns slowly near it. "
            f"Leave output_activation unset{fix}"
        )
        return [message]
    if spec["task"] == "regression" and activation == "softmax":
        effect = "makes its one output a constant 1" if k == 1 else f"makes its {k} outputs sum to 1"
        return [f"model.output_activation: softmax on a regression {effect}"]
    if spec["task"] == "regression" and activation == "sigmoid":
        message = "model.output_activation: sigmoid confines regression predictions to (0, 1): right only if every "
        return [message + "target lies there"]
    return []


def last_linear_width(model: dict) -> int:
    """A `sequential` model's outputs: its last linear layer's width."""
    return next(layer["out_features"] for layer in reversed(model["layers"]) if layer["kind"] == "linear")


def learning_rate_lints(spec: dict) -> list[str]:
    optimizer = spec["optimizer"]
    if optimizer["kind"] != "sgd":
        return []
    limit = sgd_stability_limit(spec)
    lr = optimizer["lr"]
    if limit is not None:
        if lr <= limit:
            return []
        hint = "" if spec["data"].get("standardize") else ", or set data.standardize"
        message = (
            f"optimizer.lr: {lr:g} is above {limit:.3g}, the largest rate at which gradient descent on this linear "
            f"model's {spec['loss']} loss over this data converges (2(1 + momentum) over the loss's largest "
            f"curvature): the loss will grow until it overflows; lower lr{hint}"
        )
        return [message]
    if lr > STATIC_LR_LIMIT and not spec["data"].get("standardize"):
        message = f"optimizer.lr: {lr:g} with plain SGD on unstandardized data usually diverges; try lr <= 0.1, or set "
        return [message + "data.standardize"]
    return []


def sgd_stability_limit(spec: dict) -> float | None:
    """The learning rate past which (heavy-ball) gradient descent diverges on a linear model's squared loss.

    The loss is quadratic in the weights, with curvature (Hessian) c * E[x x^T] over inputs x with a 1
    appended for the bias: c = 2 / out_features for mse (a mean over rows and outputs), 2 * rows per
    step for sse (a sum). Gradient descent with momentum m and weight decay wd converges iff
    lr < 2 (1 + m) / (c * lambda_max + wd). None when the model is not a plain linear one or the data's
    moments are not cheaply known (builtin and uploaded datasets, large inline data).
    """
    model, loss = spec["model"], spec["loss"]
    if model["kind"] != "linear" or loss not in ("mse", "sse") or model.get("output_activation") is not None:
        return None
    moments = input_moments(spec["data"])
    if moments is None:
        return None
    mean, second, rows = moments
    if spec["data"].get("standardize"):
        mean, second = standardized(mean, second)
    augmented = np.block([[second, mean[:, None]], [mean[None, :], np.ones((1, 1))]])
    curvature = float(np.linalg.eigvalsh(augmented)[-1])
    held_out = spec["data"].get("validation_fraction", 0.0) + spec["data"].get("test_fraction", 0.0)
    train_rows = max(1, round(rows * (1 - held_out)))
    step_rows = min(spec.get("batch_size") or train_rows, train_rows)
    scale = 2.0 / model["out_features"] if loss == "mse" else 2.0 * step_rows
    optimizer = spec["optimizer"]
    hessian = scale * curvature + optimizer.get("weight_decay", 0.0)
    return 2 * (1 + optimizer.get("momentum", 0.0)) / hessian if hessian > 0 else None


def input_moments(data: dict) -> tuple[np.ndarray, np.ndarray, int] | None:
    """(E[x], E[x x^T], rows) of the training inputs, from the spec alone; None where that is not cheap."""
    if data["source"] == "synthetic" and data["generator"] in ("linear", "polynomial"):
        n, low, high = data["n"], data["low"], data["high"]  # x evenly spaced from low to high
        mean = (low + high) / 2
        variance = (high - low) ** 2 / 12 * (n + 1) / (n - 1) if n > 1 else 0.0
        return np.array([mean]), np.array([[variance + mean**2]]), n
    if data["source"] == "synthetic" and data["generator"] == "blobs":
        clusters = data["clusters"]
        if len(clusters[0]["mean"]) > MAX_FEATURES_SCANNED:
            return None
        n = sum(c["n"] for c in clusters)
        means = np.array([c["mean"] for c in clusters], dtype=np.float64)  # (clusters, d)
        weights = np.array([c["n"] / n for c in clusters])
        spread = sum(w * c["std"] ** 2 for w, c in zip(weights, clusters))
        second = (means * weights[:, None]).T @ means + spread * np.eye(means.shape[1])
        return weights @ means, second, n
    if data["source"] == "inline":
        x = data["x"]
        width = len(x[0]) if isinstance(x[0], list) else 1
        if len(x) * width > INLINE_VALUES_SCANNED or width > MAX_FEATURES_SCANNED:
            return None
        rows = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        if rows.shape[1] != width:  # nested deeper (images): not a linear model's input
            return None
        return rows.mean(axis=0), rows.T @ rows / len(rows), len(rows)
    return None


def standardized(mean: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The moments after the input transform: mean 0, the covariance scaled to unit variances (a 0 std stays 1)."""
    covariance = second - np.outer(mean, mean)
    std = np.sqrt(np.clip(np.diag(covariance), 0, None))
    std = np.where(std > 0, std, 1.0)
    return np.zeros_like(mean), covariance / np.outer(std, std)


def target_lints(spec: dict, datasets: DatasetMoments | None = None) -> list[str]:
    """Regression targets far from unit scale, trained as they are."""
    if spec["task"] != "regression" or spec["data"].get("standardize_target"):
        return []
    moments = target_moments(spec["data"], datasets)
    if moments is None:
        return []
    mean, std = moments  # per target column
    limit = TARGET_SCALE_LIMIT
    far = (np.abs(mean) > limit) | (std > limit) | ((std > 0) & (std < 1 / limit))  # a constant has no scale
    if not far.any():
        return []
    i = int(np.argmax(far))
    which = f"target {i}" if len(mean) > 1 else "the targets"
    message = (
        f"data.standardize_target: {which} have mean {mean[i]:.3g} and std {std[i]:.3g}, far from unit scale "
        f"(|mean| or std above {limit:g}, or std below {1 / limit:g}): a network starts with outputs near 1 and its "
        "loss and gradients scale with the targets, so training is slow or diverges; set data.standardize_target "
        "(training then fits standardized targets; predictions stay in the targets' units)"
    )
    return [message]


def target_moments(data: dict, datasets: DatasetMoments | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """Per target column, the mean and std of the targets, from the spec (and an uploaded dataset's stored
    moments, from `datasets`); None where that is not cheap or not stored."""
    if data["source"] == "synthetic" and data["generator"] in ("linear", "polynomial"):
        coefficients = data["coefficients"] if data["generator"] == "polynomial" else [data["intercept"], data["slope"]]
        x = np.linspace(data["low"], data["high"], min(data["n"], GRID_POINTS))  # the generator's evenly spaced x
        y = np.polynomial.polynomial.polyval(x, coefficients)
        # noise: noise * U(0, 1) or noise * N(0, 1), drawn apart from x
        uniform = data.get("noise_kind", "uniform") == "uniform"
        noise, spread = data.get("noise", 0.0), (1 / 12 if uniform else 1.0)
        mean = y.mean() + (noise / 2 if uniform else 0.0)
        return np.array([mean]), np.array([math.sqrt(y.var() + noise**2 * spread)])
    if data["source"] == "inline":
        y = data["y"]
        width = len(y[0]) if isinstance(y[0], list) else 1
        if len(y) * width > INLINE_VALUES_SCANNED:
            return None
        rows = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        return rows.mean(axis=0), rows.std(axis=0)
    if data["source"] == "builtin" and data["name"] in BUILTIN_TARGET_MOMENTS:
        mean, std = BUILTIN_TARGET_MOMENTS[data["name"]]
        return np.array([mean]), np.array([std])
    if data["source"] == "dataset" and (stored := (datasets or {}).get(data["dataset_id"])) is not None:
        return np.array(stored["mean"], dtype=np.float64), np.array(stored["std"], dtype=np.float64)
    return None
