"""Turn a model spec into a network, with its initialisation and output activation."""

import torch
from torch import nn

from modelzoo.cnn import build_cnn
from modelzoo.layers import OUTPUT_ACTIVATIONS
from modelzoo.linear import build_linear
from modelzoo.mlp import build_mlp
from modelzoo.sequential import build_sequential

BUILDERS = {"linear": build_linear, "mlp": build_mlp, "cnn": build_cnn, "sequential": build_sequential}


def build_network(spec) -> nn.Sequential:
    """The network for a model spec; call under a seeded RNG for reproducible weights."""
    net = BUILDERS[spec.kind](spec)
    if spec.init is not None and spec.init.kind != "default":
        initialise(net, spec.init)
    if spec.output_activation is not None:
        net.append(OUTPUT_ACTIVATIONS[spec.output_activation]())
    return net


@torch.no_grad()
def initialise(net: nn.Module, init) -> None:
    """Overwrite every weight and bias, as tutorials that start from U(0,1) or zeros do."""
    for name, param in net.named_parameters():
        if init.kind == "zeros":
            param.zero_()
        else:
            param.uniform_(init.low, init.high)
