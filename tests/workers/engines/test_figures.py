"""A job's per-epoch `metrics`: scikit-learn's numbers, and the final evaluation's, on every engine."""

import copy

import numpy as np
import pytest
import torch
from sklearn import metrics as sk

from modelzoo.metrics import EPOCH_METRICS, score
from service.schemas.spec import JobSpec
from tests.specs import example, large_targets
from workers.attempt import prepare as prepare_member
from workers.engines.eager import Trainer
from workers.engines.figures import classification_figures, regression_figures
from workers.engines.in_turn import InTurn
from workers.engines.stacked import StackedTrainer
from workers.evaluation import evaluate_splits, measure
from workers.run import train_here

CPU = torch.device("cpu")
REGRESSION, CLASSIFICATION = EPOCH_METRICS["regression"], EPOCH_METRICS["classification"]


def sklearn_regression(pred: np.ndarray, true: np.ndarray) -> dict:
    mse = sk.mean_squared_error(true, pred)
    return {"mse": mse, "rmse": sk.root_mean_squared_error(true, pred), "mae": sk.mean_absolute_error(true, pred),
            "r2": sk.r2_score(true, pred)}


def sklearn_classification(probs: np.ndarray, true: np.ndarray) -> dict:
    labels = list(range(probs.shape[1]))
    pred = probs.argmax(axis=1)
    macro = {"average": "macro", "labels": labels, "zero_division": 0}
    return {"log_loss": sk.log_loss(true, probs, labels=labels), "precision": sk.precision_score(true, pred, **macro),
            "recall": sk.recall_score(true, pred, **macro), "f1": sk.f1_score(true, pred, **macro),
            "roc_auc": sk.roc_auc_score(true, probs[:, 1]) if len(labels) == 2 else None}


def test_regression_figures_are_sklearns_for_each_stacked_member():
    gen = torch.Generator().manual_seed(0)
    out, y = torch.randn(3, 40, 2, generator=gen), torch.randn(3, 40, 2, generator=gen)
    y[2, :, 1] = 0.5  # a constant target: r2 is 0 unless the fit is perfect
    std = torch.tensor([[1.0, 1.0], [2.0, 0.5], [3.0, 1.0]], dtype=torch.float64)
    got = regression_figures(REGRESSION, out, y, std)
    for k in range(3):
        pred, true = (out[k] * std[k]).double().numpy(), (y[k] * std[k]).double().numpy()
        for want in (sklearn_regression(pred, true), score({"predictions": pred}, true, "regression")):
            for name in REGRESSION:
                assert got[name][k].item() == pytest.approx(want[name], rel=1e-9), (k, name)


@pytest.mark.filterwarnings("ignore:The y_prob values do not sum to one")  # float32 softmax, as the evaluation's
@pytest.mark.parametrize("classes", [2, 4])
def test_classification_figures_are_sklearns_for_each_stacked_member(classes):
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 60, classes, generator=gen)
    logits[1, ::3] = logits[1, 1::3]  # tied scores: roc_auc counts ties half
    logits[2, :, classes - 1] = -9.0  # a class never predicted: its precision is 0 (zero_division)
    y = torch.randint(0, classes, (3, 60), generator=gen)
    names = CLASSIFICATION if classes == 2 else tuple(n for n in CLASSIFICATION if n != "roc_auc")
    got = classification_figures(names, logits, y, "cross_entropy", None)
    for k in range(3):
        probs, true = torch.softmax(logits[k], dim=1).double().numpy(), y[k].numpy()
        evaluation = score({"predictions": probs.argmax(axis=1), "probabilities": probs}, true, "classification")
        for want in (sklearn_classification(probs, true), evaluation):
            for name in names:
                assert got[name][k].item() == pytest.approx(want[name], rel=1e-9, abs=1e-12), (k, name)


def test_roc_auc_of_a_split_with_one_class_has_no_value():
    out = torch.randn(1, 10, 1)
    got = classification_figures(("roc_auc",), out, torch.ones(1, 10, 1), "bce", None)
    assert torch.isnan(got["roc_auc"]).all()


# ---------------------------------------------------------------- trained: the final weights' measures


def blobs(**changes) -> JobSpec:
    spec = example("4_logistic_regression", epochs=6)
    spec["data"]["validation_fraction"] = 0.25
    spec["data"]["clusters"][0]["mean"] = [1, 1]  # overlapping clusters: scores below 1
    return JobSpec.model_validate(spec | {"metrics": list(CLASSIFICATION)} | changes)


def scaled_line(**changes) -> JobSpec:
    spec = large_targets(standardize_target=True, epochs=6)
    spec["data"] |= {"validation_fraction": 0.2, "test_fraction": 0.0}
    spec["optimizer"] = {"kind": "adam", "lr": 0.05}
    return JobSpec.model_validate(spec | {"metrics": list(REGRESSION)} | changes)


def check_epoch_against_weights(points, epoch: int, net, data, spec) -> None:
    """The training figures recorded at `epoch` are the measures of the weights it started from (its step's
    forward pass, one full batch)."""
    with torch.no_grad():
        before = measure(net, data.x_train, data.y_train, spec)
    point = points.at_epoch(epoch)
    for name in spec.metrics:
        assert getattr(point, name) == pytest.approx(before[name], rel=1e-5, abs=1e-7), name


def check_last_epoch_against_evaluation(points, net, data, spec) -> None:
    """val_<name> at the last epoch is the final evaluation's validation measure: the same weights, rows, definition."""
    evaluation = evaluate_splits(net, data, spec)["validation"]
    for name in spec.metrics:
        assert getattr(points[-1], f"val_{name}") == pytest.approx(evaluation[name], rel=1e-5, abs=1e-7), name


@pytest.mark.parametrize("make", [blobs, scaled_line])
def test_eager_job_records_the_evaluations_measures(make):
    spec = make()
    net, data = prepare_member(spec, CPU)
    trainer = Trainer(spec, net, data, CPU)
    with trainer.running():
        for _ in range(spec.epochs - 1):
            trainer.train_next(lambda epoch: epoch > 1, spec.epochs)
        weights = copy.deepcopy(net)
        trainer.train_next(lambda epoch: True, spec.epochs)
    points = trainer.read_points()[0]
    assert points.epoch == list(range(2, spec.epochs + 1))
    check_epoch_against_weights(points, spec.epochs, weights, data, spec)
    check_last_epoch_against_evaluation(points, net, data, spec)


@pytest.mark.parametrize("make", [blobs, scaled_line])
def test_stacked_members_record_their_own_measures(make):
    specs = [make(seed=seed) for seed in (0, 1)]
    nets, datas = map(list, zip(*(prepare_member(s, CPU) for s in specs)))
    trainer = StackedTrainer(specs, nets, datas, CPU)
    last = specs[0].epochs
    for epoch in range(1, last + 1):
        if epoch == last:
            weights = [copy.deepcopy(trainer.member_net(k)) for k in range(2)]
        trainer.train_epoch(record=True)
        trainer.progress.epoch = epoch
    for k, points in enumerate(trainer.read_points()):
        check_epoch_against_weights(points, last, weights[k], datas[k], specs[k])
        check_last_epoch_against_evaluation(points, trainer.member_net(k), datas[k], specs[k])


def test_a_shrunk_stack_keeps_each_members_target_scale():
    specs = [scaled_line(seed=seed) for seed in (0, 1, 2)]
    nets, datas = map(list, zip(*(prepare_member(s, CPU) for s in specs)))
    trainer = StackedTrainer(specs, nets, datas, CPU)
    trainer.train_epoch(record=False)
    trainer.progress.epoch = 1
    trainer.keep_members([2])
    trainer.train_epoch(record=True)
    trainer.progress.epoch = 2
    (points,) = trainer.read_points()
    check_last_epoch_against_evaluation(points, trainer.member_net(0), datas[2], specs[2])


def test_members_in_turn_and_a_whole_run_record_them():
    specs = [blobs(seed=seed, metrics=["f1", "roc_auc"]) for seed in (0, 1)]
    trainers = [Trainer(s, *prepare_member(s, CPU), CPU) for s in specs]
    ledger = train_here(InTurn(trainers))
    for k, trainer in enumerate(trainers):
        points = ledger.points[str(k)]
        assert len(points) == specs[k].epochs
        assert all(0 <= p.val_f1 <= 1 and 0 <= p.roc_auc <= 1 for p in points)
        assert points[-1].precision is None and points[-1].as_dict().keys() >= {"f1", "val_f1", "roc_auc", "val_roc_auc"}
        check_last_epoch_against_evaluation(points, trainer.net, trainer.data, specs[k])


def test_a_job_without_metrics_records_none_of_them():
    spec = blobs(metrics=[])
    ledger = train_here(Trainer(spec, *prepare_member(spec, CPU), CPU))
    point = ledger.points["0"][-1]
    assert point.accuracy is not None and point.f1 is None and "f1" not in point.as_dict()
