"""Continue, fork, warm start: a job that trains on from another's final state, or starts from its weights."""

import pytest

from tests.conftest import as_, wait_until
from tests.specs import tiny_regression

# deterministic and full batch: one step an epoch, the same numbers however the job is split
ADAM = tiny_regression(optimizer={"kind": "adam", "lr": 0.05}, epochs=30)
MLP = tiny_regression(model={"kind": "mlp", "in_features": 1, "hidden": [4], "out_features": 1}, epochs=20)


def continue_(srv, job_id: str, headers=None, **body):
    return srv.client.post(f"/v1/jobs/{job_id}/continue", json=body, headers=headers)


def test_a_continued_adam_job_equals_one_trained_for_all_its_epochs(server):
    parent = server.train(ADAM)
    assert parent["status"] == "succeeded", parent
    response = continue_(server, parent["id"], epochs=20)
    assert response.status_code == 201, response.text
    child = response.json()
    assert response.headers["Location"] == f"/v1/jobs/{child['id']}"
    assert child["continued_from"] == parent["id"] and child["spec"]["epochs"] == 50
    child = server.wait_for(child["id"])
    assert child["status"] == "succeeded", child
    whole = server.train({**ADAM, "epochs": 50})

    before, after, reference = server.curve(parent["id"]), server.curve(child["id"]), server.curve(whole["id"])
    assert [p["epoch"] for p in after] == list(range(31, 51))  # the count goes on
    assert after[0]["step"] == before[-1]["step"] + 1
    # not a fresh start: the first loss is near the parent's last, far from its first
    assert abs(after[0]["loss"] - before[-1]["loss"]) < 0.1 * abs(before[0]["loss"] - before[-1]["loss"])
    # Adam's moments and step count came along: epochs 31-50 are those of one job trained for 50
    assert [p["loss"] for p in after] == pytest.approx([p["loss"] for p in reference[30:]], rel=1e-5, abs=1e-7)
    assert child["progress"] == {"epoch": 50, "epochs": 50}


def test_a_continuation_takes_a_new_learning_rate_and_may_itself_be_continued(server):
    parent = server.train(ADAM)
    child = continue_(server, parent["id"], epochs=5, lr=0.001).json()
    assert child["spec"]["optimizer"]["lr"] == 0.001
    child = server.wait_for(child["id"])
    same_lr = server.wait_for(continue_(server, parent["id"], epochs=5).json()["id"])
    slow, fast = server.curve(child["id"]), server.curve(same_lr["id"])
    assert slow[0]["loss"] == pytest.approx(fast[0]["loss"])  # the same start (a loss is before its step)
    assert slow[-1]["loss"] != pytest.approx(fast[-1]["loss"], rel=1e-4)  # its steps took the new rate
    grandchild = server.wait_for(continue_(server, child["id"], epochs=3).json()["id"])
    assert grandchild["status"] == "succeeded" and grandchild["continued_from"] == child["id"]
    assert [p["epoch"] for p in server.curve(grandchild["id"])] == [36, 37, 38]


def test_continue_refuses_what_it_cannot_do_with_the_reason(server):
    running = server.submit(tiny_regression(epochs=1_000_000))
    server.wait_until(running["id"], lambda job: job["status"] == "running")
    response = continue_(server, running["id"], epochs=5)
    assert response.status_code == 409 and "running" in response.json()["detail"], response.text
    server.client.post(f"/v1/jobs/{running['id']}/cancel")
    parent = server.train(ADAM)
    response = continue_(server, parent["id"], epochs=5, optimizer={"kind": "sgd"})
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", "optimizer", "kind"]
    response = continue_(server, parent["id"], epochs=5, optimizer={"lr": -1})
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", "optimizer", "lr"]
    assert continue_(server, parent["id"], epochs=0).status_code == 422
    assert continue_(server, "nosuchjob", epochs=5).status_code == 404


def test_a_job_stopped_early_keeps_no_final_state_and_says_so(server):
    stopped = server.train(tiny_regression(epochs=2000, early_stopping={"patience": 2, "min_delta": 100.0}))
    assert stopped["status"] == "succeeded" and stopped["stopped_early_at"] is not None, stopped
    response = continue_(server, stopped["id"], epochs=5)
    assert response.status_code == 409 and "stopped early" in response.json()["detail"], response.text
    assert server.query("SELECT count(*) FROM checkpoints WHERE job_id = :id", id=stopped["id"]) == [(0,)]
    warm = server.train({**tiny_regression(epochs=5), "init": {"from_job": stopped["id"]}})  # its weights still serve
    assert warm["status"] == "succeeded", warm


def test_a_succeeded_job_keeps_its_final_state_counted_in_its_owners_storage(server):
    job = server.train(ADAM)
    [(epoch, size)] = server.query("SELECT epoch, length(data) FROM checkpoints WHERE job_id = :id", id=job["id"])
    assert epoch == 30 and size > 0
    assert server.client.get("/v1/usage").json()["stored_bytes"]["checkpoints"] == size
    assert server.client.delete(f"/v1/jobs/{job['id']}").status_code == 204
    assert server.query("SELECT count(*) FROM checkpoints WHERE job_id = :id", id=job["id"]) == [(0,)]


def test_init_from_job_starts_from_its_weights_and_not_its_optimizer(server):
    parent = server.train(MLP)
    spec = {**MLP, "epochs": 3, "seed": 7, "init": {"from_job": parent["id"]}}
    warm = server.train(spec)
    fresh = server.train({**spec, "init": None})
    assert warm["status"] == "succeeded" and warm["continued_from"] is None, warm
    before, warm_curve, fresh_curve = server.curve(parent["id"]), server.curve(warm["id"]), server.curve(fresh["id"])
    assert [p["epoch"] for p in warm_curve] == [1, 2, 3]  # a new job's own count
    # the parent's weights, trained on: its first loss near the parent's last, unlike a fresh start's
    assert abs(warm_curve[0]["loss"] - before[-1]["loss"]) < 0.25 * abs(fresh_curve[0]["loss"] - before[-1]["loss"])


def test_init_from_job_with_another_shape_is_a_422_naming_the_layer(server):
    parent = server.train(MLP)
    wider = {**MLP, "model": {**MLP["model"], "hidden": [8]}, "init": {"from_job": parent["id"]}}
    response = server.client.post("/v1/jobs", json=wider)
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "init", "from_job"]
    assert "[8, 1]" in error["msg"] and "[4, 1]" in error["msg"] and "weight" in error["msg"], error
    sweep = {"base": wider, "space": {"seed": [0, 1]}}
    response = server.client.post("/v1/sweeps", json=sweep)
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", "base", "init", "from_job"]
    response = server.client.post("/v1/jobs", json={**MLP, "init": {"from_job": "nosuchjob"}})
    assert response.status_code == 404, response.text


def test_another_owners_job_is_404_to_continue_and_to_start_from(keyed_app):
    srv = keyed_app(workers=1)
    alice, bob = as_(srv, "alice"), as_(srv, "bob")
    job = srv.client.post("/v1/jobs", json=ADAM, headers=alice).json()
    wait_until(lambda: srv.client.get(f"/v1/jobs/{job['id']}", headers=alice).json()["status"] == "succeeded",
               120, "alice's job", srv.read_log)
    assert srv.client.get(f"/v1/jobs/{job['id']}", headers=bob).status_code == 404
    assert continue_(srv, job["id"], headers=bob, epochs=5).status_code == 404
    response = srv.client.post("/v1/jobs", json={**ADAM, "init": {"from_job": job["id"]}}, headers=bob)
    assert response.status_code == 404, response.text
    assert continue_(srv, job["id"], headers=alice, epochs=5).status_code == 201


def test_a_parent_deleted_before_its_continuation_started_fails_that_job_with_the_reason(make_app):
    trainer = make_app(workers=1).start()
    parent = trainer.train(MLP)
    trainer.stop()
    api = make_app(workers=0).start()
    child = continue_(api, parent["id"], epochs=5).json()
    warm = api.submit({**MLP, "init": {"from_job": parent["id"]}})
    assert api.client.delete(f"/v1/jobs/{parent['id']}").status_code == 204
    worker = make_app(workers=1).start()
    for job_id in (child["id"], warm["id"]):
        job = worker.wait_for(job_id)
        assert job["status"] == "failed" and f"job {parent['id']}" in job["error"], job
        assert "no longer exists" in job["error"], job
    assert "Traceback" not in worker.read_log()
