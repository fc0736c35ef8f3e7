"""Members trained together equal the same specs trained alone, to float tolerance."""

import copy

import pytest
import torch

from modelzoo import build_network
from service.schemas.spec import JobSpec
from workers.batched import BatchedTrainer
from workers.data import load_data
from workers.trainer import Callbacks, Trainer, fit_standardization
from tests.specs import example

CUBIC = example("3_nonlinear_mlp", epochs=40)
CUBIC["data"]["n"] = 300
BLOBS = example("5_softmax_classification", epochs=30)
BLOBS["data"]["validation_fraction"] = 0.2


def member(base: dict, **changes) -> JobSpec:
    spec = copy.deepcopy(base)
    for key, value in changes.items():
        if key in ("lr", "momentum", "weight_decay", "kind"):
            spec["optimizer"][key] = value
        else:
            spec[key] = value
    return JobSpec.model_validate(spec)


def prepare(spec: JobSpec):
    torch.manual_seed(spec.seed)
    net = build_network(spec.model)
    data = load_data(spec, None)
    if spec.data.standardize:
        fit_standardization(net, data.x_train)
    return net, data


def solo_points(spec: JobSpec) -> list:
    net, data = prepare(spec)
    points = []
    trainer = Trainer(spec, net, data, torch.device("cpu"), Callbacks(report=lambda p, _: points.extend(p) or True))
    assert trainer.run()
    return points


def batched_points(specs: list[JobSpec]) -> list[list]:
    nets, datas = zip(*(prepare(s) for s in specs))
    trainer = BatchedTrainer(specs, list(nets), list(datas), torch.device("cpu"))
    records = []
    for epoch in range(1, specs[0].epochs + 1):
        records.append(trainer.train_epoch(record=True))
        trainer.progress.epoch = epoch
    return trainer.to_points(records)


def assert_same_curves(specs: list[JobSpec]) -> None:
    together = batched_points(specs)
    for spec, points in zip(specs, together):
        alone = solo_points(spec)
        assert [p.step for p in points] == [p.step for p in alone]
        for field in ("loss", "val_loss", "accuracy", "val_accuracy"):
            got, want = [getattr(p, field) for p in points], [getattr(p, field) for p in alone]
            if want[0] is None:
                assert got == want
            else:
                assert got == pytest.approx(want, rel=2e-4, abs=1e-6), field


def test_full_batch_sgd_members_with_their_own_lr_and_seed():
    assert_same_curves([member(CUBIC, lr=lr, seed=seed) for lr in (0.01, 0.003) for seed in (0, 1)])


def test_momentum_and_weight_decay_per_member():
    assert_same_curves([member(CUBIC, momentum=m, weight_decay=wd) for m in (0.0, 0.9) for wd in (0.0, 0.01)])


@pytest.mark.parametrize("kind", ["adam", "adamw"])
def test_adam_members(kind):
    assert_same_curves([member(CUBIC, kind=kind, lr=lr, weight_decay=0.01) for lr in (0.01, 0.001)])


def test_mini_batches_classification_and_validation():
    assert_same_curves([member(BLOBS, batch_size=64, seed=s, lr=0.05) for s in (0, 1, 2)])


def test_checkpoint_of_a_member_resumes_alone_on_the_same_curve():
    specs = [member(BLOBS, batch_size=64, seed=s, kind="adam", lr=0.01) for s in (0, 1)]
    nets, datas = zip(*(prepare(s) for s in specs))
    trainer = BatchedTrainer(specs, list(nets), list(datas), torch.device("cpu"))
    for epoch in range(1, 11):
        trainer.train_epoch(record=False)
        trainer.progress.epoch = epoch
    state = trainer.member_state(1)
    net, data = prepare(specs[1])
    points = []
    solo = Trainer(specs[1], net, data, torch.device("cpu"), Callbacks(report=lambda p, _: points.extend(p) or True))
    solo.load_state(state)
    assert solo.run()
    alone = solo_points(specs[1])
    assert [p.loss for p in points] == pytest.approx([p.loss for p in alone[10:]], rel=2e-4)
