"""Members trained together equal the same specs trained alone, to float tolerance."""

import copy

import pytest
import torch

from service.schemas.spec import JobSpec
from tests.specs import example
from workers.attempt import prepare as prepare_member
from workers.engines.eager import Trainer
from workers.engines.stacked import StackedTrainer
from workers.run import train_here

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
    """The worker's set-up on the CPU: seeded network, data, fitted transforms."""
    return prepare_member(spec, torch.device("cpu"))


def solo_points(spec: JobSpec) -> list:
    net, data = prepare(spec)
    ledger = train_here(Trainer(spec, net, data, torch.device("cpu")))
    assert ledger.succeeded()
    return ledger.points["0"]


def batched_points(specs: list[JobSpec]) -> list[list]:
    nets, datas = zip(*(prepare(s) for s in specs))
    trainer = StackedTrainer(specs, list(nets), list(datas), torch.device("cpu"))
    for epoch in range(1, specs[0].epochs + 1):
        trainer.train_epoch(record=True)
        trainer.progress.epoch = epoch
    return trainer.read_points()


def recorded_losses(trainer: StackedTrainer, epochs: int) -> torch.Tensor:
    """(epochs, K) losses of the trainer's next `epochs` epochs, each recorded."""
    for _ in range(epochs):
        trainer.train_epoch(record=True)
        trainer.progress.epoch += 1
    return torch.tensor([points.loss for points in trainer.read_points()]).T


def assert_same_curves(specs: list[JobSpec]) -> None:
    together = batched_points(specs)
    for spec, points in zip(specs, together):
        alone = solo_points(spec)
        data = prepare(spec)[1]
        # a row whose two top outputs are an ulp apart may go either way: accuracies may differ by that row
        rows_val = len(data.x_val) if data.x_val is not None else 1
        one_row = {"accuracy": 1.01 / len(data.x_train), "val_accuracy": 1.01 / rows_val}
        assert [p.step for p in points] == [p.step for p in alone]
        for field in ("loss", "val_loss", "accuracy", "val_accuracy"):
            got, want = [getattr(p, field) for p in points], [getattr(p, field) for p in alone]
            if want[0] is None:
                assert got == want
            elif field in one_row:
                assert got == pytest.approx(want, abs=one_row[field]), field
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
    # 8 epochs of 19 mini-batches: 152 steps, each member's own order, and a validation split each epoch
    assert_same_curves([member(BLOBS, batch_size=64, seed=s, lr=0.05, epochs=8) for s in (0, 1, 2)])


def test_checkpoint_of_a_member_resumes_alone_on_the_same_curve():
    specs = [member(BLOBS, batch_size=64, seed=s, kind="adam", lr=0.01, epochs=10) for s in (0, 1)]
    nets, datas = zip(*(prepare(s) for s in specs))
    trainer = StackedTrainer(specs, list(nets), list(datas), torch.device("cpu"))
    for epoch in range(1, 5):
        trainer.train_epoch(record=False)
        trainer.progress.epoch = epoch
    state = trainer.member_state(1)
    net, data = prepare(specs[1])
    solo = Trainer(specs[1], net, data, torch.device("cpu"))
    solo.load_state(state)
    ledger = train_here(solo)
    assert ledger.succeeded()
    points = ledger.points["0"]
    alone = solo_points(specs[1])
    assert [p.loss for p in points] == pytest.approx([p.loss for p in alone[4:]], rel=2e-4)


# ---------------------------------------------------------------- the hand-written dense path

LOGISTIC = example("4_logistic_regression", epochs=20)  # linear + sigmoid output, cross-entropy
CNN = example("6_cnn_digits", epochs=2)


def losses_by_path(specs: list[JobSpec], hand_written: bool, epochs: int = 50) -> torch.Tensor:
    """(epochs, K) losses of `epochs` epochs trained together, by the hand-written path or vmap."""
    nets, datas = zip(*(prepare(s) for s in specs))
    trainer = StackedTrainer(specs, list(nets), list(datas), torch.device("cpu"), hand_written=hand_written)
    assert (trainer.dense is not None) == hand_written
    return recorded_losses(trainer, epochs)


# at least 50 steps each: 50 full-batch epochs, or 5 epochs of 1,200 rows in batches of 64 (95 steps) or 100 (60)
@pytest.mark.parametrize(
    "base, changes, epochs",
    [
        (CUBIC, {"kind": "sgd", "momentum": 0.9, "weight_decay": 0.01}, 50),
        (CUBIC, {"kind": "adam", "weight_decay": 0.01}, 50),
        (CUBIC, {"kind": "adamw", "weight_decay": 0.01}, 50),
        (BLOBS, {"kind": "sgd", "momentum": 0.9, "weight_decay": 0.01, "batch_size": 64}, 5),
        (BLOBS, {"kind": "adamw", "weight_decay": 0.01, "batch_size": 100}, 5),
    ],
    ids=["cubic-sgd-momentum-wd", "cubic-adam", "cubic-adamw", "blobs-minibatch-sgd", "blobs-minibatch-adamw"],
)
def test_hand_written_path_equals_vmap_over_50_steps(base, changes, epochs):
    specs = [member(base, seed=s, lr=lr, **changes) for s, lr in ((0, 0.01), (1, 0.003), (2, 0.03))]
    hand, vm = losses_by_path(specs, True, epochs), losses_by_path(specs, False, epochs)
    assert torch.allclose(hand, vm, rtol=1e-5, atol=0), (hand - vm).abs().max()


def test_hand_written_path_in_small_groups_equals_one_group():
    specs = [member(BLOBS, seed=s, kind="adam", lr=0.01) for s in range(5)]
    nets, datas = zip(*(prepare(s) for s in specs))
    curves = []
    for group in (2, 5):  # 2: groups of 2, 2 and 1 member
        trainer = StackedTrainer(specs, [copy.deepcopy(n) for n in nets], list(datas), torch.device("cpu"))
        trainer.dense.group = group
        curves.append(recorded_losses(trainer, 20))
    assert torch.allclose(curves[0], curves[1], rtol=1e-6, atol=0)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
def test_deeper_mlp_with_other_activations_sse(activation):
    base = copy.deepcopy(CUBIC)
    base["model"].update(hidden=[8, 6], activation=activation)
    base["loss"] = "sse"
    # summed losses want small rates: at 1e-4 this net oscillates, and any two float orders drift apart
    assert_same_curves([member(base, lr=lr, momentum=0.5) for lr in (1e-5, 3e-5)])


def test_linear_model_with_sigmoid_output_and_cross_entropy():
    assert_same_curves([member(LOGISTIC, seed=s, kind="adam", lr=0.01) for s in (0, 1)])


@pytest.mark.parametrize("output_activation", [None, "sigmoid"])
def test_binary_cross_entropy_with_and_without_sigmoid(output_activation):
    base = copy.deepcopy(LOGISTIC)
    base["model"].update(out_features=1, output_activation=output_activation)
    base["loss"] = "bce"
    base["data"]["validation_fraction"] = 0.2
    assert_same_curves([member(base, seed=s, lr=0.05, batch_size=50) for s in (0, 1)])


def test_members_with_standardized_targets_equal_alone_on_both_paths():
    """Each member's targets are standardized by its own training rows (its seed draws its validation split), on
    the hand-written path and vmap alike; the curves are in standardized units."""
    base = copy.deepcopy(CUBIC)
    base["data"].update(coefficients=[2000, 0, 0, 500], validation_fraction=0.2, standardize_target=True)
    specs = [member(base, seed=s, kind="adam", lr=0.01) for s in (0, 1)]
    assert_same_curves(specs)
    hand, vm = losses_by_path(specs, True, epochs=20), losses_by_path(specs, False, epochs=20)
    assert torch.allclose(hand, vm, rtol=1e-5, atol=0), (hand - vm).abs().max()
    assert hand.max() < 10  # the raw targets' variance is ~2e7


def test_a_cnn_keeps_the_vmap_path():
    specs = [member(CNN, seed=s) for s in (0, 1)]
    nets, datas = zip(*(prepare(s) for s in specs))
    assert StackedTrainer(specs, list(nets), list(datas), torch.device("cpu")).dense is None


@pytest.mark.parametrize("kind, momentum", [("sgd", 0.9), ("adam", 0.0)])
def test_members_resumed_together_continue_on_the_same_curve(kind, momentum):
    specs = [member(CUBIC, seed=s, kind=kind, momentum=momentum, lr=0.01) for s in (0, 1)]

    def trainer():
        nets, datas = zip(*(prepare(s) for s in specs))
        return StackedTrainer(specs, list(nets), list(datas), torch.device("cpu"))

    straight = trainer()
    losses = recorded_losses(straight, 20)
    first = trainer()
    for epoch in range(1, 11):
        first.train_epoch(record=False)
        first.progress.epoch = epoch
    resumed = trainer()
    resumed.load_member_states([first.member_state(k) for k in range(len(specs))])  # optimizer state included
    again = recorded_losses(resumed, 10)
    assert torch.allclose(again, losses[10:], rtol=1e-6, atol=0)


def test_a_report_with_no_new_epochs_is_empty_for_every_member():
    specs = [member(CUBIC, seed=s) for s in range(3)]
    nets, datas = zip(*(prepare(s) for s in specs))
    trainer = StackedTrainer(specs, list(nets), list(datas), torch.device("cpu"))
    assert [len(points) for points in trainer.read_points()] == [0, 0, 0]


def test_an_epoch_stops_between_mini_batches_when_interrupted_and_is_not_counted():
    specs = [member({**CUBIC, "batch_size": 10}, seed=s) for s in range(2)]  # 30 mini-batches an epoch
    nets, datas = zip(*(prepare(s) for s in specs))
    trainer = StackedTrainer(specs, list(nets), list(datas), torch.device("cpu"))
    asked = []
    trainer.interrupted = lambda: asked.append(len(asked)) or len(asked) == 2  # yes at the second question
    assert trainer.train_epoch(record=True) is False
    assert len(asked) == 2 and trainer.progress.step == 0  # asked every 8 batches; the steps taken are not counted
