"""What the searches are told and how they order members under an objective: max is the negated min."""

from service.models import Job, JobStatus
from service.schemas.objectives import Objective, sweep_objective
from service.services.rounds import told_entry

REQUEST = {"search": "tpe", "search_seed": 0, "space": {"lr": [0.1, 0.2]},
           "base": {"epochs": 20, "data": {"validation_fraction": 0.2}}}


def member(status: str, **metrics) -> Job:
    return Job(status=status, spec={"optimizer": {"lr": 0.1}, "model": {}}, latest_metrics=metrics)


def test_tpe_is_told_a_maximized_metric_negated_and_a_minimized_one_as_is():
    accuracy, loss = Objective(metric="val_accuracy"), Objective(metric="val_loss")
    assert accuracy.mode == "max" and loss.mode == "min"
    done = member(JobStatus.SUCCEEDED, val_accuracy=0.8, val_loss=0.3)
    assert told_entry(REQUEST, done, accuracy)["value"] == -0.8
    assert told_entry(REQUEST, done, loss)["value"] == 0.3
    assert told_entry(REQUEST, member(JobStatus.FAILED, val_accuracy=0.9), accuracy)["value"] is None


def test_a_request_without_an_objective_ranks_by_val_loss_or_loss_min():
    assert sweep_objective(REQUEST) == Objective(metric="val_loss", mode="min")
    assert sweep_objective({**REQUEST, "base": {"data": {}}}) == Objective(metric="loss", mode="min")
    assert sweep_objective({**REQUEST, "objective": {"metric": "val_f1"}}) == Objective(metric="val_f1", mode="max")
