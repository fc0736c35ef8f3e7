"""The compiled option of the eager and stacked engines: a step as one functional computation, compiled.

The step's forward, loss, gradient (`torch.func.grad` of the loss by the weights) and optimizer update are traced
by `torch.compile(fullgraph=True)` into one graph of fused kernels. The arithmetic stays the plain engine's:
the update is torch.optim's own functional SGD / Adam / AdamW on the optimizer's state (one network), or
`dense.FlatOptimizer` (stacked members); so curves agree with the plain engine's to float tolerance. On CUDA
the eager engine's graph (`cuda_graph.GraphedEpochs`) captures these compiled steps as it captures plain ones.

Every tensor the step changes (weights, optimizer state) is an argument of the compiled function, so `rehearse`
can compile it on copies, in another thread, while the run trains on with the plain step (a compile takes
seconds; the run's stop points must not wait for it): the run's own calls then find the compiled graph in
dynamo's cache, which matches arguments by shape, not identity. A step that cannot compile (an op dynamo cannot
trace, no C compiler, an inductor error) is given up at once: that call and every later one run the plain step,
the weights untouched by the failed call (compilation happens before its graph runs), and `failed` says why; the
run adds it to the job's `execution`.
"""

from __future__ import annotations

import logging
import threading
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


class Compiled:
    """`fn` compiled at its first call (torch.compile's imports alone take seconds: only a step that compiles pays
    them); `failed` once it has raised, after which it is not called again."""

    def __init__(self, fn, device: torch.device):
        self.source, self.mode = fn, COMPILE_MODE.get(device.type)
        self.fn = None
        self.failed: str | None = None  # why the compiled step was given up
        self.lock = threading.Lock()  # a rehearsal and the run's first call compile once

    def __call__(self, *args):
        """The compiled function's result; None when it failed (now or before)."""
        if self.failed is not None:
            return None
        try:
            with self.lock:
                if self.fn is None:
                    self.fn = torch.compile(own_code(self.source), fullgraph=True, dynamic=False, mode=self.mode)
            return self.fn(*args)
        except Exception as exc:  # out of memory too: the plain step then fails the job, or fits where this did not
            self.failed = f"the compiled step failed ({type(exc).__name__}: {str(exc)[:200]})"
            log.warning("%s; training on with the plain step", self.failed)
            return None


def own_code(method):
    """`method` with a code object of its own. Dynamo keeps compiled graphs per code object, at most
    `recompile_limit` (8) of them, past which a fullgraph compile fails: one job's step must not count the
    graphs of the jobs a worker trained before it, nor keep them alive."""
    fn = method.__func__
    copy = types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
    return types.MethodType(copy, method.__self__)


def copies(tensors):
    """Nested lists of tensors, cloned: what a rehearsal trains instead of the run's own."""
    return [copies(t) for t in tensors] if isinstance(tensors, list) else tensors.clone()


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
        self.compiled = Compiled(self.functional_step, device)
        self.update = self.state = None  # torch.optim's update, and its state, once the optimizer has one

    @property
    def failed(self) -> str | None:
        return self.compiled.failed

    def bound(self) -> bool:
        """Whether the update has the optimizer's state (it has none before its first step)."""
        if self.update is None:
            self.update, self.state = functional_update(self.optimizer, self.params, self.lr)
        return self.update is not None

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.bound():
            out = self.compiled(self.weights, self.state, x, y)
            if out is not None:
                return out
        return self.plain(x, y)

    def rehearse(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Compile for batches like `x`, `y` on copies of the weights and optimizer state (see the module's doc)."""
        if self.bound():
            self.compiled(copies(self.weights), copies(self.state), x, y)

    def loss_of(self, params: dict, x: torch.Tensor, y: torch.Tensor):
        out = functional_call(self.layers, params, (x,))
        loss = self.plain.loss(out, y)
        return loss, (loss, out)

    def functional_step(self, weights: list, state: list, x: torch.Tensor, y: torch.Tensor):
        grads, (loss, out) = grad(self.loss_of, has_aux=True)(dict(zip(self.names, weights)), x, y)
        grads = [grads[name] for name in self.names]
        if self.plain.clip is not None:
            grads = clip_grad_norm(grads, self.plain.clip)
        with torch.no_grad():
            self.update(weights, state, grads)
        return loss, out


def functional_update(optimizer: torch.optim.Optimizer, params: list, plain_lr: float | None):
    """torch.optim's update as `update(weights, state, grads)`, and the optimizer's state it takes (lists of tensors,
    parameter by parameter); (None, None) while the optimizer has no state. Hyperparameters are read now: they are
    constants of the compiled graph."""
    if plain_lr is not None:  # stateless SGD: Step's own update
        return (lambda weights, state, grads: torch._foreach_add_(weights, grads, alpha=-plain_lr)), []
    group, saved = optimizer.param_groups[0], [optimizer.state.get(p) for p in params]
    if isinstance(optimizer, torch.optim.SGD):
        if group["momentum"] == 0:  # weight decay alone keeps no state
            buffers = [None] * len(params)
            options = {k: group[k] for k in ("weight_decay", "momentum", "lr", "dampening", "nesterov", "maximize")}
            return (lambda weights, state, grads: sgd(weights, list(grads), buffers, foreach=True, **options)), []
        if not all(s and s.get("momentum_buffer") is not None for s in saved):
            return None, None
        options = {k: group[k] for k in ("weight_decay", "momentum", "lr", "dampening", "nesterov", "maximize")}
        return ((lambda weights, state, grads: sgd(weights, list(grads), state[0], foreach=True, **options)),
                [[s["momentum_buffer"] for s in saved]])
    if not all(saved):
        return None, None
    beta1, beta2 = group["betas"]
    options = {"amsgrad": False, "beta1": beta1, "beta2": beta2, "lr": group["lr"], "eps": group["eps"],
               "weight_decay": group["weight_decay"], "maximize": group["maximize"],
               "capturable": group["capturable"], "decoupled_weight_decay": isinstance(optimizer, torch.optim.AdamW)}
    state = [[s[key] for s in saved] for key in ("exp_avg", "exp_avg_sq", "step")]
    return ((lambda weights, state, grads: adam(weights, list(grads), state[0], state[1], [], state[2], foreach=False,
                                                **options)), state)


class CompiledStackedStep:
    """`StackedTrainer.step`'s vmap path compiled: every member's forward, loss, gradient and update in one graph.

    The optimizer's step count is a tensor here, so Adam's bias corrections do not recompile the graph each step.
    """

    def __init__(self, trainer, plain):
        self.t, self.plain = trainer, plain
        self.count = torch.zeros((), device=trainer.device)
        self.compiled = Compiled(self.functional_step, trainer.device)

    @property
    def failed(self) -> str | None:
        return self.compiled.failed

    def slots(self) -> dict[str, torch.Tensor]:
        """The optimizer's flat state, made outside the graph (a resume, or a search's new stack, may bring it)."""
        t = self.t
        keys = ("exp_avg", "exp_avg_sq") if t.kind != "sgd" else ("momentum",) if t.flat_optimizer.uses_momentum else ()
        return {key: t.flat_optimizer.slot(key, t.flat) for key in keys}

    def __call__(self, x, x_dim, y, y_dim):
        """The trainer has counted this step in `optimizer_steps`."""
        self.count.fill_(self.t.optimizer_steps)
        out = self.compiled(self.t.flat, self.slots(), self.count, x, x_dim, y, y_dim)
        return out if out is not None else self.plain(x, x_dim, y, y_dim)

    def rehearse(self, x, x_dim, y, y_dim) -> None:
        """Compile for batches like these on copies of the weights and optimizer state (see the module's doc)."""
        slots = {key: value.clone() for key, value in self.slots().items()}
        self.compiled(self.t.flat.clone(), slots, self.count.clone(), x, x_dim, y, y_dim)

    def total_loss(self, flat: torch.Tensor, x, x_dim, y, y_dim):
        t = self.t
        losses, outs = torch.vmap(t.member_loss, in_dims=(0, x_dim, y_dim))(flat_views(flat, t.K, t.shapes), x, y)
        return losses.sum(), (losses, outs)

    def functional_step(self, flat, slots, count, x, x_dim, y, y_dim):
        flat_grad, (losses, outs) = grad(self.total_loss, has_aux=True)(flat, x, x_dim, y, y_dim)
        self.t.flat_optimizer.step(flat, flat_grad, count, slots)
        return losses, outs
