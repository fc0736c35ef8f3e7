"""Peak memory of training or running a network, from its spec alone: arithmetic, nothing allocated.

The service refuses a job or a prediction request whose estimate is over its limit before anything
runs, and the workers use the same figures (a sweep trains batched only when that fits). Sizes are
float32 bytes of what a CPU process grows by, aimed to be within a small factor of the measured peak
(tests/modelzoo/test_memory.py trains real steps to check it); the interpreter and torch are not in it.

Specs are read by duck typing (`kind`, `hidden`, `conv`, ...), so nothing here imports the service.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

FLOAT_BYTES = 4
INDEX_BYTES = 8  # max pooling keeps int64 argmax indices for the backward pass
# copies of the rows a job holds at once: as loaded, split, through the input transform, shuffled per epoch
DATA_COPIES = 4


@dataclass(frozen=True)
class Layer:
    """One tensor the forward pass makes, per row."""

    out: int  # elements of its output
    multiply_adds: int = 0
    indices: int = 0  # int64 elements kept for the backward pass (max pooling)


@dataclass(frozen=True)
class TrainingEstimate:
    """Peak bytes of training one job, and the parts they come from."""

    weights: int  # parameters, gradients, optimizer state, kept best weights, a checkpoint's copies
    activations: int  # what one step keeps for its backward pass, times rows per step
    data: int  # the rows, in the copies training makes
    rows_per_step: int

    @property
    def total(self) -> int:
        return self.weights + self.activations + self.data

    def describe(self) -> str:
        return (
            f"about {format_bytes(self.total)} (activations {format_bytes(self.activations)} for "
            f"{self.rows_per_step} rows per step, weights and optimizer {format_bytes(self.weights)}, "
            f"data {format_bytes(self.data)})"
        )


def together(estimates: list[TrainingEstimate]) -> TrainingEstimate:
    """Members trained as one computation (a batched sweep): each brings its weights, activations and data."""
    return TrainingEstimate(
        weights=sum(e.weights for e in estimates),
        activations=sum(e.activations for e in estimates),
        data=sum(e.data for e in estimates),
        rows_per_step=estimates[0].rows_per_step,
    )


def format_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def dense_layers(
    widths: list[int], activation_after_last: bool = False, dropout: list[float] | None = None, batch_norm: bool = False
) -> list[Layer]:
    """Linear layers through `widths` and what follows each hidden one (as modelzoo.layers.dense_stack)."""
    layers = []
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        layers.append(Layer(out=b, multiply_adds=a * b))
        hidden = i < len(widths) - 2
        if hidden and batch_norm:
            layers.append(Layer(out=2 * b))  # its output, and its backward's full-size temporary in train mode
        if hidden or activation_after_last:
            layers.append(Layer(out=b))
        if hidden and dropout and dropout[i] > 0:
            layers.append(Layer(out=2 * b))  # its output and the mask kept for the backward pass
    return layers


def conv_layers(model) -> list[Layer]:
    """Conv, batch norm, activation and pool of each block; map sizes as nn.Conv2d and nn.MaxPool2d compute them."""
    layers = []
    c, (h, w) = model.in_channels, model.input_size
    for block in model.conv:
        k, p, s = block.kernel_size, block.padding, block.stride
        h, w = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        positions = block.out_channels * h * w
        layers.append(Layer(out=positions, multiply_adds=positions * c * k * k))
        if getattr(model, "batch_norm", False):
            layers.append(Layer(out=2 * positions))  # batch norm: its output and its backward's full-size temporary
        layers.append(Layer(out=positions))  # the activation
        if block.pool is not None:
            h, w = h // block.pool.size, w // block.pool.size
            pooled = block.out_channels * h * w
            layers.append(Layer(out=pooled, indices=pooled if block.pool.kind == "max" else 0))
        c = block.out_channels
    return layers


def sequential_layers(model) -> list[Layer]:
    """One tensor per layer of a `sequential` stack, sizes followed as its spec checked them."""
    shape, layers = tuple(model.input_shape), []
    for layer in model.layers:
        kind, size = layer.kind, math.prod(shape)
        if kind == "linear":
            shape = (layer.out_features,)
            layers.append(Layer(out=layer.out_features, multiply_adds=size * layer.out_features))
            continue
        if kind == "conv2d":
            k, s, p = layer.kernel_size, layer.stride, layer.padding
            shape = (layer.out_channels, (shape[1] + 2 * p - k) // s + 1, (shape[2] + 2 * p - k) // s + 1)
            layers.append(Layer(out=math.prod(shape), multiply_adds=math.prod(shape) * size // shape[0] * k * k))
            continue
        if kind in ("max_pool", "avg_pool"):
            shape = (shape[0], shape[1] // layer.size, shape[2] // layer.size)
            pooled = math.prod(shape)
            layers.append(Layer(out=pooled, indices=pooled if kind == "max_pool" else 0))
        elif kind == "dropout":
            layers.append(Layer(out=2 * size))  # its output and the mask
        elif kind == "batch_norm":
            layers.append(Layer(out=2 * size))  # batch norm: its output and its backward's full-size temporary
        elif kind != "flatten":  # flatten is a view; activations make one tensor
            layers.append(Layer(out=size))
    return layers


def network_layers(model) -> list[Layer]:
    """Every tensor the network's forward pass makes, in order, the (transformed) input first."""
    if model.kind == "sequential":
        layers = [Layer(out=math.prod(model.input_shape)), *sequential_layers(model)]
    elif model.kind == "cnn":
        convs = conv_layers(model)
        flat = convs[-1].out
        layers = [Layer(out=model.in_channels * math.prod(model.input_size)), *convs]
        layers += dense_layers([flat, *model.hidden, model.out_features], False, *layer_options(model))
    else:
        hidden = model.hidden if model.kind == "mlp" else []
        dense = dense_layers([model.in_features, *hidden, model.out_features], False, *layer_options(model))
        layers = [Layer(out=model.in_features), *dense]
    if model.output_activation is not None:
        layers.append(Layer(out=model.out_features))
    return layers


def layer_options(model) -> tuple[list[float] | None, bool]:
    """Dropout rates per hidden layer and batch norm, for the families that have them."""
    if model.kind not in ("mlp", "cnn"):
        return None, False
    return model.dropout_rates(len(model.hidden)), model.batch_norm


def count_parameters(model) -> int:
    """Weights and biases (and batch norm's scales and shifts) of the network the spec describes."""
    if model.kind == "sequential":
        return sequential_parameters(model)
    norms = 2 * sum(model.hidden) if model.kind in ("mlp", "cnn") and model.batch_norm else 0
    if model.kind != "cnn":
        widths = [model.in_features, *(model.hidden if model.kind == "mlp" else []), model.out_features]
        return norms + sum((a + 1) * b for a, b in zip(widths, widths[1:]))
    total, c = 0, model.in_channels
    for block in model.conv:
        total += block.out_channels * (c * block.kernel_size**2 + 1)
        total += 2 * block.out_channels if model.batch_norm else 0
        c = block.out_channels
    widths = [conv_layers(model)[-1].out, *model.hidden, model.out_features]
    return norms + total + sum((a + 1) * b for a, b in zip(widths, widths[1:]))


def sequential_parameters(model) -> int:
    total, shape = 0, tuple(model.input_shape)
    for layer in model.layers:
        if layer.kind == "linear":
            total += (shape[0] + 1) * layer.out_features
            shape = (layer.out_features,)
        elif layer.kind == "conv2d":
            total += layer.out_channels * (shape[0] * layer.kernel_size**2 + 1)
            k, s, p = layer.kernel_size, layer.stride, layer.padding
            shape = (layer.out_channels, (shape[1] + 2 * p - k) // s + 1, (shape[2] + 2 * p - k) // s + 1)
        elif layer.kind == "batch_norm":
            total += 2 * shape[0]
        elif layer.kind in ("max_pool", "avg_pool"):
            shape = (shape[0], shape[1] // layer.size, shape[2] // layer.size)
        elif layer.kind == "flatten":
            shape = (math.prod(shape),)
    return total


def training_bytes_per_row(model) -> int:
    """What one row costs a training step: every tensor autograd keeps, and the two largest gradients in flight."""
    layers = network_layers(model)
    kept = sum(layer.out for layer in layers) * FLOAT_BYTES + sum(layer.indices for layer in layers) * INDEX_BYTES
    return kept + 2 * max(layer.out for layer in layers) * FLOAT_BYTES


def forward_bytes_per_row(model) -> int:
    """What one row costs a forward pass without gradients: the widest layer's input and output at once."""
    outs = [layer.out for layer in network_layers(model)]
    return max(a + b for a, b in zip(outs, outs[1:])) * FLOAT_BYTES


def multiply_adds_per_row(model) -> int:
    return sum(layer.multiply_adds for layer in network_layers(model))


def optimizer_slots(optimizer) -> int:
    """Tensors the size of the parameters an optimizer keeps: Adam's two moments, SGD's momentum buffer."""
    if optimizer.kind in ("adam", "adamw"):
        return 2
    return 1 if optimizer.momentum else 0


def estimate_training(spec, n_rows: int, sample_size: int, target_width: int) -> TrainingEstimate:
    """Peak bytes of training `spec` on `n_rows` rows of `sample_size` numbers and `target_width` targets."""
    params = count_parameters(spec.model)
    slots = optimizer_slots(spec.optimizer)
    # parameters, gradients, optimizer state; a checkpoint copies weights and state twice (tensors, then bytes)
    weights = params * (2 + slots) + 2 * params * (1 + slots)
    if spec.early_stopping is not None:
        weights += params  # the best epoch's weights
    n_val = int(round(n_rows * spec.data.validation_fraction))
    n_test = int(round(n_rows * getattr(spec.data, "test_fraction", 0.0)))
    n_train = max(1, n_rows - n_val - n_test)
    rows = n_train if spec.batch_size is None else min(spec.batch_size, n_train)
    step = rows * training_bytes_per_row(spec.model)
    # held-out rows go through in one pass, no gradients (the test split at the final evaluation)
    evaluation = max(n_val, n_test) * forward_bytes_per_row(spec.model)
    data = n_rows * (sample_size + target_width) * FLOAT_BYTES * DATA_COPIES
    return TrainingEstimate(
        weights=weights * FLOAT_BYTES, activations=max(step, evaluation), data=data, rows_per_step=rows
    )
