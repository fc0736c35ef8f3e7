"""A finished job's final state as another job's start, in the engines alone (no database): mini-batches, momentum,
a changed rate, a state saved by a differently stepping optimizer, and the stacked engine."""

import pytest
import torch

from tests.workers.engines.test_stacked import CUBIC, member, prepare, solo_points
from workers.checkpoints import continued_state, state_from_bytes, state_to_bytes
from workers.engines.eager import Trainer
from workers.engines.stacked import StackedTrainer
from workers.run import train_here

CPU = torch.device("cpu")
MINI = {"batch_size": 64, "momentum": 0.9, "lr": 0.003}  # several steps an epoch, each in a permuted order


def final_state(spec) -> dict:
    """The state a run of `spec` keeps as its job succeeds, through its bytes."""
    ledger = train_here(Trainer(spec, *prepare(spec), CPU))
    return state_from_bytes(ledger.ended["0"]["final_state"])


def continued(spec, state, stacked: bool = False) -> list:
    """The curve of a job of `spec` started from `state` (as workers/attempt.py `starting_state` gives it)."""
    state = continued_state(state, spec)
    if stacked:
        engine = StackedTrainer([spec, spec], *map(list, zip(prepare(spec), prepare(spec))), CPU)
        engine.load_member_states([state, state])
    else:
        engine = Trainer(spec, *prepare(spec), CPU)
        engine.load_state(state)
    return train_here(engine).points["0"]


@pytest.mark.parametrize("stacked", [False, True], ids=["eager", "stacked"])
def test_continuing_k_epochs_equals_one_job_of_n_plus_k(stacked):
    state = final_state(member(CUBIC, epochs=20, **MINI))
    assert state["epoch"] == 20 and state["optimizer"]["state"]  # momentum buffers came along
    points = continued(member(CUBIC, epochs=30, **MINI), state, stacked)
    whole = solo_points(member(CUBIC, epochs=30, **MINI))[20:]
    assert [p.epoch for p in points] == list(range(21, 31)) and [p.step for p in points] == [p.step for p in whole]
    assert [p.loss for p in points] == pytest.approx([p.loss for p in whole], rel=2e-4, abs=1e-6)


def test_a_continuation_steps_at_its_own_rate_and_as_its_own_optimizer_steps():
    state = final_state(member(CUBIC, epochs=20, **MINI))
    for group in state["optimizer"]["param_groups"]:
        group["foreach"] = False  # as a differently built optimizer saved it
    spec = member(CUBIC, epochs=30, **{**MINI, "lr": 0.0003})
    trainer = Trainer(spec, *prepare(spec), CPU)
    trainer.load_state(continued_state(state, spec))
    assert {(g["lr"], g["momentum"], g["foreach"]) for g in trainer.optimizer.param_groups} == {(0.0003, 0.9, True)}


def test_a_job_stopped_early_keeps_no_final_state_one_run_to_its_end_its_last_epochs():
    spec = member(CUBIC, epochs=200, early_stopping={"patience": 2, "min_delta": 1.0})
    ended = train_here(Trainer(spec, *prepare(spec), CPU)).ended["0"]
    assert ended["stopped_early_at"] < 200 and "final_state" not in ended  # trained past its stop: not kept
    spec = member(CUBIC, epochs=20, early_stopping={"patience": 100})
    ended = train_here(Trainer(spec, *prepare(spec), CPU)).ended["0"]
    state = state_from_bytes(ended["final_state"])
    assert state["epoch"] == ended["final_epoch"] == 20 and "early_stopping" in state
    assert "early_stopping" not in continued_state(state, spec)  # a continuation's starts afresh
    assert state_to_bytes(continued_state(state, spec))
