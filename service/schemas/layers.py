"""Layer options of the model spec: activations, dropout, batch norm, and the `sequential` kind.

A `sequential` model is any feed-forward stack of the zoo's layers; its shapes are followed layer by
layer at submit, so a stack that cannot run is a 422 naming the layer (index and kind).
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Union

from pydantic import Field, model_validator

from service.schemas.data import Strict
from service.schemas.limits import LIMITS

Activation = Literal["relu", "tanh", "sigmoid", "gelu", "leaky_relu", "elu", "silu"]
OutputActivation = Literal["sigmoid", "softmax"]
DropoutRate = Annotated[float, Field(ge=0.0, lt=1.0)]
Width = Annotated[int, Field(ge=1, le=LIMITS.max_layer_width)]
Small = Annotated[int, Field(ge=1, le=16)]
MAX_SEQUENTIAL_LAYERS = 4 * LIMITS.max_layers  # each linear or conv brings its activation, norm and dropout


class LinearLayer(Strict):
    kind: Literal["linear"]
    out_features: Width


class Conv2dLayer(Strict):
    kind: Literal["conv2d"]
    out_channels: Width
    kernel_size: Small
    stride: Small = 1
    padding: Annotated[int, Field(ge=0, le=16)] = 0


class PoolLayer(Strict):
    kind: Literal["max_pool", "avg_pool"]
    size: Small


class DropoutLayer(Strict):
    kind: Literal["dropout"]
    rate: DropoutRate


class BatchNormLayer(Strict):
    kind: Literal["batch_norm"]


class FlattenLayer(Strict):
    kind: Literal["flatten"]


class ActivationLayer(Strict):
    kind: Activation


Layer = Annotated[
    Union[LinearLayer, Conv2dLayer, PoolLayer, DropoutLayer, BatchNormLayer, FlattenLayer, ActivationLayer],
    Field(discriminator="kind"),
]


def layer_shapes(input_shape: tuple[int, ...], layers: list) -> list[tuple[int, ...]]:
    """The shape of one sample after each layer; ValueError naming the first layer that cannot take its input."""
    shape, shapes = tuple(input_shape), []
    for i, layer in enumerate(layers):
        where = f"layers[{i}] ({layer.kind})"
        if layer.kind == "linear":
            if len(shape) != 1:
                raise ValueError(f"{where} needs a flat input, got shape {list(shape)}: put a flatten layer before it")
            shape = (layer.out_features,)
        elif layer.kind in ("conv2d", "max_pool", "avg_pool"):
            if len(shape) != 3:
                raise ValueError(f"{where} needs (channels, height, width) input, got shape {list(shape)}")
            c, h, w = shape
            if layer.kind == "conv2d":
                k, s, p = layer.kernel_size, layer.stride, layer.padding
                c, h, w = layer.out_channels, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
            else:
                h, w = h // layer.size, w // layer.size
            if h < 1 or w < 1:
                raise ValueError(f"{where} shrinks the {shape[1]}x{shape[2]} map to nothing")
            shape = (c, h, w)
        elif layer.kind == "batch_norm" and len(shape) not in (1, 3):
            raise ValueError(f"{where} takes a flat or (channels, height, width) input, got shape {list(shape)}")
        elif layer.kind == "flatten":
            shape = (math.prod(shape),)
        shapes.append(shape)
    return shapes


class SequentialBase(Strict):
    """Any feed-forward stack: `input_shape` is one sample's ([features] or [channels, height, width])."""

    kind: Literal["sequential"]
    input_shape: list[Annotated[int, Field(ge=1, le=LIMITS.max_layer_width)]] = Field(min_length=1, max_length=3)
    layers: list[Layer] = Field(min_length=1, max_length=MAX_SEQUENTIAL_LAYERS)
    output_activation: OutputActivation | None = None

    @model_validator(mode="after")
    def _check_shapes(self) -> SequentialBase:
        if len(self.input_shape) == 2:
            raise ValueError("input_shape is [features] or [channels, height, width]")
        last = self.output_shape()
        if len(last) != 1:
            raise ValueError(f"the last layer gives shape {list(last)}; the output must be flat: end with linear")
        if not any(layer.kind in ("linear", "conv2d") for layer in self.layers):
            raise ValueError("layers hold no linear or conv2d layer: nothing to train")
        return self

    def output_shape(self) -> tuple[int, ...]:
        return layer_shapes(tuple(self.input_shape), self.layers)[-1]

    @property
    def out_features(self) -> int:
        return self.output_shape()[0]
