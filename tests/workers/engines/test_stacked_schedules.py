"""Per-member learning-rate schedules in a batched sweep: each member's curve is the one it gets alone."""

import copy

import pytest
import torch

from service.schemas.spec import JobSpec
from tests.workers.engines.test_stacked import BLOBS, CUBIC, prepare, solo_points
from workers.engines.stack_options import one_by_one_reason
from workers.engines.stacked import StackedTrainer

SCHEDULES = [
    {"kind": "step", "step_epochs": 7, "gamma": 0.5},
    {"kind": "cosine", "warmup_epochs": 4, "min_lr": 0.0005},
    {"kind": "one_cycle", "max_lr": 0.04},
    None,
]


def members(base: dict, kind: str) -> list[JobSpec]:
    specs = []
    for i, schedule in enumerate(SCHEDULES):
        spec = copy.deepcopy(base)
        spec["optimizer"].update(kind=kind, lr=0.01, schedule=schedule)
        spec["seed"], spec["epochs"] = i, 16  # two steps, a warm-up and a decay, a whole cycle
        specs.append(JobSpec.model_validate(spec))
    return specs


def batched_points(specs: list[JobSpec], hand_written: bool) -> list[list]:
    nets, datas = zip(*(prepare(s) for s in specs))
    trainer = StackedTrainer(specs, list(nets), list(datas), torch.device("cpu"), hand_written=hand_written)
    for epoch in range(1, specs[0].epochs + 1):
        trainer.start_epoch(epoch)
        trainer.train_epoch(record=True)
        trainer.progress.epoch = epoch
    return trainer.read_points()


@pytest.mark.parametrize("kind", ["sgd", "adam"])
@pytest.mark.parametrize("hand_written", [True, False], ids=["hand-written", "vmap"])
@pytest.mark.parametrize("base", [CUBIC, BLOBS], ids=["cubic", "blobs"])
def test_members_with_their_own_schedules_match_solo_runs(base, kind, hand_written):
    specs = members(base, kind)
    together = batched_points(specs, hand_written)
    for spec, points in zip(specs, together):
        alone = solo_points(spec)
        if spec.optimizer.schedule is None:
            assert all(p.lr is None for p in points) and all(p.lr is None for p in alone)
        else:
            assert [p.lr for p in points] == pytest.approx([p.lr for p in alone])
        assert [p.loss for p in points] == pytest.approx([p.loss for p in alone], rel=2e-4, abs=1e-6)


def test_what_the_batched_path_leaves_to_one_by_one_is_named():
    def specs_with(**changes):
        spec = copy.deepcopy(BLOBS)
        for key, value in changes.items():
            target = spec["model"] if key in ("dropout", "batch_norm") else spec["optimizer"]
            target[key] = value
        return [JobSpec.model_validate(spec)]

    def reason(**changes):
        specs = specs_with(**changes)
        return one_by_one_reason(specs, [prepare(s)[0] for s in specs])

    assert reason() is None
    assert reason(schedule={"kind": "step", "step_epochs": 2, "gamma": 0.5}) is None
    assert "plateau" in reason(schedule={"kind": "plateau"})
    assert "clipping" in reason(clip_grad_norm=1.0)
    assert "dropout" in reason(dropout=0.2)
    assert "batch norm" in reason(batch_norm=True)
