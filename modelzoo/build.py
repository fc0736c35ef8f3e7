"""Turn a model spec into a network, with its initialisation and output activation."""

import torch
from torch import nn

from modelzoo.cnn import build_cnn
from modelzoo.layers import OUTPUT_ACTIVATIONS, TargetScale, fit_moments
from modelzoo.linear import build_linear
from modelzoo.mlp import build_mlp
from modelzoo.sequential import build_sequential

BUILDERS = {"linear": build_linear, "mlp": build_mlp, "cnn": build_cnn, "sequential": build_sequential}


def build_network(spec, standardize_target: bool = False) -> nn.Sequential:
    """The network for a model spec (and the job's `data.standardize_target`); call under a seeded RNG for
    reproducible weights."""
    net = BUILDERS[spec.kind](spec)
    if spec.init is not None and spec.init.kind != "default":
        initialise(net, spec.init)
    if spec.output_activation is not None:
        net.append(OUTPUT_ACTIVATIONS[spec.output_activation]())
    if standardize_target:
        net.append(TargetScale(spec.out_features))
    return net


def fit_scales(net: nn.Sequential, data_spec, x_train: torch.Tensor, y_train: torch.Tensor) -> None:
    """Fit the input transform and the target scale to the training rows, where the job's data spec asks."""
    if data_spec.standardize:
        fit_moments(net[0], x_train.reshape(len(x_train), *net[0].input_shape))
    if data_spec.standardize_target:
        fit_moments(net[-1], y_train)


@torch.no_grad()
def initialise(net: nn.Module, init) -> None:
    """Overwrite every weight and bias, as tutorials that start from U(0,1) or zeros do."""
    for name, param in net.named_parameters():
        if init.kind == "zeros":
            param.zero_()
        else:
            param.uniform_(init.low, init.high)
