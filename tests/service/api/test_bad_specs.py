"""Every invalid spec is a 422 whose detail names the field; nothing is stored for it."""

import copy

import pytest

from tests.conftest import shared_app
from tests.specs import example, tiny_regression

server = shared_app()  # the tests keep apart by their own jobs


def with_changes(spec: dict, **changes) -> dict:
    """A copy of `spec` with `a__b` paths replaced (a value of ... deletes the key)."""
    spec = copy.deepcopy(spec)
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = spec
        for key in parents:
            node = node[key]
        if value is ...:
            del node[leaf]
        else:
            node[leaf] = value
    return spec


BASE = tiny_regression()
DIGITS = example("6_cnn_digits")
BLOBS = example("5_softmax_classification")

CASES = {
    "unknown model kind": (with_changes(BASE, model__kind="transformer"), ["body", "model"]),
    "negative lr": (with_changes(BASE, optimizer__lr=-0.1), ["body", "optimizer", "lr"]),
    "unknown optimizer": (with_changes(BASE, optimizer__kind="lbfgs"), ["body", "optimizer", "kind"]),
    "unknown field": (with_changes(BASE, learning_rate=0.1), ["body", "learning_rate"]),
    "missing epochs": (with_changes(BASE, epochs=...), ["body", "epochs"]),
    "zero epochs": (with_changes(BASE, epochs=0), ["body", "epochs"]),
    "bad device": (with_changes(BASE, device="tpu"), ["body", "device"]),
    "unknown data source": (with_changes(BASE, data__source="s3"), ["body", "data"]),
    "in_features do not fit the data": (with_changes(BASE, model__in_features=3), ["body", "model", "in_features"]),
    "regression with cross-entropy": (with_changes(BASE, loss="cross_entropy"), ["body", "loss"]),
    "standardized targets on a classification": (
        with_changes(BLOBS, data__standardize_target=True), ["body", "data", "standardize_target"]
    ),
    "classification with mse": (with_changes(BLOBS, loss="mse"), ["body", "loss"]),
    "too few outputs for the classes": (with_changes(BLOBS, model__out_features=2), ["body", "model", "out_features"]),
    "bce with two outputs": (with_changes(BLOBS, loss="bce"), ["body", "model", "out_features"]),
    "image size does not fit": (with_changes(DIGITS, model__input_size=[16, 16]), ["body", "model", "input_size"]),
    "conv shrinks the image to nothing": (
        with_changes(DIGITS, model__conv=[{"out_channels": 4, "kernel_size": 9}]),
        ["body", "model", "cnn"],
    ),
    "batch larger than the data": (with_changes(BASE, batch_size=51), ["body", "batch_size"]),
    "inline x and y of different lengths": (
        with_changes(BASE, data={"source": "inline", "x": [1, 2, 3], "y": [1, 2]}),
        ["body", "data", "inline"],
    ),
    "ragged inline rows": (
        with_changes(BASE, data={"source": "inline", "x": [[1], [2, 3]], "y": [1, 2]}),
        ["body", "data", "inline"],
    ),
    "uniform init with low above high": (
        with_changes(BASE, model__init={"kind": "uniform", "low": 1, "high": 0}),
        ["body", "model", "linear", "init"],
    ),
    "weight decay past any use": (with_changes(BASE, optimizer={"kind": "sgd", "lr": 0.1, "weight_decay": 1e308}),
                                  ["body", "optimizer", "weight_decay"]),
    "epochs x rows over the budget": (
        with_changes(example("2_linear_regression"), epochs=1_000_000),
        ["body", "epochs"],
    ),
    "a generator's bound beyond float32": (
        with_changes(BASE, data__low=-1e39), ["body", "data", "synthetic-linear", "low"]
    ),
    "a line whose y overflows float32": (
        with_changes(BASE, data__slope=1e30, data__high=1e10), ["body", "data", "synthetic-linear"]
    ),
    "a polynomial whose y overflows float32": (
        with_changes(example("3_nonlinear_mlp"), data__coefficients=[0, 0, 0, 1e30], data__high=1e4),
        ["body", "data", "synthetic-polynomial"],
    ),
    "blobs whose points overflow float32": (
        with_changes(BLOBS, data__clusters=[{"mean": [0, 0], "std": 1e38, "n": 10}]),
        ["body", "data", "synthetic-blobs", "clusters", 0],
    ),
    "dataset that does not exist": (
        with_changes(BASE, data={"source": "dataset", "dataset_id": "nope"}),
        ["body", "data", "dataset_id"],
    ),
    "hidden layer too wide": (
        with_changes(example("3_nonlinear_mlp"), model__hidden=[100_000]),
        ["body", "model", "mlp", "hidden", 0],
    ),
    "too many parameters": (
        with_changes(example("3_nonlinear_mlp"), model__hidden=[4096, 4096]),
        ["body", "model"],
    ),
    "early stopping on val_loss without a validation split": (
        with_changes(BASE, early_stopping={"patience": 3, "monitor": "val_loss"}),
        ["body", "early_stopping", "monitor"],
    ),
    "early stopping on val_loss with a split of no rows": (
        with_changes(BASE, data__validation_fraction=0.005, early_stopping={"patience": 3, "monitor": "val_loss"}),
        ["body", "early_stopping", "monitor"],
    ),
    "early stopping with no patience": (
        with_changes(BASE, early_stopping={"patience": 0}), ["body", "early_stopping", "patience"]
    ),
    "early stopping with a negative min_delta": (
        with_changes(BASE, early_stopping={"patience": 2, "min_delta": -0.1}), ["body", "early_stopping", "min_delta"]
    ),
}


@pytest.mark.parametrize("spec,loc", CASES.values(), ids=CASES.keys())
def test_bad_spec_is_422_naming_the_field(server, spec, loc):
    before = server.client.get("/v1/jobs", params={"limit": 200}).json()["items"]
    response = server.client.post("/v1/jobs", json=spec)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert any(d["loc"][: len(loc)] == loc for d in detail), detail
    assert all(d["msg"] for d in detail)
    after = server.client.get("/v1/jobs", params={"limit": 200}).json()["items"]
    assert [j["id"] for j in after] == [j["id"] for j in before]


def test_body_that_is_not_json_is_422(server):
    response = server.client.post("/v1/jobs", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422
