"""Early stopping: where a job stops and which weights it keeps, trained alone, batched and resumed.

The reference is the tutorial's eager loop (`plain_epochs`) with the rule applied by hand: stop at the
first recorded epoch where the monitored figure has not improved (fallen, or in mode max risen) by more than min_delta for `patience`
recorded epochs in a row, and keep the weights of the last epoch that did improve.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import pytest
import torch

from tests.workers.engines.test_fast_path import CASES as FAST_CASES
from tests.workers.engines.test_fast_path import as_tuples, assert_same_curve, needs_cuda, plain_epochs, setup, train
from tests.workers.engines.test_stacked import prepare
from workers.checkpoints import state_from_bytes
from workers.engines.stacked import StackedTrainer

MINI_BATCHES = {**FAST_CASES["regression, mini-batch, momentum, validation"], "epochs": 200}
CASES = {
    "val_loss (the default with a validation split), mini-batches, momentum": {
        **MINI_BATCHES,
        "early_stopping": {"patience": 5},
    },
    "val_accuracy max, mini-batches, adamw": {
        **FAST_CASES["classification, mini-batch, adamw, bce on logits, validation"],
        "epochs": 200,
        "early_stopping": {"patience": 4, "monitor": "val_accuracy", "mode": "max"},
    },
    "loss every 3rd epoch, min_delta, adam, full batch": {
        **FAST_CASES["classification, full batch, adam, validation, every 3rd epoch"],
        "epochs": 300,
        "early_stopping": {"patience": 3, "monitor": "loss", "min_delta": 0.01},
    },
}


COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy")  # what plain_epochs yields


@dataclass
class Reference:
    curve: list[tuple]  # as `plain_epochs` yields them, up to the stop
    stopped_at: int | None
    best_epoch: int
    best_weights: dict
    last_weights: dict


def plain_early_stopping(spec_dict: dict) -> Reference:
    spec, net, data = setup(spec_dict)
    rule, has_validation = spec.early_stopping, data.x_val is not None
    column = COLUMNS.index(rule.monitor_for(has_validation))
    sign = 1 if rule.mode_for(has_validation) == "min" else -1
    best, best_epoch, best_weights, bad, curve = math.inf, 0, None, 0, []
    for point in plain_epochs(spec, net, data):
        curve.append(point)
        if sign * point[column] < best - rule.min_delta:
            best, best_epoch, best_weights, bad = sign * point[column], point[0], copy.deepcopy(net.state_dict()), 0
        else:
            bad += 1
        if bad >= rule.patience:
            return Reference(curve, point[0], best_epoch, best_weights, net.state_dict())
    return Reference(curve, None, best_epoch, best_weights, net.state_dict())


def predictions(spec_dict: dict, weights: dict, x: torch.Tensor) -> torch.Tensor:
    _, net, _ = setup(spec_dict)
    net.load_state_dict(weights)
    with torch.no_grad():
        return net(x)


@pytest.mark.parametrize("name", list(CASES))
def test_a_job_stops_where_the_rule_says_and_keeps_its_best_weights(name):
    want = plain_early_stopping(CASES[name])
    assert want.stopped_at is not None and want.best_epoch < want.stopped_at < CASES[name]["epochs"]
    spec, net, data = setup(CASES[name])
    points, finished, _, trainer = train(spec, net, data)
    assert finished and points[-1].epoch == want.stopped_at  # the job ends at the stop
    assert_same_curve(as_tuples(points, spec, data.x_val is not None), want.curve)  # it ends at the stop
    outcome = trainer.early.outcome(0, trainer.spec.epochs)
    assert (outcome["stopped_early_at"], outcome["best_epoch"]) == (want.stopped_at, want.best_epoch)
    assert outcome["best_metrics"]["epoch"] == want.best_epoch
    with torch.no_grad():
        got = trainer.net(data.x_train)
    assert got == pytest.approx(predictions(CASES[name], want.best_weights, data.x_train), rel=1e-4, abs=1e-5)
    assert not torch.allclose(got, predictions(CASES[name], want.last_weights, data.x_train), rtol=1e-3)


def test_a_job_resumed_mid_patience_stops_at_the_same_epoch_with_the_same_weights():
    spec_dict = CASES["val_loss (the default with a validation split), mini-batches, momentum"]
    whole, _, _, trainer = train(*setup(spec_dict))
    outcome = trainer.early.outcome(0, trainer.spec.epochs)
    middle = (outcome["best_epoch"] + outcome["stopped_early_at"]) // 2
    first, finished, checkpoint, _ = train(*setup(spec_dict), stop_after=middle)
    assert not finished and first[-1].epoch == middle
    assert 0 < int(state_from_bytes(checkpoint)["early_stopping"]["bad"]) < spec_dict["early_stopping"]["patience"]
    rest, finished, _, resumed = train(*setup(spec_dict), state=checkpoint)
    assert finished and resumed.early.outcome(0, resumed.spec.epochs) == outcome
    assert [(p.epoch, p.loss, p.val_loss) for p in first + rest] == [(p.epoch, p.loss, p.val_loss) for p in whole]
    for mine, theirs in zip(resumed.net.parameters(), trainer.net.parameters()):
        assert torch.equal(mine, theirs)


def stacked_and_alone(spec_dict: dict, lrs: tuple[float, ...]):
    """Members of these rates trained as one stack, and each alone: per member (stack, its points, alone, data)."""
    specs = [setup({**spec_dict, "optimizer": {**spec_dict["optimizer"], "lr": lr}})[0] for lr in lrs]
    nets, datas = zip(*(prepare(s) for s in specs))
    batched = StackedTrainer(specs, list(nets), list(datas), torch.device("cpu"))
    for epoch in range(1, specs[0].epochs + 1):
        batched.train_epoch(record=True)
        batched.progress.epoch = epoch
        if bool((batched.early.stop_epoch > 0).all()):
            break  # every member's state is frozen at its stop: later epochs change nothing the test reads
    together = batched.early.settle(batched.read_points())
    for k, spec in enumerate(specs):
        points, finished, _, alone = train(spec, *prepare(spec))
        assert finished
        assert [p.epoch for p in together[k]] == [p.epoch for p in points]
        mine, theirs = batched.early.outcome(k, spec.epochs), alone.early.outcome(0, alone.spec.epochs)
        assert (mine["stopped_early_at"], mine["best_epoch"]) == (theirs["stopped_early_at"], theirs["best_epoch"])
        x = datas[k].x_train
        with torch.no_grad():
            assert batched.member_net(k, best=True)(x) == pytest.approx(alone.net(x), rel=2e-4, abs=1e-4)
        yield mine, theirs, together[k]


def test_batched_members_stop_each_where_it_stops_alone():
    spec_dict = {**CASES["val_loss (the default with a validation split), mini-batches, momentum"], "epochs": 60}
    stops = []
    for mine, theirs, _ in stacked_and_alone(spec_dict, (0.003, 0.01, 0.02)):
        assert mine["best_metrics"]["val_loss"] == pytest.approx(theirs["best_metrics"]["val_loss"], rel=2e-4)
        stops.append(mine["stopped_early_at"])
    assert stops[0] is None and stops[1] is not None and stops[2] is not None and stops[1] != stops[2]


def test_batched_members_monitoring_val_accuracy_keep_their_most_accurate_epoch():
    stops = []
    for mine, theirs, points in stacked_and_alone(CASES["val_accuracy max, mini-batches, adamw"], (0.005, 0.02, 0.05)):
        assert mine["best_metrics"]["val_accuracy"] == theirs["best_metrics"]["val_accuracy"]
        best = max(p.val_accuracy for p in points)  # the first epoch to reach it is kept
        assert mine["best_metrics"]["val_accuracy"] == best
        assert mine["best_epoch"] == next(p.epoch for p in points if p.val_accuracy == best)
        stops.append(mine["stopped_early_at"])
    assert all(stop is not None for stop in stops)


@needs_cuda
@pytest.mark.parametrize("name", list(CASES))
def test_cuda_graph_stops_where_the_eager_loop_stops(name):
    # the eager loop on the same device: mini-batch order comes from a generator there, and a CUDA
    # generator draws another order than a CPU one
    eager = train(*setup(CASES[name]), device=torch.device("cuda"), graphs=False)[3]
    assert eager.graph is None
    points, finished, _, cuda = train(*setup(CASES[name]), device=torch.device("cuda"))
    assert finished and cuda.graph.graph is not None and not cuda.graph.failed
    assert cuda.early.outcome(0, cuda.spec.epochs)["stopped_early_at"] == eager.early.outcome(0, eager.spec.epochs)["stopped_early_at"]
    assert cuda.early.outcome(0, cuda.spec.epochs)["best_epoch"] == eager.early.outcome(0, eager.spec.epochs)["best_epoch"]
    x = eager.data.x_train
    with torch.no_grad():
        assert cuda.net(x).cpu() == pytest.approx(eager.net(x).cpu(), rel=1e-4, abs=1e-5)
