"""A job's `metrics` over HTTP: 422s naming the field, the curve's <name> and val_<name> columns (the final
evaluation's numbers at the last epoch), for a job, a batched sweep's members and members one by one."""

import dataclasses

import pytest

from fitserve import schemas
from service import curves
from tests.conftest import shared_app
from tests.service.api.test_bad_specs import with_changes
from tests.service.api.test_sweeps import submit_sweep, wait_sweep
from tests.specs import example, tiny_regression

server = shared_app()  # the tests keep apart by their own jobs

BLOBS = example("4_logistic_regression", epochs=40)
BLOBS["data"]["clusters"][0]["mean"] = [1, 1]  # overlapping clusters: scores below 1
BLOBS["data"]["validation_fraction"] = 0.25
CLASSIFIER = BLOBS | {"metrics": ["f1", "roc_auc", "precision", "recall", "log_loss"]}
REGRESSION = tiny_regression(epochs=30, metrics=["r2", "mae"],
                             data={"source": "synthetic", "generator": "linear", "n": 60, "noise": 0.5,
                                   "validation_fraction": 0.25})
IRIS = {
    "model": {"kind": "mlp", "in_features": 4, "hidden": [8], "out_features": 3},
    "task": "classification",
    "data": {"source": "builtin", "name": "iris", "validation_fraction": 0.2},
    "loss": "cross_entropy",
    "optimizer": {"kind": "sgd", "lr": 0.1},
    "epochs": 5,
}
EXTRA = {"mse", "rmse", "mae", "r2", "log_loss", "precision", "recall", "f1", "roc_auc"}


def test_the_client_the_curve_and_the_spec_name_the_same_metrics():
    assert set(curves.EPOCH_NAMES) == set(schemas.EPOCH_METRICS) == EXTRA
    assert schemas.EPOCH_FIELDS == set(curves.EPOCH_FIELDS) <= set(schemas.MetricPointPublic.model_fields)
    assert tuple(f.name for f in dataclasses.fields(curves.CurvePoint)) == curves.FIELDS
    assert tuple(f.name for f in dataclasses.fields(curves.Columns)) == curves.FIELDS

CASES = {
    "unknown name": (with_changes(CLASSIFIER, metrics=["f2"]), ["body", "metrics", 0]),
    "loss is not a metric": (with_changes(CLASSIFIER, metrics=["val_loss"]), ["body", "metrics", 0]),
    "classifier metric on a regression": (with_changes(REGRESSION, metrics=["r2", "f1"]), ["body", "metrics", 1]),
    "regression metric on a classifier": (with_changes(CLASSIFIER, metrics=["mae"]), ["body", "metrics", 0]),
    "duplicate": (with_changes(CLASSIFIER, metrics=["f1", "recall", "f1"]), ["body", "metrics", 2]),
    "too many": (with_changes(CLASSIFIER, metrics=["f1", "recall", "precision", "log_loss", "roc_auc", "f1"]),
                 ["body", "metrics"]),
    "roc_auc of three classes": (with_changes(IRIS, metrics=["roc_auc"]), ["body", "metrics", 0]),
    "not a list": (with_changes(CLASSIFIER, metrics="f1"), ["body", "metrics"]),
}


@pytest.mark.one_backend("the spec's checks run before the database")
@pytest.mark.parametrize("spec,loc", CASES.values(), ids=CASES.keys())
def test_bad_metrics_are_422_naming_the_field(server, spec, loc):
    response = server.client.post("/v1/jobs", json=spec)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert any(d["loc"][: len(loc)] == loc for d in detail), detail


def test_a_bad_metric_in_a_sweeps_base_is_422(server):
    body = {"name": "s", "base": with_changes(REGRESSION, metrics=["f1"]), "space": {"lr": [0.01, 0.02]}}
    response = server.client.post("/v1/sweeps", json=body)
    assert response.status_code == 422, response.text
    assert "metrics" in str(response.json()["detail"])


def assert_curve_has(curve: list[dict], names: list[str], job: dict) -> None:
    """Every point has <name> and val_<name> and no other extra column; the last val_<name> is the evaluation's."""
    wanted = set(names) | {f"val_{n}" for n in names}
    for point in curve:
        extra = {key for key in point if key in EXTRA or key.removeprefix("val_") in EXTRA}
        assert extra == wanted, point
        assert all(point[name] is not None for name in wanted), point
    evaluation = job["evaluation"]["validation"]
    for name in names:
        assert curve[-1][f"val_{name}"] == pytest.approx(evaluation[name], rel=1e-5, abs=1e-7), name
        assert job["metrics"][name] == curve[-1][name] and job["metrics"][f"val_{name}"] == curve[-1][f"val_{name}"]


def test_a_classifier_records_its_metrics_on_the_curve(server):
    job = server.train(CLASSIFIER)
    assert job["status"] == "succeeded", job
    assert job["spec"]["metrics"] == CLASSIFIER["metrics"]
    curve = server.curve(job["id"])
    assert len(curve) == 40
    assert_curve_has(curve, CLASSIFIER["metrics"], job)
    assert 0.5 < curve[-1]["roc_auc"] <= 1 and 0 < curve[-1]["val_f1"] <= 1
    assert curve[-1]["f1"] != curve[0]["f1"]  # per epoch, not once
    paged = server.client.get(f"/v1/jobs/{job['id']}/metrics", params={"max_points": 5}).json()["points"]
    assert paged[-1] == curve[-1]


def test_a_regression_records_its_metrics_and_others_none(server):
    job = server.train(REGRESSION)
    assert job["status"] == "succeeded", job
    assert_curve_has(server.curve(job["id"]), ["r2", "mae"], job)
    plain = server.train(with_changes(REGRESSION, metrics=[]))
    keys = {"step", "epoch", "loss", "val_loss", "accuracy", "val_accuracy", "lr"}
    assert all(set(point) == keys for point in server.curve(plain["id"]))  # the curve's contract, unchanged
    assert set(plain["metrics"]) == keys


@pytest.mark.parametrize("execution", ["batched", "one_by_one"])
def test_asha_members_record_their_own_metrics(server, execution):
    """Stacked members, and members in turn: each its own figures, a pruned one's up to its rung."""
    body = {"name": "s", "base": CLASSIFIER | {"epochs": 12}, "search": "asha", "count": 4, "search_seed": 1,
            "space": {"lr": {"distribution": "log_uniform", "low": 0.001, "high": 0.1}},
            "asha": {"min_epochs": 4, "reduction_factor": 2}, "execution": execution}
    done = wait_sweep(server, submit_sweep(server, body)["id"])
    assert done["status"] == "succeeded" and done["progress"]["succeeded"] == 4, done
    assert done["execution"].startswith(execution.replace("_", " ")), done["execution"]
    finals, lengths = set(), []
    for entry in done["leaderboard"]:
        job = server.client.get(f"/v1/jobs/{entry['job_id']}").json()
        curve = server.curve(job["id"])
        lengths.append(len(curve))
        assert_curve_has(curve, CLASSIFIER["metrics"], job)
        finals.add(curve[3]["log_loss"])
    assert sorted(lengths) == [4, 4, 8, 12]  # rungs at 4 and 8 epochs: 4 members, then 2, then 1
    assert len(finals) == 4  # each member's own
