"""Schedules, clipping, dropout, batch norm, sequential stacks and the test split over HTTP: 422s naming the field,
the curve's `lr`, and stacks that train and answer."""

import numpy as np
import pytest

from tests.conftest import shared_app
from tests.service.api.test_bad_specs import with_changes
from tests.specs import example, tiny_regression

server = shared_app()  # the tests keep apart by their own jobs

# specs, training and measures: the service's shared paths they reach run on every back end elsewhere
pytestmark = pytest.mark.one_backend("no statement of their own")

BASE = tiny_regression()
MLP = {
    "model": {"kind": "mlp", "in_features": 4, "hidden": [8, 8], "out_features": 3},
    "task": "classification",
    "data": {"source": "builtin", "name": "iris", "validation_fraction": 0.2},
    "loss": "cross_entropy",
    "optimizer": {"kind": "sgd", "lr": 0.1},
    "epochs": 10,
}


def sequential(*layers, input_shape=(1, 8, 8)) -> dict:
    digits = example("6_cnn_digits", epochs=2)
    return {**digits, "model": {"kind": "sequential", "input_shape": list(input_shape), "layers": list(layers)}}


def schedule(kind: str, **fields) -> dict:
    return with_changes(BASE, optimizer__schedule={"kind": kind, **fields})


LINEAR = {"kind": "linear", "out_features": 10}
CASES = {
    "negative lr": (with_changes(BASE, optimizer__lr=-0.1), ["body", "optimizer", "lr"]),
    "gamma 0": (schedule("step", step_epochs=5, gamma=0), ["body", "optimizer", "schedule", "step", "gamma"]),
    "gamma over 1": (schedule("step", step_epochs=5, gamma=1.5), ["body", "optimizer", "schedule", "step", "gamma"]),
    "step_epochs 0": (schedule("step", step_epochs=0, gamma=0.5), ["body", "optimizer", "schedule", "step", "step_epochs"]),
    "negative warmup": (schedule("cosine", warmup_epochs=-1), ["body", "optimizer", "schedule", "cosine", "warmup_epochs"]),
    "warmup past epochs": (schedule("cosine", warmup_epochs=500), ["body", "optimizer", "schedule", "warmup_epochs"]),
    "min_lr over lr": (schedule("cosine", min_lr=1.0), ["body", "optimizer"]),
    "negative min_lr": (schedule("cosine", min_lr=-1.0), ["body", "optimizer", "schedule", "cosine", "min_lr"]),
    "max_lr under lr": (schedule("one_cycle", max_lr=0.001), ["body", "optimizer"]),
    "factor 1": (schedule("plateau", factor=1.0, patience=2), ["body", "optimizer", "schedule", "plateau", "factor"]),
    "negative patience": (schedule("plateau", patience=-1), ["body", "optimizer", "schedule", "plateau", "patience"]),
    "unknown schedule": (schedule("exponential"), ["body", "optimizer", "schedule"]),
    "clip 0": (with_changes(BASE, optimizer__clip_grad_norm=0), ["body", "optimizer", "clip_grad_norm"]),
    "negative clip": (with_changes(BASE, optimizer__clip_grad_norm=-1.0), ["body", "optimizer", "clip_grad_norm"]),
    "dropout 1": (with_changes(MLP, model__dropout=1.0), ["body", "model", "mlp", "dropout"]),
    "negative dropout": (with_changes(MLP, model__dropout=-0.1), ["body", "model", "mlp", "dropout"]),
    "dropout rates for other layers": (with_changes(MLP, model__dropout=[0.1]), ["body", "model", "mlp"]),
    "unknown activation": (with_changes(MLP, model__activation="swish"), ["body", "model", "mlp", "activation"]),
    "batch_norm not a bool": (with_changes(MLP, model__batch_norm="yes"), ["body", "model", "mlp", "batch_norm"]),
    "test_fraction 1": (with_changes(MLP, data__test_fraction=1.0), ["body", "data"]),
    "negative test_fraction": (with_changes(MLP, data__test_fraction=-0.1), ["body", "data"]),
    "no rows left to train": (with_changes(MLP, data__test_fraction=0.8), ["body", "data"]),
    "linear before flatten": (sequential(LINEAR), ["body", "model", "sequential"]),
    "conv shrinks to nothing": (
        sequential({"kind": "conv2d", "out_channels": 4, "kernel_size": 9}, {"kind": "flatten"}, LINEAR),
        ["body", "model", "sequential"],
    ),
    "conv on a flat input": (
        sequential({"kind": "flatten"}, {"kind": "conv2d", "out_channels": 4, "kernel_size": 3}, {"kind": "flatten"},
                   LINEAR),
        ["body", "model", "sequential"],
    ),
    "unflattened output": (sequential({"kind": "conv2d", "out_channels": 4, "kernel_size": 3}), ["body", "model"]),
    "sequential dropout 1": (sequential({"kind": "flatten"}, {"kind": "dropout", "rate": 1.0}, LINEAR),
                             ["body", "model", "sequential", "layers", 1]),
    "unknown layer": (sequential({"kind": "attention"}), ["body", "model", "sequential", "layers", 0]),
    "input shape of 2": (sequential({"kind": "flatten"}, LINEAR, input_shape=(8, 8)), ["body", "model", "sequential"]),
    "input shape not the data's": (sequential({"kind": "flatten"}, LINEAR, input_shape=(1, 8, 9)),
                                   ["body", "model", "input_shape"]),
}


@pytest.mark.parametrize("spec,loc", CASES.values(), ids=CASES.keys())
def test_bad_training_option_is_422_naming_the_field(server, spec, loc):
    response = server.client.post("/v1/jobs", json=spec)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert any(d["loc"][: len(loc)] == loc for d in detail), detail


def test_a_shape_error_names_the_layer(server):
    spec = sequential({"kind": "flatten"}, LINEAR, {"kind": "max_pool", "size": 2}, LINEAR)
    detail = server.client.post("/v1/jobs", json=spec).json()["detail"]
    assert "layers[2] (max_pool)" in detail[0]["msg"], detail


def test_the_curve_records_the_scheduled_lr_of_each_recorded_epoch(server):
    spec = with_changes(MLP, epochs=12, metrics_every=3,
                        optimizer__schedule={"kind": "step", "step_epochs": 4, "gamma": 0.5})
    job = server.train(spec)
    assert job["status"] == "succeeded", job
    points = server.client.get(f"/v1/jobs/{job['id']}/metrics").json()["points"]
    assert [(p["epoch"], p["lr"]) for p in points] == [
        (e, pytest.approx(0.1 * 0.5 ** ((e - 1) // 4))) for e in (3, 6, 9, 12)
    ]
    assert job["metrics"]["lr"] == pytest.approx(0.025)
    plain = server.client.get(f"/v1/jobs/{server.train(MLP)['id']}/metrics").json()["points"]
    assert all(p["lr"] is None for p in plain)


def test_a_sequential_cnn_trains_and_answers_in_eval_mode(server):
    spec = sequential(
        {"kind": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1}, {"kind": "batch_norm"},
        {"kind": "leaky_relu"}, {"kind": "avg_pool", "size": 2}, {"kind": "flatten"},
        {"kind": "dropout", "rate": 0.3}, {"kind": "linear", "out_features": 16}, {"kind": "elu"}, LINEAR,
    )
    spec["data"] = {**spec["data"], "test_fraction": 0.1}
    job = server.train(spec)
    assert job["status"] == "succeeded", job
    assert job["evaluation"]["test"]["rows"] == 180
    rows = np.random.default_rng(0).uniform(0, 16, size=(5, 1, 8, 8)).tolist()
    first = server.client.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": rows}).json()
    assert first == server.client.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": rows}).json()
    assert len(first["probabilities"]) == 5 and len(first["probabilities"][0]) == 10
