"""What of the training options a batched sweep supports, and the per-member rates of their schedules.

Step, cosine and one_cycle schedules are functions of the epoch, so each member's rate is set before every
epoch as one (K,) tensor. What needs more than a rate per member trains one by one, and the sweep's
execution note says why: plateau (a host read of every member's loss per epoch and per-member state),
gradient clipping (a global norm per member), dropout and batch norm (per-member masks and running
statistics through vmap's functional calls).
"""

from __future__ import annotations

from modelzoo.layers import has_modal_layers
from service.schemas.schedules import scheduled_lr


def one_by_one_reason(specs: list, nets: list) -> str | None:
    """Why these members cannot train batched; None when they can."""
    if any(s.optimizer.schedule is not None and s.optimizer.schedule.kind == "plateau" for s in specs):
        return "the plateau schedule trains one by one"
    if any(s.optimizer.clip_grad_norm is not None for s in specs):
        return "gradient clipping trains one by one"
    if any(has_modal_layers(net) for net in nets):
        return "dropout and batch norm train one by one"
    return None


def member_rates(specs: list, epoch: int) -> list[float] | None:
    """Each member's rate for epoch `epoch` (1-based); None when no member has a schedule."""
    if all(s.optimizer.schedule is None for s in specs):
        return None
    return [scheduled_lr(s.optimizer.schedule, s.optimizer.lr, epoch, s.epochs) for s in specs]
