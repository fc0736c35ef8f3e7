"""Learning-rate schedules and gradient clipping in the trainer: the recorded `lr` follows each formula."""

import math

import pytest
import torch

from modelzoo import build_network
from service.schemas.spec import JobSpec
from workers.checkpoints import state_from_bytes, state_to_bytes
from workers.data import load_data
from workers.engines.eager import Trainer, seed_network_init
from workers.engines.steps import clip_grad_norm
from workers.run import train_here

EPOCHS = 12
LR = 0.1


def spec_with(schedule: dict | None, epochs: int = EPOCHS, **optimizer) -> JobSpec:
    return JobSpec.model_validate({
        "model": {"kind": "mlp", "in_features": 4, "hidden": [8], "out_features": 3},
        "task": "classification",
        "data": {"source": "builtin", "name": "iris", "validation_fraction": 0.2, "standardize": True},
        "loss": "cross_entropy",
        "optimizer": {"kind": "sgd", "lr": LR, "schedule": schedule, **optimizer},
        "epochs": epochs,
    })


def train(spec: JobSpec, state: dict | None = None) -> tuple[Trainer, list]:
    seed_network_init(spec.seed)
    trainer = Trainer(spec, build_network(spec.model), load_data(spec, None), torch.device("cpu"))
    if state is not None:
        trainer.load_state(state)
    return trainer, train_here(trainer).points["0"]


def recorded_lr(spec: JobSpec) -> list[float]:
    _, points = train(spec)
    assert [p.epoch for p in points] == list(range(1, spec.epochs + 1))
    return [p.lr for p in points]


def torch_sequence(make_scheduler, epochs: int = EPOCHS) -> list[float]:
    """The rate of each epoch under a torch scheduler stepped once per epoch."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    scheduler, rates = make_scheduler(optimizer), []
    for _ in range(epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_step_schedule_follows_steplr():
    got = recorded_lr(spec_with({"kind": "step", "step_epochs": 5, "gamma": 0.5}))
    assert got == pytest.approx([LR * 0.5 ** ((e - 1) // 5) for e in range(1, EPOCHS + 1)])
    assert got == pytest.approx(torch_sequence(lambda o: torch.optim.lr_scheduler.StepLR(o, 5, 0.5)))


def test_cosine_schedule_warms_up_then_follows_the_cosine_to_min_lr():
    got = recorded_lr(spec_with({"kind": "cosine", "warmup_epochs": 3, "min_lr": 0.01}))
    warm = [LR * e / 3 for e in (1, 2, 3)]
    rest = [0.01 + (LR - 0.01) * (1 + math.cos(math.pi * t / (EPOCHS - 4))) / 2 for t in range(EPOCHS - 3)]
    assert got == pytest.approx(warm + rest)
    assert got[3] == pytest.approx(LR) and got[-1] == pytest.approx(0.01)


def test_one_cycle_schedule_follows_onecyclelr():
    got = recorded_lr(spec_with({"kind": "one_cycle", "max_lr": 1.0}))
    # torch refuses a step past total_steps: its sequence is read up to the epoch before the last
    expected = torch_sequence(lambda o: torch.optim.lr_scheduler.OneCycleLR(
        o, max_lr=1.0, total_steps=EPOCHS, div_factor=1.0 / LR, final_div_factor=1e4), EPOCHS - 1)
    assert got[: EPOCHS - 1] == pytest.approx(expected)
    assert got[0] == pytest.approx(LR) and 0.95 < max(got) <= 1.0 and got[-1] == pytest.approx(LR / 1e4)


def test_plateau_schedule_cuts_lr_after_patience_epochs_without_improvement():
    # a rate high enough that val_loss stalls and bounces: the cuts must follow the recorded losses
    spec = spec_with({"kind": "plateau", "factor": 0.5, "patience": 1}, epochs=40)
    spec.optimizer.lr = 5.0
    _, points = train(spec)
    lr, best, bad = 5.0, math.inf, 0
    for p in points:
        assert p.lr == pytest.approx(lr), p
        if p.val_loss < best:
            best, bad = p.val_loss, 0
        else:
            bad += 1
        if bad > 1:
            lr, bad = lr * 0.5, 0
    assert points[-1].lr < 5.0  # it did cut


def test_plateau_state_survives_a_checkpoint():
    spec = spec_with({"kind": "plateau", "factor": 0.5, "patience": 1}, epochs=40)
    spec.optimizer.lr = 5.0
    _, whole = train(spec)
    first = spec.model_copy(update={"epochs": 20})
    trainer, _ = train(first)
    state = state_from_bytes(state_to_bytes(trainer.state()))  # as a resumed attempt reads its checkpoint
    assert state["schedule"]["num_bad_epochs"] == trainer.rates.plateau.num_bad_epochs
    _, resumed = train(spec, state)
    assert [p.lr for p in resumed] == pytest.approx([p.lr for p in whole[20:]])


def test_without_a_schedule_no_lr_is_recorded():
    _, points = train(spec_with(None))
    assert all(p.lr is None for p in points)


def test_clip_grad_norm_scales_as_torch_does():
    grads = (torch.tensor([3.0, 4.0]), torch.tensor([[12.0]]))  # global norm 13
    params = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(1, 1))]
    for p, g in zip(params, grads):
        p.grad = g.clone()
    torch.nn.utils.clip_grad_norm_(params, 1.3)
    ours = clip_grad_norm(grads, 1.3)
    for p, g in zip(params, ours):
        torch.testing.assert_close(g, p.grad)
    assert torch.linalg.vector_norm(torch.cat([g.reshape(-1) for g in ours])) == pytest.approx(1.3, rel=1e-5)
    kept = clip_grad_norm(grads, 100.0)  # under the bound: unchanged
    torch.testing.assert_close(kept[0], grads[0])


def test_clipping_changes_training_and_bounds_each_update():
    plain, _ = train(spec_with(None, epochs=1))
    clipped, _ = train(spec_with(None, epochs=1, clip_grad_norm=1e-3))
    seed_network_init(0)
    start = build_network(spec_with(None).model)
    moved = torch.cat([(a - b).reshape(-1) for a, b in zip(clipped.net[1:].parameters(), start[1:].parameters())])
    # one full-batch SGD step: the update is lr x the clipped gradient, whose norm is at most 1e-3
    assert torch.linalg.vector_norm(moved) <= LR * 1e-3 * 1.0001
    plain_moved = torch.cat([(a - b).reshape(-1) for a, b in zip(plain.net[1:].parameters(), start[1:].parameters())])
    assert torch.linalg.vector_norm(plain_moved) > 10 * LR * 1e-3
