"""Categorical choices beside numbers: a sweep over the optimizer's kind and the loss, in grid, random and TPE."""

import pytest

from tests.service.api.test_sweeps import CUBIC, submit_sweep, sweep_body, wait_sweep

BASE = {**CUBIC, "epochs": 30}
CHOICE = {"distribution": "categorical", "choices": ["sgd", "adam"]}


def test_a_grid_over_optimizers_and_losses_trains_each_member_as_alone(make_app):
    """Members of another optimizer kind or loss never share a step: each equals the same spec trained alone."""
    app = make_app(workers=1).start()
    space = {"optimizer": ["sgd", "adam"], "loss": ["mse", "sse"], "lr": [0.00003, 0.0001]}  # sse: a sum of 300 rows
    done = wait_sweep(app, submit_sweep(app, sweep_body(space, base=BASE, execution="batched"))["id"])
    failed = [(e["hyperparameters"], app.client.get(f"/v1/jobs/{e['job_id']}").json()["error"])
              for e in done["leaderboard"] if e["status"] != "succeeded"]
    assert done["status"] == "succeeded" and done["progress"]["succeeded"] == 8, failed
    seen = {(e["hyperparameters"]["optimizer"], e["hyperparameters"]["loss"]) for e in done["leaderboard"]}
    assert seen == {("sgd", "mse"), ("sgd", "sse"), ("adam", "mse"), ("adam", "sse")}
    for entry in done["leaderboard"]:
        hp = entry["hyperparameters"]
        job = app.client.get(f"/v1/jobs/{entry['job_id']}").json()
        assert (job["spec"]["optimizer"]["kind"], job["spec"]["loss"]) == (hp["optimizer"], hp["loss"])
        assert "batched: 2 members" in job["execution"]  # the two lr values of one kind and loss, stacked
    for entry in done["leaderboard"][::3]:
        hp = entry["hyperparameters"]
        alone = app.train({**BASE, "loss": hp["loss"], "optimizer": {**BASE["optimizer"], "kind": hp["optimizer"],
                                                                      "lr": hp["lr"]}})
        assert entry["loss"] == pytest.approx(alone["metrics"]["loss"], rel=1e-3)


@pytest.mark.parametrize("search", ["random", "tpe"])
def test_the_categorical_form_mixes_with_ranges(make_app, search):
    app = make_app(workers=1).start()
    space = {"optimizer": CHOICE, "lr": {"distribution": "log_uniform", "low": 0.001, "high": 0.01}}
    extra = {"tpe": {"rounds": 2}} if search == "tpe" else {}
    body = sweep_body(space, base={**BASE, "epochs": 5}, search=search, count=4, search_seed=4, **extra)
    done = wait_sweep(app, submit_sweep(app, body)["id"])
    assert done["status"] == "succeeded", done["progress"]
    kinds = [e["hyperparameters"]["optimizer"] for e in done["leaderboard"]]
    assert set(kinds) <= {"sgd", "adam"} and len(kinds) == (8 if search == "tpe" else 4)
    assert all(0.001 <= e["hyperparameters"]["lr"] <= 0.01 for e in done["leaderboard"])


def test_bad_choices_are_422_naming_the_axis(make_app):
    app = make_app(workers=0).start()
    for space, loc in (
        ({"optimizer": ["sgd", "rmsprop"]}, ["body", "space", "optimizer", 1]),
        ({"loss": {"distribution": "categorical", "choices": ["mse", "hinge"]}}, ["body", "space", "loss", 1]),
    ):
        response = app.client.post("/v1/sweeps", json=sweep_body(space, base=BASE))
        assert response.status_code == 422 and response.json()["detail"][0]["loc"] == loc, response.text
    pbt = sweep_body({"optimizer": ["sgd", "adam"], "lr": [0.001, 0.01]}, base=BASE, search="pbt", count=2,
                     pbt={"interval_epochs": 5})
    response = app.client.post("/v1/sweeps", json=pbt)
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", "space", "optimizer"]
