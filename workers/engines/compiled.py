"""The compiled option of the eager and stacked engines: a step as one functional computation, compiled.

The step's forward, loss, gradient (`torch.func.grad` of the loss by the weights) and optimizer update are traced
by `torch.compile(fullgraph=True)` into one graph of fused kernels. The arithmetic stays the plain engine's:
the update is torch.optim's own functional SGD / Adam / AdamW on the optimizer's state (one network), or
`dense.FlatOptimizer` (stacked members); so curves agree with the plain engine's to float tolerance. On CUDA
the eager engine's graph (`cuda_graph.GraphedEpochs`) captures these compiled steps as it captures plain ones.

A step that cannot compile (an op dynamo cannot trace, no C compiler, an inductor error) is given up at once:
that call and every later one run the plain step, the weights untouched by the failed call (compilation
happens before its graph runs), and `failed` says why; the run adds it to the job's `execution`.
"""

from __future__ import annotations

import logging
import types

import torch
from torch.func import functional_call, grad
from torch.optim.adam import adam
from torch.optim.sgd import sgd

from modelzoo.layers import has_modal_layers, trained_layers
from workers.engines.dense import flat_views
from workers.engines.steps import Step, clip_grad_norm

log = logging.getLogger("fitserve.trainer")
COMPILE_MODE = {"cuda": "max-autotune-no-cudagraphs"}  # CUDA graphs come from cuda_graph.py; elsewhere: default


def compile_reason(specs: list, nets: list) -> str | None:
    """Why these members' step is not compiled; None when it can be.

    A compiled graph holds the hyperparameters it was traced with: a schedule's new rate every epoch would
    recompile it. Dropout and batch norm switch modes for held-out rows and update running statistics.
    """
    if any(s.optimizer.schedule is not None for s in specs):
        return "a learning-rate schedule"
    if any(has_modal_layers(net) for net in nets):
        return "dropout or batch norm"
    return None


def is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError)


class Compiled:
    """`fn` compiled at its first call (torch.compile's imports alone take seconds: only a step that compiles pays
    them); from the first time it raises on, `plain` (same arguments) instead."""

    def __init__(self, fn, plain, device: torch.device):
        self.source, self.plain, self.mode = fn, plain, COMPILE_MODE.get(device.type)
        self.fn = None
        self.failed: str | None = None  # why the compiled step was given up

    def __call__(self, *args):
        if self.failed is None:
            try:
                if self.fn is None:
                    self.fn = torch.compile(own_code(self.source), fullgraph=True, dynamic=False, mode=self.mode)
                return self.fn(*args)
            except Exception as exc:
                if is_out_of_memory(exc):
                    raise
                self.failed = f"the compiled step failed ({type(exc).__name__}: {str(exc)[:200]})"
                log.warning("%s; training on with the plain step", self.failed)
        return self.plain(*args)


def own_code(method):
    """`method` with a code object of its own. Dynamo keeps compiled graphs per code object, at most
    `recompile_limit` (8) of them, past which a fullgraph compile fails: one job's step must not count the
    graphs of the jobs a worker trained before it, nor keep them alive."""
    fn = method.__func__
    copy = types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
    return types.MethodType(copy, method.__self__)


class CompiledStep:
    """`steps.Step` compiled: the same call, `kept`, `lr` and `evaluate`, for one network.

    torch.optim makes its state (momentum, Adam's moments and step) lazily at its first step, so the first step
    is the plain one; the compiled update then works on that very state, which checkpoints read as before.
    """

    def __init__(self, step: Step, device: torch.device):
        self.plain = step
        self.kept, self.params, self.optimizer, self.lr = step.kept, step.params, step.optimizer, step.lr
        self.evaluate = step.evaluate
        self.layers = trained_layers(step.net)
        self.names = [name for name, p in self.layers.named_parameters() if p.requires_grad]
        # the weights' storage without autograd's leaves: a graph whose inputs require grad is traced for a backward,
        # and its in-place update would be refused
        self.weights = [p.detach() for p in step.params]
        self.compiled = Compiled(self.functional_step, step, device)
        self.update = None  # the update, bound to the optimizer's state once it has one

    @property
    def failed(self) -> str | None:
        return self.compiled.failed

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.update is None:
            self.update = functional_update(self.optimizer, self.params, self.weights, self.lr)
            if self.update is None:  # no state yet: this step makes it
                return self.plain(x, y)
        return self.compiled(x, y)

    def loss_of(self, params: dict, x: torch.Tensor, y: torch.Tensor):
        out = functional_call(self.layers, params, (x,))
        loss = self.plain.loss(out, y)
        return loss, (loss, out)

    def functional_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        grads, (loss, out) = grad(self.loss_of, has_aux=True)(dict(zip(self.names, self.weights)), x, y)
        grads = [grads[name] for name in self.names]
        if self.plain.clip is not None:
            grads = clip_grad_norm(grads, self.plain.clip)
        with torch.no_grad():
            self.update(grads)
        return loss, out


def functional_update(optimizer: torch.optim.Optimizer, params: list, weights: list, plain_lr: float | None):
    """torch.optim's update of `weights` (`params`' storage) by gradients, as one function on the optimizer's
    state; None while it has none. Hyperparameters are read now: they are constants of the compiled graph."""
    if plain_lr is not None:  # stateless SGD: Step's own update
        return lambda grads: torch._foreach_add_(weights, grads, alpha=-plain_lr)
    group, state = optimizer.param_groups[0], [optimizer.state.get(p) for p in params]
    if isinstance(optimizer, torch.optim.SGD):
        buffers = [s.get("momentum_buffer") if s else None for s in state]
        if group["momentum"] != 0 and any(b is None for b in buffers):
            return None
        options = {k: group[k] for k in ("weight_decay", "momentum", "lr", "dampening", "nesterov", "maximize")}
        return lambda grads: sgd(weights, list(grads), buffers, foreach=True, **options)
    if not all(state):
        return None
    beta1, beta2 = group["betas"]
    options = {"amsgrad": False, "beta1": beta1, "beta2": beta2, "lr": group["lr"], "eps": group["eps"],
               "weight_decay": group["weight_decay"], "maximize": group["maximize"],
               "capturable": group["capturable"], "decoupled_weight_decay": isinstance(optimizer, torch.optim.AdamW)}
    moments = [[s[key] for s in state] for key in ("exp_avg", "exp_avg_sq", "step")]
    return lambda grads: adam(weights, list(grads), *moments[:2], [], moments[2], foreach=False, **options)


class CompiledStackedStep:
    """`StackedTrainer.step`'s vmap path compiled: every member's forward, loss, gradient and update in one graph.

    The optimizer's step count is a tensor here, so Adam's bias corrections do not recompile the graph each step.
    """

    def __init__(self, trainer, plain):
        self.t = trainer
        self.count = torch.zeros((), device=trainer.device)
        self.compiled = Compiled(self.functional_step, plain, trainer.device)

    @property
    def failed(self) -> str | None:
        return self.compiled.failed

    def __call__(self, x, x_dim, y, y_dim):
        """The trainer has counted this step in `optimizer_steps`."""
        t = self.t
        # the optimizer's state made outside the graph (a resume, or a search's new stack, may have brought it)
        keys = ("exp_avg", "exp_avg_sq") if t.kind != "sgd" else ("momentum",) if t.flat_optimizer.uses_momentum else ()
        for key in keys:
            t.flat_optimizer.slot(key, t.flat)
        self.count.fill_(t.optimizer_steps)
        return self.compiled(x, x_dim, y, y_dim)

    def total_loss(self, flat: torch.Tensor, x, x_dim, y, y_dim):
        t = self.t
        losses, outs = torch.vmap(t.member_loss, in_dims=(0, x_dim, y_dim))(flat_views(flat, t.K, t.shapes), x, y)
        return losses.sum(), (losses, outs)

    def functional_step(self, x, x_dim, y, y_dim):
        t = self.t
        flat_grad, (losses, outs) = grad(self.total_loss, has_aux=True)(t.flat, x, x_dim, y, y_dim)
        t.flat_optimizer.step(t.flat, flat_grad, self.count)
        return losses, outs
