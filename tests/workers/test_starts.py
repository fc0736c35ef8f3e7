"""Jobs that start from another job's state or weights, on the paths that train several at once.

Continued jobs queue beside a fresh one of the same batch key, then one auto-batching worker claims them all: the
continued ones train stacked, each from its own parent's final state, and the fresh one apart (another starting
epoch). A sweep whose base names init.from_job trains its members stacked, each from those weights.
"""

import pytest

from service.schemas.spec import JobSpec
from tests.specs import example
from tests.workers.engines.test_stacked import solo_points
from tests.workers.test_auto_batch import ON, batches_in_log

OFF = {"FITSERVE_AUTO_BATCH": "off"}


def adam_cubic(seed: int, epochs: int = 30) -> dict:
    spec = example("3_nonlinear_mlp", epochs=epochs, seed=seed)
    spec["data"]["n"] = 300
    spec["optimizer"] = {"kind": "adam", "lr": 0.01}
    return spec


def test_continued_jobs_train_stacked_each_from_its_own_parents_state(make_app):
    trainer = make_app(workers=1, **OFF).start()
    parents = [trainer.train(adam_cubic(seed)) for seed in (0, 1)]
    assert all(parent["status"] == "succeeded" for parent in parents)
    trainer.stop()
    api = make_app(workers=0).start()
    children = [api.client.post(f"/v1/jobs/{p['id']}/continue", json={"epochs": 15}).json()["id"] for p in parents]
    fresh = api.submit(adam_cubic(2, epochs=45))["id"]  # the same batch key, from epoch 0
    worker = make_app(workers=1, **ON).start()
    api.wait_for_jobs([*children, fresh])
    assert [sorted(batch) for batch in batches_in_log(worker)] == [sorted([*children, fresh])]
    for child, seed in zip(children, (0, 1)):
        job = api.client.get(f"/v1/jobs/{child}").json()
        assert job["status"] == "succeeded" and job["execution"].startswith("batched: 2 jobs auto-batched"), job
        points = api.curve(child)
        whole = solo_points(JobSpec.model_validate(adam_cubic(seed, epochs=45)))[30:]  # the parent's 30, then 15
        assert [p["epoch"] for p in points] == list(range(31, 46))
        assert [p["step"] for p in points] == [p.step for p in whole]
        assert [p["loss"] for p in points] == pytest.approx([p.loss for p in whole], rel=2e-4, abs=1e-6)
    alone = solo_points(JobSpec.model_validate(adam_cubic(2, epochs=45)))
    assert [p["loss"] for p in api.curve(fresh)] == pytest.approx([p.loss for p in alone], rel=2e-4, abs=1e-6)


def test_a_sweeps_members_train_stacked_from_the_weights_its_base_names(make_app):
    srv = make_app(workers=1).start()
    parent = srv.train(adam_cubic(0, epochs=60))
    before = srv.curve(parent["id"])
    base = {**adam_cubic(0, epochs=2), "init": {"from_job": parent["id"]}}
    sweep = srv.client.post("/v1/sweeps", json={"base": base, "space": {"lr": [0.001, 0.002]}, "execution": "batched"})
    assert sweep.status_code == 201, sweep.text
    members = [entry["job_id"] for entry in sweep.json()["leaderboard"]]
    srv.wait_for_jobs(members)
    fresh = solo_points(JobSpec.model_validate(adam_cubic(0, epochs=2)))
    for member in members:
        job = srv.client.get(f"/v1/jobs/{member}").json()
        assert job["status"] == "succeeded" and job["execution"].startswith("batched"), job
        first = srv.curve(member)[0]["loss"]  # the parent's weights after its last step, on the same data
        assert abs(first - before[-1]["loss"]) < 0.1 * abs(fresh[0].loss - before[-1]["loss"])
