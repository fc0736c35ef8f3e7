"""One training step, and one epoch of them, with no work a step does not need.

Pure torch and device-agnostic; the same code runs eagerly and inside a CUDA graph capture, so it
never syncs with the host. What the plain loop repeats every step is done once here:
- the input transform (reshape + standardisation with fixed buffers) is applied to the rows once, a target
  scale's inverse to the targets (modelzoo.layers.TargetScale: the loss is the standardized one);
- layers are called through `forward` and losses through `torch.nn.functional` (no module hooks);
- gradients come from `torch.autograd.grad`, so there is no `.grad` to zero;
- plain SGD (no momentum, no weight decay) is one `_foreach_add_`, the very update
  `torch.optim.SGD` makes, without its ~45 us of per-call bookkeeping on this scale of model.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from modelzoo.layers import has_modal_layers, trained_layers

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def make_loss(spec) -> LossFn:
    """The loss as a function: the same arithmetic as the nn loss modules, without module calls."""
    if spec.loss == "mse":
        return F.mse_loss
    if spec.loss == "sse":
        return lambda out, y: F.mse_loss(out, y, reduction="sum")
    if spec.loss == "cross_entropy":
        return F.cross_entropy
    # the tutorial's sigmoid-then-BCELoss, or the stable fused form when there is no sigmoid
    if spec.model.output_activation == "sigmoid":
        return F.binary_cross_entropy
    return F.binary_cross_entropy_with_logits


def count_correct(
    outputs: torch.Tensor, y: torch.Tensor, loss: str, output_activation: str | None, stacked: bool = False
) -> torch.Tensor:
    """Correct predictions in a batch, as a device scalar; `stacked` (K, rows, ...): per member, (K,). No sync."""
    if loss == "bce":
        threshold = 0.5 if output_activation == "sigmoid" else 0.0
        hits = (outputs > threshold).to(y.dtype) == y
    else:
        hits = outputs.argmax(dim=-1) == y
    return hits.flatten(1).sum(dim=1) if stacked else hits.sum()


def plain_sgd_lr(optimizer: torch.optim.Optimizer) -> float | None:
    """The learning rate when the optimizer is stateless SGD, whose step is `p -= lr * g`; else None."""
    if type(optimizer) is not torch.optim.SGD or len(optimizer.param_groups) != 1:
        return None
    group = optimizer.param_groups[0]
    stateless = group["momentum"] == 0 and group["weight_decay"] == 0 and not group["maximize"]
    return float(group["lr"]) if stateless else None


class Step:
    """Forward, loss, gradients and update for one batch of already-transformed rows."""

    def __init__(self, spec, net: nn.Sequential, optimizer: torch.optim.Optimizer):
        self.layers = [module.forward for module in trained_layers(net)]  # the transforms ran on the data
        self.loss = make_loss(spec)
        self.params = [p for p in net.parameters() if p.requires_grad]
        self.net = net
        # dropout and batch norm: train mode for steps, eval mode for held-out rows
        self.modal = has_modal_layers(net)
        # what the kept (best) weights are: the parameters, and batch norm's running statistics
        self.kept = self.params + [b for name, b in net.named_buffers() if name.endswith(("running_mean", "running_var"))]
        self.clip = spec.optimizer.clip_grad_norm
        self.optimizer = optimizer
        self.lr = plain_sgd_lr(optimizer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Train on one batch; returns the batch's loss and outputs, detached, on the device."""
        out = self.forward(x)
        loss = self.loss(out, y)
        grads = torch.autograd.grad(loss, self.params)
        if self.clip is not None:
            grads = clip_grad_norm(grads, self.clip)
        self.update(grads)
        return loss.detach(), out.detach()

    def update(self, grads: tuple[torch.Tensor, ...]) -> None:
        if self.lr is not None:
            with torch.no_grad():
                torch._foreach_add_(self.params, grads, alpha=-self.lr)
            return
        for p, g in zip(self.params, grads):
            p.grad = g
        self.optimizer.step()

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and outputs on held-out rows, without training, in eval mode."""
        if self.modal:
            self.net.eval()
        out = self.forward(x)
        if self.modal:
            self.net.train()
        return self.loss(out, y), out


def clip_grad_norm(grads: tuple[torch.Tensor, ...], max_norm: float) -> list[torch.Tensor]:
    """torch.nn.utils.clip_grad_norm_'s scaling, on gradients that are not `.grad` yet; no host sync."""
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    scale = (max_norm / (total + 1e-6)).clamp(max=1.0)
    return torch._foreach_mul(grads, scale)


class Batches:
    """How one epoch splits the training rows, and how its batch losses make the epoch's loss."""

    def __init__(self, n: int, batch_size: int, loss: str, device: torch.device):
        self.n, self.size = n, batch_size
        self.bounds = [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
        # the epoch's loss on the same scale as a full batch: mean losses weigh by rows, sums add up
        weights = [1.0 if loss == "sse" else (end - start) / n for start, end in self.bounds]
        self.weights = torch.tensor(weights, device=device)

    @property
    def full(self) -> bool:
        return len(self.bounds) == 1

    def epoch_loss(self, losses: list[torch.Tensor]) -> torch.Tensor:
        return losses[0] if self.full else torch.dot(torch.stack(losses), self.weights)


def transform_rows(net: nn.Sequential, x: torch.Tensor | None) -> torch.Tensor | None:
    """The input transform applied once: its buffers are fixed while training, so every epoch would repeat it."""
    if x is None:
        return None
    with torch.no_grad():
        return net[0](x).contiguous()
