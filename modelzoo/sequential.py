"""A `sequential` model: the spec's layers, one module each, shapes as the spec checked them."""

import math

from torch import nn

from modelzoo.layers import ACTIVATIONS, InputTransform


def build_sequential(spec) -> nn.Sequential:
    layers: list[nn.Module] = [InputTransform(tuple(spec.input_shape))]
    shape = tuple(spec.input_shape)
    for layer in spec.layers:
        layers.append(make_layer(layer, shape))
        shape = next_shape(layer, shape)
    return nn.Sequential(*layers)


def make_layer(layer, shape: tuple[int, ...]) -> nn.Module:
    """The module for one layer spec, given the shape of one sample coming into it."""
    kind = layer.kind
    if kind == "linear":
        return nn.Linear(shape[0], layer.out_features)
    if kind == "conv2d":
        return nn.Conv2d(shape[0], layer.out_channels, layer.kernel_size, layer.stride, layer.padding)
    if kind == "max_pool":
        return nn.MaxPool2d(layer.size)
    if kind == "avg_pool":
        return nn.AvgPool2d(layer.size)
    if kind == "dropout":
        return nn.Dropout(layer.rate)
    if kind == "batch_norm":
        return nn.BatchNorm1d(shape[0]) if len(shape) == 1 else nn.BatchNorm2d(shape[0])
    if kind == "flatten":
        return nn.Flatten()
    return ACTIVATIONS[kind]()


def next_shape(layer, shape: tuple[int, ...]) -> tuple[int, ...]:
    """One sample's shape after the layer (the spec checked at submit that it is not empty)."""
    kind = layer.kind
    if kind == "linear":
        return (layer.out_features,)
    if kind == "conv2d":
        k, s, p = layer.kernel_size, layer.stride, layer.padding
        return (layer.out_channels, (shape[1] + 2 * p - k) // s + 1, (shape[2] + 2 * p - k) // s + 1)
    if kind in ("max_pool", "avg_pool"):
        return (shape[0], shape[1] // layer.size, shape[2] // layer.size)
    if kind == "flatten":
        return (math.prod(shape),)
    return shape
