"""K stacked dense networks trained by a hand-written forward and backward, members in cache-sized groups.

What `StackedTrainer` runs instead of `vmap(functional_call)` + autograd when every layer is Linear,
ReLU, Tanh, Sigmoid or a final Softmax(dim=1) (the zoo's linear and mlp families). On a CPU the
stacked activations of K members grow with K x rows x hidden, and every op of a step walks them once
more; so members go through forward, loss and backward in groups of G whose activations stay in the
cache, and only then does the next group start.

Layout: activations are (G, features, rows), rows contiguous, so each layer is one `baddbmm` (a
broadcast multiply-add for one input feature), elementwise ops run over long contiguous rows, and the
gradients of a layer are `dz @ a_prev^T` (one `bmm`) and `dz.sum(-1)`. The loss's gradient is written in closed form; the
activation backwards are autograd's own kernels (`threshold_backward`, `tanh_backward`, ...).

Weights, gradients and optimizer state are each one flat tensor of K x P floats, parameter after
parameter, each parameter's (K, *shape) block contiguous; the update is a few ops over all of it, with
per-member hyperparameters repeated per float. The arithmetic is torch.optim's, as in
`StackedTrainer.update`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8
BCE_EPS = 1e-12  # what binary_cross_entropy's backward clamps input * (1 - input) to
# floats of activations (and their gradients) a group of members may hold: 8 MiB, a quarter of this
# CPU's L3. bench/batched_step.py measured groups of 32 members on 1000 rows (~2M floats) fastest, ahead
# of 4-16 (more ops of less work each: dispatch) and of 64-256 (activations that leave the cache).
GROUP_FLOATS = 2 * 1024 * 1024
ACTIVATIONS = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid"}


def dense_plan(layers: nn.Sequential) -> list[tuple[str, str | None]] | None:
    """Per Linear layer, its parameter prefix and the activation after it; None when not a dense stack."""
    plan: list[tuple[str, str | None]] = []
    modules = list(layers.named_children())
    for i, (name, module) in enumerate(modules):
        after_linear = bool(plan) and plan[-1][1] is None
        is_output_softmax = isinstance(module, nn.Softmax) and module.dim == 1 and i == len(modules) - 1
        if isinstance(module, nn.Linear) and module.bias is not None:
            plan.append((name, None))
        elif after_linear and (type(module) in ACTIVATIONS or is_output_softmax):
            plan[-1] = (plan[-1][0], "softmax" if is_output_softmax else ACTIVATIONS[type(module)])
        else:
            return None
    return plan or None


def activate_(z: torch.Tensor, kind: str | None) -> None:
    """The activation in place on (G, features, rows)."""
    if kind == "relu":
        z.relu_()
    elif kind == "tanh":
        z.tanh_()
    elif kind == "sigmoid":
        z.sigmoid_()
    elif kind == "softmax":
        # over dim 1 of (G, C, rows): with C ~ 3, torch's softmax over a last dim is ~20x slower
        z.copy_(torch.softmax(z, dim=1))


def activation_backward_(grad: torch.Tensor, out: torch.Tensor, kind: str | None) -> None:
    """grad <- grad through the activation whose output is `out`, in place, with autograd's kernels."""
    if kind == "relu":
        torch.ops.aten.threshold_backward.grad_input(grad, out, 0, grad_input=grad)
    elif kind == "tanh":
        torch.ops.aten.tanh_backward.grad_input(grad, out, grad_input=grad)
    elif kind == "sigmoid":
        torch.ops.aten.sigmoid_backward.grad_input(grad, out, grad_input=grad)
    elif kind == "softmax":
        grad.copy_(torch.ops.aten._softmax_backward_data(grad, out, 1, out.dtype))


def loss_and_grad(
    out: torch.Tensor, y: torch.Tensor, loss: str, sigmoid_out: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-member losses (G,) and d(their sum)/d(out), for outputs (G, O, rows).

    The same arithmetic as `workers.engines.steps.make_loss` and its autograd backward; targets are (G, rows)
    class indices for cross-entropy, else (G, O, rows).
    """
    if loss in ("mse", "sse"):
        diff = out - y
        losses = diff.square().sum((1, 2)) if loss == "sse" else diff.square().mean((1, 2))
        return losses, diff.mul_(2.0 if loss == "sse" else 2.0 / diff[0].numel())
    if loss == "cross_entropy":
        logp = torch.log_softmax(out, dim=1)  # (G, C, rows)
        index = y.unsqueeze(1)  # (G, 1, rows)
        losses = -logp.gather(1, index).squeeze(1).mean(1)
        grad = logp.exp_().scatter_add_(1, index, torch.full_like(index, -1, dtype=out.dtype))
        return losses, grad.div_(out.shape[-1])
    numel = out[0].numel()
    if sigmoid_out:  # binary_cross_entropy on probabilities
        losses = F.binary_cross_entropy(out, y, reduction="none").mean((1, 2))
        return losses, (out - y).div_((out * (1 - out)).clamp_(min=BCE_EPS)).div_(numel)
    losses = F.binary_cross_entropy_with_logits(out, y, reduction="none").mean((1, 2))
    return losses, torch.sigmoid(out).sub_(y).div_(numel)


def affine_into(out: torch.Tensor, w: torch.Tensor, b: torch.Tensor, a: torch.Tensor) -> None:
    """out = w @ a + b, for w (n, o, i), b (n, o), a (n, i, rows)."""
    if w.shape[2] == 1:  # an outer product (the tutorials' 1-feature inputs): bmm takes ~1.5x longer
        torch.mul(w, a, out=out).add_(b.unsqueeze(-1))
    else:
        torch.baddbmm(b.unsqueeze(-1), w, a, out=out)


def flat_views(flat: torch.Tensor, k: int, shapes: dict[str, torch.Size]) -> dict[str, torch.Tensor]:
    """Named contiguous (K, *shape) views of consecutive blocks of a flat tensor of K x P floats."""
    views, start = {}, 0
    for name, shape in shapes.items():
        size = k * math.prod(shape)
        views[name] = flat[start : start + size].view(k, *shape)
        start += size
    return views


def per_float(values: torch.Tensor, shapes: dict[str, torch.Size]) -> torch.Tensor:
    """A (K,) per-member value repeated for every float of the flat layout."""
    return torch.cat([values.repeat_interleave(math.prod(shape)) for shape in shapes.values()])


class StackedDense:
    """Forward, loss and backward of K stacked dense networks, into one flat gradient."""

    def __init__(self, plan, flat: torch.Tensor, shapes: dict[str, torch.Size], k: int, loss: str):
        """`flat`: the K members' weights, laid out by `flat_views(flat, k, shapes)`; trained in place."""
        self.plan, self.loss, self.shapes, self.K, self.flat = plan, loss, shapes, k, flat
        device = flat.device
        self.params = flat_views(self.flat, self.K, self.shapes)
        self.grad = torch.zeros_like(self.flat)
        self.grads = flat_views(self.grad, self.K, self.shapes)
        self.x_seen = self.xt = None  # the last input, and its (in, rows) rows-contiguous copy
        self.widths = [self.params[f"{prefix}.weight"].shape[1] for prefix, _ in plan]  # each layer's out
        self.sigmoid_out = plan[-1][1] == "sigmoid"
        self.on_cpu = device.type == "cpu"
        self.group: int | None = None  # members per group; None sizes groups to GROUP_FLOATS
        self.buffers: dict[tuple[int, int], list[torch.Tensor]] = {}  # (G, rows) -> hidden activations, 2 grads

    def group_size(self, rows: int) -> int:
        if self.group is not None:
            return min(self.group, self.K)
        if not self.on_cpu:  # a GPU wants one launch per op, not cache blocking
            return self.K
        hidden = sum(self.widths[:-1]) + 2 * max(self.widths[:-1], default=0)
        return max(1, min(self.K, GROUP_FLOATS // max(1, hidden * rows)))

    def group_buffers(self, g: int, rows: int) -> list[torch.Tensor]:
        """Preallocated (g, width, rows) activations per hidden layer, then two gradient buffers."""
        key = (g, rows)
        if key not in self.buffers:
            widest = max(self.widths[:-1], default=1)
            shapes = [*self.widths[:-1], widest, widest]
            self.buffers[key] = [torch.empty(g, w, rows, device=self.flat.device) for w in shapes]
        return self.buffers[key]

    def step(self, x, x_dim, y, y_dim) -> tuple[torch.Tensor, torch.Tensor]:
        """Fill `self.grad`; returns the losses (K,) and the outputs (K, rows, O)."""
        rows = x.shape[-2]
        if x is not self.x_seen:  # a full batch is the same tensor every epoch: transposed once
            # (in, rows) or (K, in, rows), contiguous: a gemm reading (rows, in) with in ~ 2 is ~5x slower
            self.x_seen, self.xt = x, x.transpose(-1, -2).contiguous()
        xt = self.xt
        yt = y if self.loss == "cross_entropy" else y.transpose(-1, -2)  # targets laid out as the outputs
        out = torch.empty(self.K, self.widths[-1], rows, device=x.device)  # a new one: the caller keeps it
        losses = torch.empty(self.K, device=x.device)
        g = self.group_size(rows)
        for start in range(0, self.K, g):
            members = slice(start, min(start + g, self.K))
            n = members.stop - start
            a0 = xt[members] if x_dim is not None else xt.expand(n, *xt.shape)
            ys = yt[members] if y_dim is not None else yt.expand(n, *yt.shape)
            losses[members] = self.group_step(members, a0, ys, out[members], self.group_buffers(g, rows))
        # row-major, as vmap returned them: the trainer's argmax over 3 classes is ~7x slower on the view
        return losses, out.transpose(1, 2).contiguous()

    def group_step(self, members: slice, a0, y, out, buffers) -> torch.Tensor:
        """Forward, loss and backward of members `members`; `out` (n, O, rows) receives their outputs."""
        n = members.stop - members.start
        acts, grad_bufs = [a0, *(b[:n] for b in buffers[:-2]), out], [b[:n] for b in buffers[-2:]]
        for i, (prefix, kind) in enumerate(self.plan):  # acts[i] is layer i's input, acts[i + 1] its output
            w, b = self.params[f"{prefix}.weight"][members], self.params[f"{prefix}.bias"][members]
            affine_into(acts[i + 1], w, b, acts[i])
            activate_(acts[i + 1], kind)
        losses, dz = loss_and_grad(out, y, self.loss, self.sigmoid_out)
        activation_backward_(dz, out, self.plan[-1][1])
        for i in range(len(self.plan) - 1, -1, -1):
            prefix = self.plan[i][0]
            weight_grad = self.grads[f"{prefix}.weight"][members]
            if acts[i].stride(0) == 0:  # the rows all members share: one (n*out, rows) @ (rows, in) gemm
                rows_out = weight_grad.view(-1, weight_grad.shape[-1])  # (n*out, in)
                torch.mm(dz.reshape(-1, dz.shape[-1]), acts[i][0].t(), out=rows_out)
            else:
                torch.bmm(dz, acts[i].transpose(1, 2), out=weight_grad)
            torch.sum(dz, -1, out=self.grads[f"{prefix}.bias"][members])
            if i > 0:
                w = self.params[f"{prefix}.weight"][members]
                da = grad_bufs[i % 2][:, : w.shape[2]]
                if w.shape[1] == 1:  # an outer product (1 output): bmm takes ~3x longer
                    torch.mul(w.transpose(1, 2), dz, out=da)
                else:
                    torch.bmm(w.transpose(1, 2), dz, out=da)
                activation_backward_(da, acts[i], self.plan[i - 1][1])
                dz = da
        return losses


class FlatOptimizer:
    """Per-member SGD (momentum, weight decay), Adam and AdamW over flat weights and gradients: the one copy of
    torch.optim's arithmetic for stacked members, whichever path made the gradients.

    Its state lives in flat tensors whose per-parameter views it puts in `state` (the trainer's
    dict, which checkpoints read); state already there, as a resume loads it, is taken over first.
    """

    def __init__(self, kind: str, lr, momentum, weight_decay, shapes: dict, state: dict):
        self.kind, self.shapes, self.state, self.K = kind, shapes, state, len(lr)
        self.decays = self.uses_momentum = False
        self.set_hyperparameters(lr, momentum, weight_decay)
        self.flat_state: dict[str, torch.Tensor] = {}

    def set_hyperparameters(self, lr: torch.Tensor, momentum: torch.Tensor, weight_decay: torch.Tensor) -> None:
        """Per-member values (K,) from the next step on (decay and momentum, once used, stay in the arithmetic)."""
        self.lr, self.momentum, self.wd = (per_float(v, self.shapes) for v in (lr, momentum, weight_decay))
        self.decays = self.decays or bool((weight_decay != 0).any())
        self.uses_momentum = self.uses_momentum or bool((momentum != 0).any())

    def set_lr(self, lr: torch.Tensor) -> None:
        """New per-member rates (K,), as a schedule sets them each epoch."""
        self.lr = per_float(lr, self.shapes)

    def slot(self, key: str, like: torch.Tensor) -> torch.Tensor:
        if key not in self.flat_state:
            buf = torch.zeros_like(like)
            for name, view in flat_views(buf, self.K, self.shapes).items():
                saved = self.state.get(name, {}).get(key)
                if saved is not None:
                    view.copy_(saved)
                self.state.setdefault(name, {})[key] = view
            self.flat_state[key] = buf
        return self.flat_state[key]

    @torch.no_grad()
    def step(self, p: torch.Tensor, g: torch.Tensor, step: int | torch.Tensor, slots: dict | None = None) -> None:
        """One update of flat weights `p` by flat gradients `g` (which it may overwrite); `step` counts from 1. A
        compiled step (engines/compiled.py) passes the count as a tensor (its graph would otherwise hold one count)
        and the flat state as `slots` (its arguments are all it changes)."""
        slot = (lambda key: slots[key]) if slots is not None else (lambda key: self.slot(key, p))
        if self.kind == "sgd":
            if self.decays:
                g = g.add_(self.wd * p)
            if self.uses_momentum:  # a zero buffer times momentum plus g is g: torch's first step
                g = slot("momentum").mul_(self.momentum).add_(g)
            p.sub_(self.lr * g)
            return
        if self.kind == "adamw":
            p.mul_(1 - self.lr * self.wd)
        elif self.decays:
            g = g.add_(self.wd * p)
        beta1, beta2 = ADAM_BETAS
        exp_avg, exp_avg_sq = slot("exp_avg"), slot("exp_avg_sq")
        exp_avg.lerp_(g, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        denom = (exp_avg_sq.sqrt() / (1 - beta2**step) ** 0.5).add_(ADAM_EPS)
        p.sub_(self.lr / (1 - beta1**step) * exp_avg / denom)


def dense_path(layers: nn.Sequential, flat: torch.Tensor, shapes: dict, k: int, loss: str) -> StackedDense | None:
    """The hand-written path for these layers, or None when they are not a dense stack (a CNN: vmap then)."""
    plan = dense_plan(layers)
    return None if plan is None else StackedDense(plan, flat, shapes, k, loss)
