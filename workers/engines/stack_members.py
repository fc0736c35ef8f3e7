"""Changing which members a StackedTrainer (`t` below) holds, and their state, between two epochs.

`keep_members` drops members from the stacked weights, data and optimizer state, so later steps cost
what the members left cost (ASHA's pruning). `copy_member` and `set_hyperparameters` are PBT's exploit
and explore: one member takes another's weights, optimizer state and data order exactly, then values
of its own. Every member's arithmetic stays its own, so a member's numbers do not depend on the others.
"""

from __future__ import annotations

import torch

from workers.engines.dense import FlatOptimizer, StackedDense, flat_views


def keep_members(t, keep: list[int]) -> None:
    """Only members `keep` (indices, in their new order) stay; the stack shrinks to them."""
    if t.early is not None:  # the adaptive searches refuse early stopping at submit
        raise ValueError("members with early stopping cannot be dropped from a batch")
    index = torch.tensor(keep, device=t.device)
    t.specs, t.nets, t.datas, t.gens = ([items[k] for k in keep] for items in (t.specs, t.nets, t.datas, t.gens))
    t.records.keep(keep)
    t.figures.keep(index)
    t.K = len(keep)
    for rows, dim in (("x", t.x_dim), ("y", t.y_dim), ("x_val", t.xv_dim), ("y_val", t.yv_dim)):
        if dim is not None:  # each member's own rows (None: one tensor all members share)
            setattr(t, rows, getattr(t, rows)[index])
    t.lr, t.momentum, t.weight_decay = t.lr[index], t.momentum[index], t.weight_decay[index]
    t.flat = torch.cat([p[index].reshape(-1) for p in t.params.values()])
    t.params = flat_views(t.flat, t.K, t.shapes)
    t.state = {name: {key: v[index].clone() for key, v in slots.items()} for name, slots in t.state.items()}
    # takes the sliced state over into flat tensors of its own at its first step
    t.flat_optimizer = FlatOptimizer(t.kind, t.lr, t.momentum, t.weight_decay, t.shapes, t.state)
    if t.dense is not None:
        group = t.dense.group
        t.dense = StackedDense(t.dense.plan, t.flat, t.shapes, t.K, t.loss_kind)
        t.dense.group = group


@torch.no_grad()
def copy_member(t, source: int, target: int) -> None:
    """Member `target` becomes an exact copy of member `source`: weights, optimizer state, data order."""
    for p in t.params.values():
        p[target].copy_(p[source])
    for slots in t.state.values():
        for v in slots.values():
            v[target].copy_(v[source])
    t.gens[target].set_state(t.gens[source].get_state())


def set_hyperparameters(t, k: int, values: dict[str, float]) -> None:
    """Member k's lr, momentum and weight decay from the next step on."""
    for name, tensor in (("lr", t.lr), ("momentum", t.momentum), ("weight_decay", t.weight_decay)):
        if name in values:
            tensor[k] = values[name]
    t.flat_optimizer.set_hyperparameters(t.lr, t.momentum, t.weight_decay)
