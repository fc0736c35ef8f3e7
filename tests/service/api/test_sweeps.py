"""Sweeps end to end: grid and random spaces, equality with solo jobs, divergence, cancel and rescue."""

import os
import signal
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import processes_only, wait_until, worker_pids
from tests.specs import example

CUBIC = example("3_nonlinear_mlp", epochs=150)
CUBIC["data"]["n"] = 300


def sweep_body(space: dict, base: dict = CUBIC, **extra) -> dict:
    return {"name": "test sweep", "base": base, "space": space, **extra}


def wait_sweep(srv, sweep_id: str, statuses=("succeeded", "failed", "cancelled"), timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sweep = srv.client.get(f"/v1/sweeps/{sweep_id}").json()
        if sweep["status"] in statuses:
            return sweep
        time.sleep(0.2)
    raise AssertionError(f"sweep {sweep_id} still {sweep['status']}: {sweep['progress']}")


def submit_sweep(srv, body: dict) -> dict:
    response = srv.client.post("/v1/sweeps", json=body)
    assert response.status_code == 201, response.text
    assert response.headers["location"] == f"/v1/sweeps/{response.json()['id']}"
    return response.json()


def test_grid_sweep_trains_every_member_and_ranks_them(server):
    sweep = submit_sweep(server, sweep_body({"lr": [0.003, 0.01], "seed": [0, 1]}))
    assert sweep["progress"]["members"] == 4 and sweep["status"] == "queued"
    done = wait_sweep(server, sweep["id"])
    assert done["status"] == "succeeded" and done["progress"]["succeeded"] == 4
    assert done["execution"].startswith(("batched", "one by one"))
    board = done["leaderboard"]
    assert [e["rank"] for e in board] == [1, 2, 3, 4]
    losses = [e["loss"] for e in board]
    assert losses == sorted(losses)
    assert {(e["hyperparameters"]["lr"], e["hyperparameters"]["seed"]) for e in board} == {
        (0.003, 0), (0.003, 1), (0.01, 0), (0.01, 1)
    }
    best = board[0]["job_id"]  # a member is a job like any other
    job = server.client.get(f"/v1/jobs/{best}").json()
    assert job["sweep_id"] == sweep["id"] and job["status"] == "succeeded"
    assert server.client.get(f"/v1/jobs/{best}/metrics").json()["total_points"] == 150
    pred = server.client.post(f"/v1/jobs/{best}/predict", json={"inputs": [[1.0]]})
    assert pred.status_code == 200
    assert sweep["id"] in {s["id"] for s in server.client.get("/v1/sweeps").json()["items"]}


def test_workers_woken_together_never_split_a_sweep(make_app):
    """Two idle workers race for each new sweep; whichever wins claims every member in one transaction."""
    srv = make_app(workers=2).start()
    base = {**CUBIC, "epochs": 20}
    sweeps = [submit_sweep(srv, sweep_body({"lr": [0.01, 0.02, 0.03]}, base=base, execution="batched")) for _ in range(4)]
    for sweep in sweeps:
        done = wait_sweep(srv, sweep["id"])
        assert done["progress"]["succeeded"] == 3
        assert done["execution"].startswith("batched: 3 members"), done["execution"]


def test_a_member_matches_the_same_spec_trained_alone(server):
    sweep = submit_sweep(server, sweep_body({"lr": [0.01, 0.02, 0.005]}))
    done = wait_sweep(server, sweep["id"])
    entry = next(e for e in done["leaderboard"] if e["hyperparameters"]["lr"] == 0.02)
    alone = server.train({**CUBIC, "optimizer": {**CUBIC["optimizer"], "lr": 0.02}})
    assert entry["loss"] == pytest.approx(alone["metrics"]["loss"], rel=1e-3)


def test_early_stopping_ends_a_member_alone_where_the_same_spec_alone_ends(server):
    base = {**CUBIC, "data": {**CUBIC["data"], "validation_fraction": 0.2}, "early_stopping": {"patience": 3}}
    sweep = submit_sweep(server, sweep_body({"lr": [0.02, 0.05]}, base=base, execution="batched"))
    done = wait_sweep(server, sweep["id"])
    assert done["execution"].startswith("batched") and done["progress"]["succeeded"] == 2
    by_lr = {e["hyperparameters"]["lr"]: e for e in done["leaderboard"]}
    went_on = server.client.get(f"/v1/jobs/{by_lr[0.02]['job_id']}").json()
    assert went_on["stopped_early_at"] is None and went_on["progress"]["epoch"] == 150
    stopped = server.client.get(f"/v1/jobs/{by_lr[0.05]['job_id']}").json()
    alone = server.train({**base, "optimizer": {**base["optimizer"], "lr": 0.05}})
    assert alone["status"] == stopped["status"] == "succeeded"
    assert stopped["best_epoch"] < stopped["stopped_early_at"] < 150
    assert (stopped["stopped_early_at"], stopped["best_epoch"]) == (alone["stopped_early_at"], alone["best_epoch"])
    assert stopped["progress"]["epoch"] == stopped["stopped_early_at"] == stopped["metrics"]["epoch"]
    points = server.client.get(f"/v1/jobs/{stopped['id']}/metrics").json()
    assert points["total_points"] == stopped["stopped_early_at"]
    assert stopped["best_metrics"]["val_loss"] == pytest.approx(alone["best_metrics"]["val_loss"], rel=1e-3)
    # the leaderboard shows the kept weights' epoch: the best, not the last
    assert by_lr[0.05]["val_loss"] == stopped["best_metrics"]["val_loss"] < stopped["metrics"]["val_loss"]
    assert by_lr[0.05]["best_epoch"] == stopped["best_epoch"]
    inputs = {"inputs": [[-2.0], [0.5], [2.5]]}
    got, want = (server.client.post(f"/v1/jobs/{j['id']}/predict", json=inputs).json() for j in (stopped, alone))
    assert got["predictions"] == pytest.approx(want["predictions"], rel=1e-3, abs=1e-4)


def test_random_search_samples_inside_its_ranges_reproducibly(server):
    space = {"lr": {"distribution": "log_uniform", "low": 0.001, "high": 0.03}, "momentum": [0.0, 0.9]}
    body = sweep_body(space, search="random", count=5, search_seed=7)
    first, second = submit_sweep(server, body), submit_sweep(server, body)
    params = [sorted((e["hyperparameters"]["lr"], e["hyperparameters"]["momentum"]) for e in s["leaderboard"])
              for s in (first, second)]
    assert params[0] == params[1] and len(params[0]) == 5
    assert all(0.001 <= lr <= 0.03 and m in (0.0, 0.9) for lr, m in params[0])
    for s in (first, second):
        assert wait_sweep(server, s["id"])["status"] == "succeeded"


def test_a_diverging_member_fails_alone(server):
    done = wait_sweep(server, submit_sweep(server, sweep_body({"lr": [0.01, 50.0, 0.005]}))["id"])
    by_lr = {e["hyperparameters"]["lr"]: e for e in done["leaderboard"]}
    assert by_lr[50.0]["status"] == "failed" and by_lr[50.0]["rank"] == 3
    assert by_lr[0.01]["status"] == by_lr[0.005]["status"] == "succeeded"
    job = server.client.get(f"/v1/jobs/{by_lr[50.0]['job_id']}").json()
    assert "diverged" in job["error"] and "at epoch" in job["error"]
    assert done["status"] == "succeeded" and done["progress"]["failed"] == 1


def test_cancel_stops_every_member_still_to_finish(server):
    long = {**CUBIC, "epochs": 1_000_000 // 300}
    sweep = submit_sweep(server, sweep_body({"seed": [0, 1, 2]}, base=long))
    deadline = time.monotonic() + 60
    while server.client.get(f"/v1/sweeps/{sweep['id']}").json()["progress"]["running"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert server.client.post(f"/v1/sweeps/{sweep['id']}/cancel").status_code == 200
    done = wait_sweep(server, sweep["id"], timeout=30)
    assert done["status"] == "cancelled" and done["progress"]["cancelled"] == 3
    assert server.client.post(f"/v1/sweeps/{sweep['id']}/cancel").status_code == 409


@pytest.mark.parametrize(
    "body,loc",
    [
        (sweep_body({}), ["body"]),
        (sweep_body({"lr": {"distribution": "uniform", "low": 0.1, "high": 0.2}}), ["body"]),
        (sweep_body({"lr": [0.1]}, search="random"), ["body"]),
        (sweep_body({"batch_size": [10, 1000]}), ["body", "space", "batch_size"]),
        (sweep_body({"lr": [-1.0]}), ["body", "space", "lr"]),
        (sweep_body({"channels": [[10]]}), ["body", "space", "channels"]),
        (sweep_body({"lr": {"distribution": "log_uniform", "low": 1e16, "high": 1e300}}, search="random", count=2),
         ["body", "space", "lr"]),
        (sweep_body({"lr": [0.01]}, base={**CUBIC, "early_stopping": {"patience": 2, "monitor": "val_loss"}}),
         ["body", "base", "early_stopping", "monitor"]),
    ],
    ids=["empty-space", "grid-of-ranges", "random-without-count", "batch-too-big", "negative-lr", "channels-on-an-mlp",
         "sampled-lr-out-of-range", "val-loss-without-validation"],
)
def test_bad_sweeps_are_422(server, body, loc):
    response = server.client.post("/v1/sweeps", json=body)
    assert response.status_code == 422, response.text
    assert any(d["loc"][: len(loc)] == loc for d in response.json()["detail"]), response.json()


def test_unknown_sweep_is_404(server):
    assert server.client.get("/v1/sweeps/nope").status_code == 404
    assert server.client.post("/v1/sweeps/nope/cancel").status_code == 404


@processes_only
def test_a_killed_sweep_resumes_from_its_checkpoints(make_server):
    srv = make_server(workers=1, FITSERVE_CHECKPOINT_SECONDS="0.3", FITSERVE_LEASE_SECONDS="3",
                      FITSERVE_SWEEP_SECONDS="0.5").start()
    # long enough that the kill lands mid-sweep: 800 epochs of these 4 members now take about a second
    long = {**CUBIC, "epochs": 3000}
    sweep = submit_sweep(srv, sweep_body({"seed": [0, 1, 2, 3]}, base=long, execution="batched"))
    deadline = time.monotonic() + 60
    while srv.client.get(f"/v1/sweeps/{sweep['id']}").json()["progress"]["epochs_done"] < 4 * 100:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    for pid in worker_pids(srv.proc.pid):
        os.kill(pid, signal.SIGKILL)
    done = wait_sweep(srv, sweep["id"], timeout=240)
    assert done["execution"].startswith("batched")
    errors = [srv.client.get(f"/v1/jobs/{e['job_id']}").json()["error"] for e in done["leaderboard"]]
    assert done["status"] == "succeeded" and done["progress"]["succeeded"] == 4, errors
    for entry in done["leaderboard"]:
        job = srv.client.get(f"/v1/jobs/{entry['job_id']}").json()
        assert job["attempt"] == 2
        steps = [p["step"] for p in srv.client.get(f"/v1/jobs/{entry['job_id']}/metrics",
                                                   params={"max_points": 100_000}).json()["points"]]
        assert steps == list(range(1, 3001))


LONG_EPOCH = {**CUBIC, "epochs": 5, "batch_size": 1, "data": {**CUBIC["data"], "n": 200_000}}  # minutes an epoch
# its worker renews a lease every third of it: 2 s after the claim, set-up long done, the members train
SHORT_LEASE = {"FITSERVE_LEASE_SECONDS": "6"}


def inside_first_epoch(srv, sweep_id: str) -> list[str]:
    """Once every member of the batched sweep trains inside its first epoch (its worker has renewed their
    leases, a third of FITSERVE_LEASE_SECONDS after the claim): the member ids."""
    lease = "SELECT id, lease_expires_at FROM jobs WHERE sweep_id = :id AND status = 'running'"
    claimed = wait_until(lambda: dict(srv.query(lease, id=sweep_id)), 60, "members claimed")
    wait_until(lambda: all(claimed[j] != at for j, at in srv.query(lease, id=sweep_id)), 60, "leases renewed")
    return list(claimed)


def test_a_long_batched_epoch_is_cancelled_within_two_seconds(make_app):
    srv = make_app(workers=1, **SHORT_LEASE).start()
    sweep = submit_sweep(srv, sweep_body({"seed": [0, 1, 2]}, base=LONG_EPOCH, execution="batched"))
    members = inside_first_epoch(srv, sweep["id"])
    asked = datetime.now(UTC)
    assert srv.client.post(f"/v1/sweeps/{sweep['id']}/cancel").status_code == 200
    for job_id in members:
        done = srv.wait_for(job_id, timeout=10)
        assert done["status"] == "cancelled" and done["progress"]["epoch"] == 0, done
    # when the worker ended them, as it wrote it: this test's own polling is not counted
    ended = [at if isinstance(at, datetime) else datetime.fromisoformat(at) for (at,) in
             srv.query("SELECT finished_at FROM jobs WHERE sweep_id = :id", id=sweep["id"])]
    assert max(at.replace(tzinfo=UTC) for at in ended) - asked < timedelta(seconds=2)


def test_a_shutdown_inside_a_long_batched_epoch_hands_every_member_back_at_once(make_app):
    srv = make_app(workers=1, FITSERVE_SHUTDOWN_SECONDS="5", **SHORT_LEASE).start()
    sweep = submit_sweep(srv, sweep_body({"seed": [0, 1, 2]}, base=LONG_EPOCH, execution="batched"))
    inside_first_epoch(srv, sweep["id"])
    asked = time.monotonic()
    srv.stop()  # the workers' shutdown, as SIGTERM sets it in a worker process
    assert time.monotonic() - asked < 5  # FITSERVE_SHUTDOWN_SECONDS: a worker process would be killed after it
    members = srv.query("SELECT status, epoch, error FROM jobs WHERE sweep_id = :id", id=sweep["id"])
    assert [(status, epoch) for status, epoch, _ in members] == [("queued", 0)] * 3, members
    assert "Traceback" not in srv.read_log()


def test_a_sweep_larger_than_the_queue_cap_is_422_one_that_must_wait_is_429(make_app):
    srv = make_app(workers=0, FITSERVE_MAX_QUEUED_PER_OWNER="4").start()
    grid = srv.client.post("/v1/sweeps", json=sweep_body({"seed": list(range(6))}))
    assert grid.status_code == 422 and grid.json()["detail"][0]["loc"] == ["body", "space"], grid.text
    assert "FITSERVE_MAX_QUEUED_PER_OWNER is 4" in grid.json()["detail"][0]["msg"]
    sampled = srv.client.post("/v1/sweeps", json=sweep_body(
        {"lr": {"distribution": "log_uniform", "low": 0.001, "high": 0.1}}, search="random", count=5))
    assert sampled.status_code == 422 and sampled.json()["detail"][0]["loc"] == ["body", "count"], sampled.text
    srv.submit(CUBIC)
    srv.submit(CUBIC)
    waits = srv.client.post("/v1/sweeps", json=sweep_body({"seed": [0, 1, 2]}))  # fits once the two have started
    assert waits.status_code == 429 and int(waits.headers["retry-after"]) >= 1
    assert srv.query("SELECT count(*) FROM jobs") == [(2,)]  # nothing stored for either refusal
