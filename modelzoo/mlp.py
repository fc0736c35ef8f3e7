"""Multi-layer perceptron: dense layers with a non-linearity (and optional batch norm, dropout) between them."""

from torch import nn

from modelzoo.layers import InputTransform, dense_stack


def build_mlp(spec) -> nn.Sequential:
    widths = [spec.in_features, *spec.hidden, spec.out_features]
    hidden = dense_stack(widths, spec.activation, spec.dropout_rates(len(spec.hidden)), spec.batch_norm)
    return nn.Sequential(InputTransform((spec.in_features,)), *hidden)
