"""Dropout and batch norm train in train mode and are measured in eval mode; the test split stays out of training."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from modelzoo import build_network, fit_scales
from service.schemas.spec import JobSpec
from workers.data import load_data
from workers.engines.eager import Trainer, seed_network_init
from workers.evaluation import evaluate_splits
from workers.run import train_here


def iris_spec(model: dict, epochs: int = 30, **extra) -> JobSpec:
    return JobSpec.model_validate({
        "model": model,
        "task": "classification",
        "data": {"source": "builtin", "name": "iris", "validation_fraction": 0.2, "standardize": True},
        "loss": "cross_entropy",
        "optimizer": {"kind": "adam", "lr": 0.01},
        "epochs": epochs,
        "batch_size": 16,
        **extra,
    })


def train(spec: JobSpec, data=None) -> tuple[Trainer, list]:
    seed_network_init(spec.seed)
    net = build_network(spec.model)
    data = data or load_data(spec, None)
    fit_scales(net, spec.data, data.x_train, data.y_train)
    trainer = Trainer(spec, net, data, torch.device("cpu"))
    return trainer, train_here(trainer).points["0"]


MLP = {"kind": "mlp", "in_features": 4, "hidden": [32, 16], "out_features": 3, "dropout": 0.5, "batch_norm": True}


def test_dropout_draws_in_training_and_is_off_in_eval_mode():
    trainer, _ = train(iris_spec(MLP, epochs=3))
    net, x = trainer.net, trainer.data.x_val
    net.train()
    with torch.no_grad():
        assert not torch.equal(net(x), net(x))  # fresh masks each pass
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x), net(x))


def test_batch_norm_uses_running_statistics_in_eval_mode():
    trainer, _ = train(iris_spec({**MLP, "dropout": None}, epochs=5))
    net, x = trainer.net, trainer.data.x_val
    bn = net[2]
    assert isinstance(bn, torch.nn.BatchNorm1d) and not torch.allclose(bn.running_mean, torch.zeros(32))
    net.eval()
    with torch.no_grad():
        alone = torch.cat([net(x[i : i + 1]) for i in range(len(x))])
        torch.testing.assert_close(alone, net(x))  # eval mode: a row's answer does not depend on its batch
        net.train()
        assert not torch.allclose(net(x[:5])[:3], net(x[:3]), atol=1e-4)  # train mode: batch statistics


def test_recorded_val_loss_is_measured_in_eval_mode():
    trainer, points = train(iris_spec(MLP, epochs=10))
    net = trainer.net.eval()
    with torch.no_grad():
        expected = F.cross_entropy(net(trainer.data.x_val), trainer.data.y_val).item()
    assert points[-1].val_loss == pytest.approx(expected, rel=1e-5)


def test_early_stopping_keeps_the_best_epochs_batch_norm_statistics():
    spec = iris_spec({**MLP, "dropout": None}, epochs=60, early_stopping={"patience": 3})
    trainer, points = train(spec)
    best = trainer.early.outcome(0, spec.epochs)["best_metrics"]
    net = trainer.net.eval()
    with torch.no_grad():
        kept = F.cross_entropy(net(trainer.data.x_val), trainer.data.y_val).item()
    assert kept == pytest.approx(best["val_loss"], rel=1e-5)


def inline_spec(y: list[int], test_fraction: float, **extra) -> JobSpec:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(len(y), 2)) + np.array(y)[:, None]
    return JobSpec.model_validate({
        "model": {"kind": "mlp", "in_features": 2, "hidden": [8], "out_features": 3},
        "task": "classification",
        "data": {"source": "inline", "x": x.tolist(), "y": y, "validation_fraction": 0.2,
                 "test_fraction": test_fraction},
        "loss": "cross_entropy",
        "optimizer": {"kind": "sgd", "lr": 0.1},
        "epochs": 40,
        **extra,
    })


def test_the_splits_are_disjoint_deterministic_and_leave_validation_as_it_was():
    y = [i % 3 for i in range(100)]
    without, with_test = load_data(inline_spec(y, 0.0), None), load_data(inline_spec(y, 0.25), None)
    again = load_data(inline_spec(y, 0.25), None)
    rows = lambda t: {tuple(r) for r in t.tolist()}  # noqa: E731
    assert len(with_test.x_test) == 25 and len(with_test.x_val) == 20 and len(with_test.x_train) == 55
    assert not rows(with_test.x_test) & rows(with_test.x_train) and not rows(with_test.x_test) & rows(with_test.x_val)
    assert rows(with_test.x_test) | rows(with_test.x_val) | rows(with_test.x_train) == rows(without.x_train) | rows(without.x_val)
    torch.testing.assert_close(with_test.x_test, again.x_test)
    torch.testing.assert_close(with_test.x_val, without.x_val)  # the test split takes nothing from validation


def test_the_test_split_never_reaches_training_early_stopping_or_the_curve():
    """Relabel only the rows that land in the test split: the curve and early stopping do not move."""
    y = [i % 3 for i in range(100)]
    spec = inline_spec(y, 0.25, early_stopping={"patience": 5})
    data = load_data(spec, None)
    flipped_data = load_data(spec, None)
    flipped_data.y_test = (flipped_data.y_test + 1) % 3
    trainer_a, points_a = train(spec, data)
    trainer_b, points_b = train(spec, flipped_data)
    assert [(p.loss, p.val_loss, p.accuracy, p.val_accuracy) for p in points_a] == [
        (p.loss, p.val_loss, p.accuracy, p.val_accuracy) for p in points_b
    ]
    assert trainer_a.early.outcome(0, trainer_a.spec.epochs) == trainer_b.early.outcome(0, trainer_b.spec.epochs)
    eval_a = evaluate_splits(trainer_a.net, data, spec)
    eval_b = evaluate_splits(trainer_b.net, flipped_data, spec)
    assert eval_a["validation"] == eval_b["validation"]
    assert eval_a["test"]["accuracy"] != eval_b["test"]["accuracy"]  # only the final evaluation reads them
    assert eval_a["test"]["rows"] == 25
