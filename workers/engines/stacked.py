"""K members of one architecture trained as one computation (torch.func: stacked weights + vmap).

Each member keeps its own seed, data order and hyperparameters, and its numbers are those a solo
`Trainer` gets (within float tolerance): the forward is `vmap(functional_call)` over the stacked
weights, the gradients of the summed losses are each member's own (members share nothing), and the
optimizer update repeats torch.optim's SGD / Adam / AdamW arithmetic with per-member rates
(`workers.engines.dense.FlatOptimizer`, over one flat tensor of every member's weights).
Dense stacks (the zoo's linear and mlp families) take `workers.engines.dense` instead: the same
arithmetic, by hand, several times faster on a CPU; vmap stays for the rest (CNNs).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from modelzoo.layers import standardized_targets, trained_layers
from workers.data import TrainingData
from workers.engines import stack_members
from workers.engines.compiled import CompiledStackedStep
from workers.engines.dense import FlatOptimizer, dense_path, flat_views
from workers.engines.eager import INTERRUPT_BATCHES, Progress, checkpoint, make_optimizer
from workers.engines.early_stopping import EarlyStopping
from workers.engines.figures import Figures
from workers.engines.records import KeepsRecords, Records
from workers.engines.stack_options import member_rates
from workers.engines.steps import Batches, make_loss, transform_rows

# the stack's optimizer state per parameter, by torch.optim's names for it (a checkpoint holds torch.optim's)
SLOTS = {"momentum": "momentum_buffer", "exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq"}


def stack_or_share(tensors: list[torch.Tensor | None], device) -> tuple[torch.Tensor | None, int | None]:
    """On `device`, one tensor for all members when they are equal (vmap in_dims None), else stacked (in_dims 0)."""
    first = tensors[0]
    if first is None:
        return None, None
    if all(t.shape == first.shape and torch.equal(t, first) for t in tensors[1:]):
        return first.to(device), None
    return torch.stack(tensors).to(device), 0


def per_member(values: list[float], device: torch.device) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32, device=device)


class StackedTrainer(KeepsRecords):
    def __init__(
        self, specs: list, nets: list[nn.Sequential], datas: list[TrainingData], device: torch.device,
        hand_written: bool = True, compiled: bool = False,
    ):
        """`hand_written=False` keeps vmap and autograd even for a dense stack (to compare the two); `compiled`: the
        vmap step may be compiled (workers/engines/compiled.py; the caller has checked `compile_reason`)."""
        spec = specs[0]
        self.specs, self.nets, self.datas, self.device, self.K = specs, nets, datas, device, len(specs)
        self.progress = Progress()
        # asked every INTERRUPT_BATCHES mini-batches inside an epoch (as the eager engine asks); True stops the
        # epoch there: it is not counted, and its half is not kept
        self.interrupted: Callable[[], bool] = lambda: False
        self.rewinds = False  # as the eager engine's: an epoch that may stop part way keeps the weights it started from
        self.epoch_start: torch.Tensor | None = None  # then, `flat` as that epoch started
        self.loss_kind = spec.loss
        self.kind = spec.optimizer.kind
        self.loss_fn = make_loss(spec)
        members = list(zip(nets, datas))
        self.x, self.x_dim = stack_or_share([transform_rows(n, d.x_train) for n, d in members], device)
        self.y, self.y_dim = stack_or_share([standardized_targets(n, d.y_train) for n, d in members], device)
        self.x_val, self.xv_dim = stack_or_share([transform_rows(n, d.x_val) for n, d in members], device)
        self.y_val, self.yv_dim = stack_or_share([standardized_targets(n, d.y_val) for n, d in members], device)
        self.n = len(datas[0].x_train)
        self.n_val = len(datas[0].x_val) if datas[0].x_val is not None else 0
        self.records = Records([s.optimizer.schedule is not None for s in specs], self.n, self.n_val)
        self.figures = Figures(spec, nets, device)
        bs = self.n if spec.batch_size is None else min(spec.batch_size, self.n)
        self.batches = Batches(self.n, bs, spec.loss, device)
        self.gens = [torch.Generator(device=device).manual_seed(s.seed) for s in specs]
        self.layers = copy.deepcopy(trained_layers(nets[0])).to("meta")  # the architecture; weights come stacked
        params, _ = stack_module_state([net[1:] for net in nets])
        # every member's weights in one flat tensor, parameter after parameter; `params` are (K, ...) views of it
        self.shapes = {name: p.shape[1:] for name, p in params.items()}
        self.flat = torch.cat([p.detach().reshape(-1) for p in params.values()]).to(device)
        self.params = flat_views(self.flat, self.K, self.shapes)
        opt = [s.optimizer for s in specs]
        self.lr = per_member([o.lr for o in opt], device)
        self.rates: list[float] | None = None  # this epoch's per-member rates, with schedules
        self.momentum = per_member([o.momentum for o in opt], device)
        self.weight_decay = per_member([o.weight_decay for o in opt], device)
        self.state: dict[str, dict[str, torch.Tensor]] = {}  # per parameter: momentum or Adam moments (views)
        self.optimizer_steps = 0
        self.flat_optimizer = FlatOptimizer(self.kind, self.lr, self.momentum, self.weight_decay, self.shapes, self.state)
        # None: vmap and autograd
        self.dense = dense_path(self.layers, self.flat, self.shapes, self.K, spec.loss) if hand_written else None
        # the option of a compiled step, used once `use_compiled` says so (the run's choice, engines/compile_choice.py)
        self.compiled = CompiledStackedStep(self, self.plain_step) if compiled else None
        self.compiling = False
        # every member's (K,) early-stopping state; members of one batch share the spec's settings
        self.early = None
        if spec.early_stopping is not None:
            self.early = EarlyStopping(spec, self.x_val is not None, list(self.params.values()), self.K)

    # ------------------------------------------------------------ one step

    def member_loss(self, params: dict, x: torch.Tensor, y: torch.Tensor):
        out = functional_call(self.layers, params, (x,))
        return self.loss_fn(out, y), out

    def step(self, x: torch.Tensor, x_dim, y: torch.Tensor, y_dim) -> tuple[torch.Tensor, torch.Tensor]:
        self.optimizer_steps += 1
        if self.compiling:
            return self.compiled(x, x_dim, y, y_dim)
        return self.plain_step(x, x_dim, y, y_dim)

    def plain_step(self, x: torch.Tensor, x_dim, y: torch.Tensor, y_dim) -> tuple[torch.Tensor, torch.Tensor]:
        if self.dense is not None:
            losses, outs = self.dense.step(x, x_dim, y, y_dim)
            grad = self.dense.grad
        else:
            flat = self.flat.detach().requires_grad_()  # the same storage, as a leaf to differentiate by
            params = flat_views(flat, self.K, self.shapes)
            losses, outs = vmap(self.member_loss, in_dims=(0, x_dim, y_dim))(params, x, y)  # (K,), (K, B, out)
            (grad,) = torch.autograd.grad(losses.sum(), [flat])
            losses, outs = losses.detach(), outs.detach()
        self.flat_optimizer.step(self.flat, grad, self.optimizer_steps)
        return losses, outs

    # ------------------------------------------------------------ the engine's interface (engines/__init__.py)

    def use_compiled(self, on: bool) -> None:
        """Train the next steps with the compiled step (`on`) or the plain one."""
        self.compiling = on

    def rehearse_compiled(self) -> None:
        """Compile the step for each batch of an epoch unlike the others, on copies (engines/compiled.py); any
        thread. Mini-batches are laid out as `train_epoch` lays them out: the graph is kept per shape and stride."""
        b = self.batches
        if b.full:
            self.compiled.rehearse(self.x, self.x_dim, self.y, self.y_dim)
            return
        order = torch.arange(b.n, device=self.device).expand(self.K, b.n)
        xs = self.x[order] if self.x_dim is None else take_members(self.x, order)
        ys = self.y[order] if self.y_dim is None else take_members(self.y, order)
        for start, end in {b.bounds[0], b.bounds[-1]}:
            self.compiled.rehearse(xs[:, start:end], 0, ys[:, start:end], 0)

    def running(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    # for searches, between two epochs (engines/stack_members.py: their `t` is this engine)
    keep_members = stack_members.keep_members
    copy_member = stack_members.copy_member
    set_hyperparameters = stack_members.set_hyperparameters

    # ------------------------------------------------------------ one epoch

    def start_epoch(self, epoch: int) -> None:
        """Each member's scheduled rate for epoch `epoch` (nothing to do without schedules)."""
        rates = member_rates(self.specs, epoch)
        if rates is None or rates == self.rates:
            return
        self.rates = rates
        self.lr.copy_(per_member(rates, self.device))
        self.flat_optimizer.set_lr(self.lr)

    def train_epoch(self, record: bool) -> bool:
        """One epoch of every member, its figures recorded if `record`; False when `interrupted` stopped it."""
        b = self.batches
        if b.full:
            losses, outs = self.step(self.x, self.x_dim, self.y, self.y_dim)
            self.progress.step += 1
            if record:
                self.record(losses, outs, self.y, self.y_dim)
            return True
        orders = torch.stack([torch.randperm(b.n, device=self.device, generator=g) for g in self.gens])  # (K, n)
        xs = self.x[orders] if self.x_dim is None else take_members(self.x, orders)  # (K, n, ...)
        ys = self.y[orders] if self.y_dim is None else take_members(self.y, orders)
        losses, outs = [], []
        if self.rewinds and len(b.bounds) >= INTERRUPT_BATCHES:
            self.epoch_start = self.flat.clone()
        for i, (start, end) in enumerate(b.bounds):
            if i % INTERRUPT_BATCHES == INTERRUPT_BATCHES - 1 and self.interrupted():
                return False
            loss, out = self.step(xs[:, start:end], 0, ys[:, start:end], 0)
            losses.append(loss)
            outs.append(out)
        self.epoch_start = None
        self.progress.step += len(b.bounds)
        if record:
            self.record((torch.stack(losses, dim=1) * b.weights).sum(dim=1), torch.cat(outs, dim=1), ys, 0)
        return True

    def record(self, losses, outs, y, y_dim) -> None:
        """Keep the epoch's figures (K,) each on the device; the epoch is the one now ending."""
        figures = self.figures(outs, y if y_dim is not None else y.expand(self.K, *y.shape))
        val_loss = None
        if self.x_val is not None:
            with torch.no_grad():
                val_loss, val_outs = vmap(self.member_loss, in_dims=(0, self.xv_dim, self.yv_dim))(
                    self.params, self.x_val, self.y_val
                )
            yv = self.y_val if self.yv_dim is not None else self.y_val.expand(self.K, *self.y_val.shape)
            figures |= {"val_loss": val_loss} | self.figures(val_outs, yv, "val_")
        if self.early is not None:
            self.early.observe(self.records.named(losses, figures), self.progress.epoch + 1, list(self.params.values()))
        self.records.add([self.progress.epoch + 1], [self.progress.step], self.rates, loss=losses, **figures)

    # ------------------------------------------------------------ members one at a time

    def load_member_states(self, states: list[dict]) -> None:
        """Resume from each member's checkpoint (the solo format); all were taken at the same epoch."""
        for k, (net, state) in enumerate(zip(self.nets, states)):
            net.load_state_dict(state["model"])
            optimizer = make_optimizer(self.specs[k], net.parameters())
            optimizer.load_state_dict(state["optimizer"])
            self.gens[k].set_state(state["rng"])
            if self.early is not None and "early_stopping" in state:
                self.early.load_state(state["early_stopping"], k)
            names = [name for name, _ in net[1:].named_parameters()]
            for name, p in zip(names, net.parameters()):
                with torch.no_grad():
                    self.params[name][k].copy_(p)
                saved = optimizer.state.get(p, {})
                for ours, theirs in SLOTS.items():
                    if saved.get(theirs) is not None:
                        slot = self.state.setdefault(name, {})
                        slot.setdefault(ours, torch.zeros_like(self.params[name]))[k].copy_(saved[theirs])
                if "step" in saved:
                    self.optimizer_steps = int(saved["step"])
        self.progress = Progress(epoch=states[0]["epoch"], step=states[0]["step"])

    def member_net(self, k: int, best: bool = False) -> nn.Sequential:
        """Member k as a plain network, its weights (or, `best`, its best epoch's; asked inside an epoch with
        `rewinds`, its last whole epoch's) copied out of the stack."""
        net = self.nets[k]
        if best:
            stack = self.early.weights
        elif self.epoch_start is not None:
            stack = list(flat_views(self.epoch_start, self.K, self.shapes).values())
        else:
            stack = list(self.params.values())
        with torch.no_grad():
            for p, weights in zip(net[1:].parameters(), stack):
                p.copy_(weights[k])
        return net

    def member_state(self, k: int) -> dict:
        """Member k's checkpoint, in the solo Trainer's format, so it can resume alone or batched."""
        net = self.member_net(k)
        optimizer = make_optimizer(self.specs[k], net.parameters())
        names = [name for name, _ in net[1:].named_parameters()]
        for name, p in zip(names, net.parameters()):
            slots = self.state.get(name, {})
            if slots:
                optimizer.state[p] = {theirs: slots[ours][k].clone() for ours, theirs in SLOTS.items() if ours in slots}
            if slots and self.kind != "sgd":
                optimizer.state[p]["step"] = torch.tensor(float(self.optimizer_steps))
        return checkpoint(net, optimizer, self.progress, self.gens[k], self.early and self.early.state(k))


def take_members(t: torch.Tensor, orders: torch.Tensor) -> torch.Tensor:
    """Row `orders[k]` of member k's own rows: (K, n, ...) from (K, n, ...)."""
    index = orders.view(*orders.shape, *([1] * (t.dim() - 2))).expand(*orders.shape, *t.shape[2:])
    return torch.gather(t, 1, index)
