"""Dropping members from a batch (ASHA) and copying one member onto another (PBT) change no member's numbers."""

import pytest
import torch

from service.schemas.search import asha_keep, asha_rungs, pbt_split, ranked
from tests.workers.engines.test_stacked import BLOBS, CNN, CUBIC, member, prepare, recorded_losses, solo_points
from workers.engines.stack_members import copy_member, keep_members, set_hyperparameters
from workers.engines.stacked import StackedTrainer


def trainer_of(specs, hand_written=True) -> StackedTrainer:
    nets, datas = zip(*(prepare(s) for s in specs))
    return StackedTrainer(specs, list(nets), list(datas), torch.device("cpu"), hand_written=hand_written)


def train(t: StackedTrainer, epochs: int) -> torch.Tensor:
    """(epochs, K) losses."""
    return recorded_losses(t, epochs)


CASES = [
    ([member(CUBIC, kind="sgd", lr=lr, momentum=0.9, weight_decay=0.01, seed=s)
      for lr, s in ((0.01, 0), (0.003, 1), (0.02, 2), (0.005, 3))], True),
    ([member(BLOBS, kind="adam", lr=lr, batch_size=64, seed=s) for lr, s in ((0.01, 0), (0.003, 1), (0.02, 2))], True),
    ([member(BLOBS, kind="sgd", lr=lr, momentum=0.5, batch_size=64) for lr in (0.05, 0.1, 0.02)], False),
]


@pytest.mark.parametrize("specs, hand_written", CASES, ids=["cubic-sgd-dense", "blobs-adam-dense", "blobs-sgd-vmap"])
def test_survivors_of_a_shrunk_batch_continue_on_their_own_curves(specs, hand_written):
    # 3 epochs either side of the shrink: 57 mini-batch steps (3 full-batch ones) before it and as many after
    straight = train(trainer_of(specs, hand_written), 6)
    shrunk = trainer_of(specs, hand_written)
    train(shrunk, 3)
    keep = [2, 0]
    keep_members(shrunk, keep)
    assert shrunk.K == 2 and next(iter(shrunk.params.values())).shape[0] == 2
    after = train(shrunk, 3)
    assert torch.allclose(after, straight[3:, keep], rtol=1e-5, atol=0), (after - straight[3:, keep]).abs().max()


def test_a_survivor_equals_the_same_spec_trained_alone():
    specs = [member(CUBIC, lr=lr, seed=s) for lr, s in ((0.01, 0), (0.02, 1), (0.005, 2))]
    t = trainer_of(specs)
    losses = train(t, 15)
    keep_members(t, [1])
    losses = torch.cat([losses[:, 1], train(t, 25)[:, 0]])
    alone = [p.loss for p in solo_points(specs[1])]
    assert losses.tolist() == pytest.approx(alone, rel=2e-4)


def test_a_shrunk_batch_checkpoints_each_member_as_before():
    specs = [member(BLOBS, kind="adam", lr=0.01, batch_size=64, seed=s) for s in (0, 1, 2)]
    a, b = trainer_of(specs), trainer_of(specs)
    train(a, 5)
    train(b, 5)
    keep_members(b, [2])
    for key in ("model", "optimizer"):
        want, got = a.member_state(2)[key], b.member_state(0)[key]
        assert torch.equal(torch.cat([t.flatten() for t in tensors(want)]), torch.cat([t.flatten() for t in tensors(got)]))


def tensors(state) -> list[torch.Tensor]:
    if isinstance(state, torch.Tensor):
        return [state.float()]
    if isinstance(state, dict):
        return [t for key in sorted(state, key=str) for t in tensors(state[key])]
    if isinstance(state, (list, tuple)):
        return [t for item in state for t in tensors(item)]
    return []


@pytest.mark.parametrize("hand_written", [True, False])
@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_exploit_copies_weights_optimizer_state_and_data_order_exactly(kind, hand_written):
    specs = [member(BLOBS, kind=kind, lr=lr, momentum=0.9 if kind == "sgd" else 0.0, batch_size=64, seed=0)
             for lr in (0.05, 0.01, 0.002)]
    t = trainer_of(specs, hand_written)
    train(t, 2)  # 38 mini-batch steps: momentum and Adam's moments are under way
    copy_member(t, source=0, target=2)
    source, target = t.member_state(0), t.member_state(2)
    assert all(torch.equal(x, y) for x, y in zip(tensors(source["model"]), tensors(target["model"])))
    assert all(torch.equal(x, y) for x, y in zip(tensors(source["optimizer"]["state"]),
                                                 tensors(target["optimizer"]["state"])))
    assert torch.equal(source["rng"], target["rng"])
    set_hyperparameters(t, 2, {"lr": 0.05})  # the source's own values: the two go on identically
    losses = train(t, 2)
    assert torch.equal(losses[:, 0], losses[:, 2])
    set_hyperparameters(t, 2, {"lr": 0.06})  # explored: it now takes its own steps
    losses = train(t, 2)
    assert not torch.equal(losses[1, 0], losses[1, 2])


def test_cnn_members_shrink_on_the_vmap_path():
    specs = [member(CNN, seed=s, epochs=2, batch_size=256) for s in (0, 1)]  # 6 steps an epoch, not 23
    t = trainer_of(specs)
    assert t.dense is None
    straight = train(trainer_of(specs), 2)
    train(t, 1)
    keep_members(t, [1])
    assert torch.allclose(train(t, 1)[0, 0], straight[1, 1], rtol=1e-5)


def test_search_rules():
    assert asha_rungs(1, 3, 81) == [1, 3, 9, 27]
    assert asha_rungs(5, 2, 40) == [5, 10, 20]
    assert [asha_keep(n, 3) for n in (1, 2, 3, 8, 9, 10)] == [1, 1, 1, 2, 3, 3]
    assert [pbt_split(n, 0.25) for n in (2, 4, 5, 8, 9)] == [1, 1, 2, 2, 3]
    assert ranked([("a", 2.0), ("b", float("nan")), ("c", 1.0), ("d", None), ("e", 1.0)]) == ["c", "e", "a", "b", "d"]
