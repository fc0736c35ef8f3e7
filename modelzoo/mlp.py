"""Multi-layer perceptron: dense layers with a non-linearity between them."""

from torch import nn

from modelzoo.layers import InputTransform, dense_stack


def build_mlp(spec) -> nn.Sequential:
    widths = [spec.in_features, *spec.hidden, spec.out_features]
    return nn.Sequential(InputTransform((spec.in_features,)), *dense_stack(widths, spec.activation))
