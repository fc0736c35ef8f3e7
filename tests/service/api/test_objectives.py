"""Sweep objectives over HTTP: the leaderboard and the best member by a metric and a direction, members' early
stopping watching the objective, and the 422s for a metric the members cannot record."""

import pytest

from tests.conftest import shared_app
from tests.service.api.test_sweeps import CUBIC, submit_sweep, sweep_body, wait_sweep

server = shared_app()  # the tests keep apart by their own jobs

# three overlapping clusters: members of different rates reach clearly different accuracies in 30 epochs
CLASSIFIER = {
    "model": {"kind": "mlp", "in_features": 2, "hidden": [8], "out_features": 3, "activation": "tanh"},
    "task": "classification",
    "data": {"source": "synthetic", "generator": "blobs", "validation_fraction": 0.3, "test_fraction": 0.1, "clusters": [
        {"mean": [1, 1], "std": 1.2, "n": 100}, {"mean": [-1, -1], "std": 1.2, "n": 100},
        {"mean": [1, -1], "std": 1.2, "n": 100}]},
    "loss": "cross_entropy",
    "optimizer": {"kind": "sgd", "lr": 0.1},
    "epochs": 30,
}
RATES = {"lr": [0.002, 0.02, 0.2, 1.0]}


def test_a_sweep_maximizing_val_accuracy_ranks_the_most_accurate_member_first(server):
    body = sweep_body(RATES, base=CLASSIFIER, objective={"metric": "val_accuracy"})
    sweep = submit_sweep(server, body)
    assert sweep["objective"] == {"metric": "val_accuracy", "mode": "max"}  # the mode a metric of its kind takes
    done = wait_sweep(server, sweep["id"])
    assert done["status"] == "succeeded" and done["ranked_by"] == "val_accuracy"
    board = done["leaderboard"]
    accuracies = [e["val_accuracy"] for e in board]
    assert accuracies == sorted(accuracies, reverse=True) and accuracies[0] > accuracies[-1]
    assert [e["objective"] for e in board] == accuracies
    assert done["best_job_id"] == board[0]["job_id"]
    # the best member's curve holds the best accuracy any member reached at its end
    assert server.curve(done["best_job_id"])[-1]["val_accuracy"] == max(accuracies)


def test_a_sweep_without_an_objective_ranks_by_val_loss_as_before(server):
    sweep = submit_sweep(server, sweep_body(RATES, base=CLASSIFIER))
    assert sweep["objective"] == {"metric": "val_loss", "mode": "min"} and sweep["ranked_by"] == "val_loss"
    assert sweep["best_job_id"] is None  # nothing has succeeded yet
    assert "objective" not in sweep["request"] or sweep["request"]["objective"] is None
    no_validation = {**CUBIC, "epochs": 5}
    assert submit_sweep(server, sweep_body({"lr": [0.01]}, base=no_validation))["objective"]["metric"] == "loss"


def test_a_sweep_ranks_by_an_evaluation_metric_once_its_members_end(server):
    body = sweep_body(RATES, base=CLASSIFIER, objective={"metric": "val_f1", "mode": "max"})
    done = wait_sweep(server, submit_sweep(server, body)["id"])
    board = done["leaderboard"]
    f1s = [server.client.get(f"/v1/jobs/{e['job_id']}").json()["evaluation"]["validation"]["f1"] for e in board]
    assert [e["objective"] for e in board] == f1s
    assert f1s == sorted(f1s, reverse=True) and f1s[0] > f1s[-1]


def test_members_early_stopping_monitors_the_objective_and_keeps_the_most_accurate_epoch(server):
    base = {**CLASSIFIER, "epochs": 150, "early_stopping": {"patience": 3}}
    done = wait_sweep(server, submit_sweep(server, sweep_body({"lr": [0.05, 0.5]}, base=base,
                                                            objective={"metric": "val_accuracy"}))["id"])
    stopped = 0
    for entry in done["leaderboard"]:
        job = server.client.get(f"/v1/jobs/{entry['job_id']}").json()
        assert job["spec"]["early_stopping"] == {"patience": 3, "min_delta": 0.0, "monitor": "val_accuracy",
                                                 "mode": "max"}
        curve = server.curve(entry["job_id"])
        best = max(p["val_accuracy"] for p in curve)
        assert entry["val_accuracy"] == best  # the kept point: the first epoch to reach the best accuracy
        assert entry["best_epoch"] == next(p["epoch"] for p in curve if p["val_accuracy"] == best)
        stopped += entry["stopped_early_at"] is not None
    assert stopped


def test_a_job_may_monitor_accuracy_in_mode_max(server):
    spec = {**CLASSIFIER, "epochs": 150, "early_stopping": {"patience": 3, "monitor": "accuracy"}}
    job = server.train(spec)
    assert job["spec"]["early_stopping"]["monitor"] == "accuracy" and job["stopped_early_at"] is not None
    curve = server.curve(job["id"])
    assert job["best_metrics"]["accuracy"] == max(p["accuracy"] for p in curve)


ASHA = {"search": "asha", "count": 3, "asha": {"min_epochs": 5, "reduction_factor": 3}}


@pytest.mark.parametrize(
    "body,loc",
    [
        (sweep_body({"lr": [0.01]}, base=CUBIC, objective={"metric": "accuracy"}), ["body", "objective", "metric"]),
        (sweep_body({"lr": [0.01]}, base=CUBIC, objective={"metric": "val_loss"}), ["body", "objective", "metric"]),
        (sweep_body({"lr": [0.01]}, base=CLASSIFIER, objective={"metric": "val_r2"}), ["body", "objective", "metric"]),
        (sweep_body({"lr": {"distribution": "uniform", "low": 0.01, "high": 0.1}}, base=CLASSIFIER,
                    objective={"metric": "val_f1"}, **ASHA), ["body", "objective", "metric"]),
        (sweep_body({"lr": [0.01]}, base=CLASSIFIER, objective={"metric": "val_accuracy", "mode": "up"}),
         ["body", "objective", "mode"]),
        (sweep_body({"lr": [0.01]}, base=CLASSIFIER, objective={"metric": "Val Loss"}), ["body", "objective", "metric"]),
    ],
    ids=["accuracy-of-a-regression", "val-loss-without-validation", "regression-metric-of-a-classifier",
         "evaluation-metric-for-asha", "unknown-mode", "not-a-name"],
)
def test_an_objective_the_members_cannot_record_is_422(server, body, loc):
    response = server.client.post("/v1/sweeps", json=body)
    assert response.status_code == 422, response.text
    assert any(d["loc"][: len(loc)] == loc for d in response.json()["detail"]), response.json()


@pytest.mark.parametrize("monitor", ["accuracy", "val_accuracy", "val_f1"])
def test_a_job_monitoring_what_it_does_not_record_is_422(server, monitor):
    spec = {**CUBIC, "epochs": 5, "early_stopping": {"patience": 2, "monitor": monitor}}
    response = server.client.post("/v1/jobs", json=spec)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "early_stopping", "monitor"]


def test_asha_prunes_by_a_per_epoch_metric_the_members_record(server):
    """`metrics: ["f1"]` puts val_f1 on every recorded epoch: ASHA may then decide by it while members train, and
    each rung's decision holds the values the curves show at its epoch."""
    base = {**CLASSIFIER, "metrics": ["f1"]}
    space = {"lr": {"distribution": "log_uniform", "low": 0.002, "high": 1.0}}
    body = sweep_body(space, base=base, objective={"metric": "val_f1"}, search_seed=0) | ASHA
    done = wait_sweep(server, submit_sweep(server, body)["id"])
    assert done["status"] == "succeeded" and done["objective"] == {"metric": "val_f1", "mode": "max"}
    rung = done["search_state"]["rungs"]["1"]
    assert (rung["metric"], rung["mode"]) == ("val_f1", "max")
    for job_id, value in rung["values"].items():
        at = next(p for p in server.curve(job_id) if p["epoch"] == rung["epoch"])
        assert at["val_f1"] == value
    assert rung["kept"] and rung["pruned"]
    assert min(rung["values"][j] for j in rung["kept"]) >= max(rung["values"][j] for j in rung["pruned"])
