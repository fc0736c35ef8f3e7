"""Building blocks every network in the zoo shares."""

import torch
from torch import nn

ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "silu": nn.SiLU,
}
OUTPUT_ACTIVATIONS = {"sigmoid": lambda: nn.Sigmoid(), "softmax": lambda: nn.Softmax(dim=1)}
# layers that act differently in training and in eval mode: a network holding one switches modes
MODAL = (nn.Dropout, nn.BatchNorm1d, nn.BatchNorm2d)


class InputTransform(nn.Module):
    """Reshapes a batch to the network's input shape and standardises it.

    The mean and std are buffers, so they travel with the weights and predictions see the
    same transform as training did. Identity (mean 0, std 1) unless the job asked to standardise.
    """

    def __init__(self, input_shape: tuple[int, ...]):
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.register_buffer("mean", torch.zeros(self.input_shape))
        self.register_buffer("std", torch.ones(self.input_shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], *self.input_shape)  # (N, *input_shape)
        return (x - self.mean) / self.std


def dense_stack(
    widths: list[int], activation: str, dropout: list[float] | None = None, batch_norm: bool = False
) -> list[nn.Module]:
    """Linear layers through `widths`; after each but the last: batch norm, the activation, dropout."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            if batch_norm:
                layers.append(nn.BatchNorm1d(b))
            layers.append(ACTIVATIONS[activation]())
            if dropout and dropout[i] > 0:
                layers.append(nn.Dropout(dropout[i]))
    return layers


def has_modal_layers(net: nn.Module) -> bool:
    return any(isinstance(m, MODAL) for m in net.modules())
