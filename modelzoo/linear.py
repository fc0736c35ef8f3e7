"""Linear (and logistic) regression: one affine map."""

from torch import nn

from modelzoo.layers import InputTransform


def build_linear(spec) -> nn.Sequential:
    return nn.Sequential(InputTransform((spec.in_features,)), nn.Linear(spec.in_features, spec.out_features))
