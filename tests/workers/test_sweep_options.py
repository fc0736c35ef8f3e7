"""Sweeps that vary schedules, dropout and clipping: batched where it can, one by one (and saying so) where not."""

import pytest

from tests.conftest import shared_app
from tests.service.api.test_sweeps import submit_sweep, sweep_body, wait_sweep
from tests.specs import example, large_targets

server = shared_app()  # the tests keep apart by their own jobs

# specs, training and measures: the service's shared paths they reach run on every back end elsewhere
pytestmark = pytest.mark.one_backend("no statement of their own")

BLOBS = example("5_softmax_classification", epochs=20)
BLOBS["data"]["validation_fraction"] = 0.2
STEP = {"kind": "step", "step_epochs": 5, "gamma": 0.5}
COSINE = {"kind": "cosine", "warmup_epochs": 2, "min_lr": 0.0}


def member_curves(server, sweep: dict) -> dict:
    jobs = server.client.get("/v1/jobs", params={"sweep_id": sweep["id"], "limit": 50}).json()["items"]
    return {job["id"]: (job, server.client.get(f"/v1/jobs/{job['id']}/metrics").json()["points"]) for job in jobs}


def test_members_with_their_own_schedules_train_batched_and_record_their_rates(server):
    body = sweep_body({"schedule": [STEP, COSINE, None], "lr": [0.05]}, base=BLOBS, execution="batched")
    done = wait_sweep(server, submit_sweep(server, body)["id"])
    assert done["status"] == "succeeded" and done["execution"].startswith("batched: 3 members"), done["execution"]
    schedules = sorted(str(e["hyperparameters"]["schedule"]) for e in done["leaderboard"])
    assert schedules == sorted(str(s) for s in (STEP, COSINE, None))
    for job, points in member_curves(server, done).values():
        schedule = job["spec"]["optimizer"]["schedule"]
        if schedule is None:
            assert all(p["lr"] is None for p in points)
        elif schedule["kind"] == "step":
            assert [p["lr"] for p in points] == pytest.approx([0.05 * 0.5 ** ((e - 1) // 5) for e in range(1, 21)])
        else:
            assert points[0]["lr"] == pytest.approx(0.025) and points[-1]["lr"] == pytest.approx(0.0, abs=1e-12)
        assert job["evaluation"]["validation"]["rows"] == round(0.2 * 1500)


def test_members_with_standardized_targets_train_batched_each_as_it_would_alone(server):
    """Each member's targets are scaled by its own training rows (its seed draws its test split)."""
    base = large_targets(standardize_target=True, epochs=100)
    body = sweep_body({"lr": [0.05, 0.02], "seed": [0, 1]}, base=base, execution="batched")
    done = wait_sweep(server, submit_sweep(server, body)["id"])
    assert done["status"] == "succeeded" and done["execution"].startswith("batched: 4 members"), done["execution"]
    entry = next(e for e in done["leaderboard"] if e["hyperparameters"] == {"lr": 0.05, "seed": 1})
    member = server.client.get(f"/v1/jobs/{entry['job_id']}").json()
    alone = server.train({**base, "seed": 1, "optimizer": {**base["optimizer"], "lr": 0.05}})
    assert alone["execution"].startswith("eager"), alone["execution"]
    assert member["metrics"]["loss"] == pytest.approx(alone["metrics"]["loss"], rel=1e-3)
    assert member["evaluation"]["test"]["r2"] == pytest.approx(alone["evaluation"]["test"]["r2"], rel=1e-5)
    assert alone["evaluation"]["test"]["r2"] > 0.99

    def predict(job: dict) -> list[float]:
        return server.client.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": [[-0.5], [0.5]]}).json()["predictions"]

    assert predict(member) == pytest.approx(predict(alone), rel=1e-5)
    assert predict(alone) == pytest.approx([17500, 22500], abs=100)


@pytest.mark.parametrize(
    ("space", "why"),
    [
        ({"dropout": [0.0, 0.3]}, "dropout and batch norm train one by one"),
        ({"clip_grad_norm": [0.5, None]}, "gradient clipping trains one by one"),
        ({"schedule": [{"kind": "plateau", "factor": 0.1, "patience": 2}, None]}, "the plateau schedule trains one by one"),
    ],
    ids=["dropout", "clipping", "plateau"],
)
def test_what_batching_cannot_do_trains_one_by_one_saying_why(server, space, why):
    done = wait_sweep(server, submit_sweep(server, sweep_body(space, base=BLOBS, execution="batched"))["id"])
    assert done["status"] == "succeeded" and done["progress"]["succeeded"] == 2
    assert done["execution"] == f"one by one: 2 members on cpu; {why}"
    name = next(iter(space))
    assert sorted(str(e["hyperparameters"][name]) for e in done["leaderboard"]) == sorted(str(v) for v in space[name])


def test_a_dropout_axis_on_a_model_without_hidden_layers_is_422(server):
    linear = example("5_softmax_classification")
    linear["model"] = {"kind": "linear", "in_features": 2, "out_features": 3}
    response = server.client.post("/v1/sweeps", json=sweep_body({"dropout": [0.1]}, base=linear))
    assert response.status_code == 422 and response.json()["detail"][0]["loc"][:2] == ["body", "space"], response.text
