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


class TargetScale(nn.Module):
    """The last layer with `data.standardize_target`: outputs in the targets' units, `z * std + mean`.

    The layers before it are trained on standardized targets, `(y - mean) / std` (`standardized_targets`,
    applied to the targets once, as the input transform is to the inputs), so their loss is the standardized
    one; the buffers travel with the weights, so /predict, the evaluation and the exports answer in the
    targets' own units.
    """

    def __init__(self, width: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("std", torch.ones(width))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.std + self.mean  # (N, width)


@torch.no_grad()
def fit_moments(transform: InputTransform | TargetScale, rows: torch.Tensor) -> None:
    """Set a transform's mean and std from rows (N, *its shape); a zero std (or one row) is stored as 1."""
    transform.mean.copy_(rows.mean(dim=0))
    std = rows.std(dim=0) if len(rows) > 1 else torch.ones_like(transform.std)
    transform.std.copy_(torch.where(std > 0, std, torch.ones_like(std)))


def trained_layers(net: nn.Sequential) -> nn.Sequential:
    """The layers a training step runs: not the input transform (applied to the rows once), nor a target scale
    (its inverse is applied to the targets once)."""
    return net[1:-1] if isinstance(net[-1], TargetScale) else net[1:]


def standardized_targets(net: nn.Sequential, y: torch.Tensor | None) -> torch.Tensor | None:
    """The targets the trained layers are fit to: standardized when the network ends in a target scale."""
    if y is None or not isinstance(net[-1], TargetScale):
        return y
    return ((y - net[-1].mean) / net[-1].std).contiguous()


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
