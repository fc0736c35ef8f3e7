"""Small convolutional network: conv (+ batch norm) (+ pool) blocks, then dense layers."""

import math

from torch import nn

from modelzoo.layers import ACTIVATIONS, InputTransform, dense_stack

POOLS = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


def build_cnn(spec) -> nn.Sequential:
    layers: list[nn.Module] = [InputTransform((spec.in_channels, *spec.input_size))]
    channels = spec.in_channels
    for block in spec.conv:
        layers.append(nn.Conv2d(channels, block.out_channels, block.kernel_size, block.stride, block.padding))
        if spec.batch_norm:
            layers.append(nn.BatchNorm2d(block.out_channels))
        layers.append(ACTIVATIONS[spec.activation]())
        if block.pool is not None:
            layers.append(POOLS[block.pool.kind](block.pool.size))
        channels = block.out_channels
    flat = math.prod(spec.feature_map_shapes()[-1])  # C*H*W of the last feature map
    layers.append(nn.Flatten())
    widths = [flat, *spec.hidden, spec.out_features]
    layers.extend(dense_stack(widths, spec.activation, spec.dropout_rates(len(spec.hidden)), spec.batch_norm))
    return nn.Sequential(*layers)
