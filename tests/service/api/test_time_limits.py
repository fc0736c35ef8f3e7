"""Time limits over HTTP: `max_seconds` on a job and on a sweep (README, Time limits).

Time bounds are generous (the machine may be loaded); the assertions that matter are of what ended how.
"""

import time
from datetime import datetime

import pytest

from service.repositories.jobs import SWEEP_TIME_LIMIT, UNSTARTED_AT_DEADLINE
from service.schemas.limits import LIMITS
from tests.service.api.test_sweeps import submit_sweep, sweep_body, wait_sweep
from tests.specs import example, tiny_regression

FAST_TICKS = {"FITSERVE_SWEEP_SECONDS": "0.3"}  # the maintenance tick that ends a limited sweep's queued members
# The most a job may ask within the sample-epoch budget (100,000 one-step epochs over 20,000 rows, a curve point an
# epoch): ~11 s on a quiet core against the 8-s limit below, where 100,000 epochs over the tiny job's 50 rows took 7 s
OUTLIVES_ITS_LIMIT = {"epochs": 100_000,
                      "data": {"source": "synthetic", "generator": "linear", "n": 20_000, "slope": 2.0, "intercept": 1.0}}


def seconds_between(started: str, finished: str) -> float:
    return (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds()


@pytest.mark.parametrize("value", [0, -1, LIMITS.max_seconds + 1, "soon"])
def test_a_bad_max_seconds_is_a_422_naming_it_on_a_job_and_a_sweep(server, value):
    job = server.client.post("/v1/jobs", json=tiny_regression(max_seconds=value))
    assert job.status_code == 422 and job.json()["detail"][0]["loc"] == ["body", "max_seconds"]
    sweep = server.client.post("/v1/sweeps", json=sweep_body({"lr": [0.01]}, base=tiny_regression(), max_seconds=value))
    assert sweep.status_code == 422 and sweep.json()["detail"][0]["loc"] == ["body", "max_seconds"]


def test_a_job_stops_at_its_limit_succeeded_with_its_weights_evaluation_and_curve(make_app):
    srv = make_app(workers=1).start()
    spec = tiny_regression(epochs=100_000, max_seconds=2, data={**tiny_regression()["data"], "validation_fraction": 0.2})
    submitted = time.monotonic()
    job = srv.submit(spec)
    done = srv.wait_for(job["id"], timeout=60)
    assert time.monotonic() - submitted < 60
    assert done["status"] == "succeeded", done
    epoch = done["progress"]["epoch"]
    assert 0 < epoch < 100_000 and done["stopped_early_at"] == epoch
    assert done["stop_reason"] == f"time limit: max_seconds 2 reached after epoch {epoch}"
    assert 2.0 <= done["trained_seconds"] < 30
    assert [p["epoch"] for p in srv.curve(job["id"])] == list(range(1, epoch + 1))  # every whole epoch, no more
    assert done["evaluation"]["validation"] is not None
    predicted = srv.client.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": [[1.0], [2.0]]})
    assert predicted.status_code == 200 and len(predicted.json()["predictions"]) == 2


def test_a_limit_inside_the_first_long_epoch_ends_the_job_cancelled_untrained(make_app):
    """Checked between mini-batches: an epoch of 200,000 steps stops at the limit, with no epoch to keep."""
    srv = make_app(workers=1).start()
    spec = tiny_regression(epochs=1, batch_size=1, max_seconds=1, data={"source": "synthetic", "generator": "linear", "n": 200_000})
    job = srv.submit(spec)
    done = srv.wait_for(job["id"], timeout=60)
    assert done["status"] == "cancelled" and done["progress"]["epoch"] == 0
    assert done["stop_reason"] == "time limit: max_seconds 1 reached before its first epoch ended"
    assert done["error"] is None and srv.client.get(f"/v1/jobs/{job['id']}/weights").status_code == 409  # none kept
    assert 1.0 <= done["trained_seconds"] < 30


def test_only_the_auto_batched_job_with_a_limit_stops_and_its_mates_train_on(make_app):
    api = make_app(workers=0).start()
    long = 8000
    specs = [example("3_nonlinear_mlp", epochs=long, seed=seed) for seed in range(3)]
    specs[1]["max_seconds"] = 1
    ids = [api.submit(spec)["id"] for spec in specs]
    make_app(workers=1, FITSERVE_AUTO_BATCH="on").start()
    api.wait_for_jobs(ids, timeout=240)
    jobs = [api.client.get(f"/v1/jobs/{job_id}").json() for job_id in ids]
    assert all(job["status"] == "succeeded" and job["execution"].startswith("batched: 3 jobs") for job in jobs), jobs
    limited = jobs[1]
    assert limited["stop_reason"].startswith("time limit: max_seconds 1 reached after epoch")
    assert limited["progress"]["epoch"] == limited["stopped_early_at"] < long
    assert [job["progress"]["epoch"] for job in (jobs[0], jobs[2])] == [long, long]
    assert jobs[0]["stop_reason"] is None and jobs[2]["stop_reason"] is None
    assert api.client.post(f"/v1/jobs/{ids[1]}/predict", json={"inputs": [[0.5]]}).status_code == 200


def test_a_sweeps_limit_stops_its_running_member_and_ends_the_queued_ones_untrained(make_app):
    """One by one, one worker: the member training at the sweep's limit stops with its weights; the members still
    queued end cancelled, untrained; the sweep ends."""
    srv = make_app(workers=1, **FAST_TICKS).start()
    base = tiny_regression(**OUTLIVES_ITS_LIMIT)
    body = sweep_body({"lr": [0.01, 0.02, 0.03]}, base=base, execution="one_by_one", max_seconds=4)
    submitted = time.monotonic()
    sweep = submit_sweep(srv, body)
    done = wait_sweep(srv, sweep["id"], timeout=90)
    assert time.monotonic() - submitted < 90
    assert done["status"] == "succeeded", done
    members = [srv.client.get(f"/v1/jobs/{e['job_id']}").json() for e in done["leaderboard"]]
    trained = [m for m in members if m["status"] == "succeeded"]
    unstarted = [m for m in members if m["status"] == "cancelled"]
    assert len(trained) >= 1 and len(trained) + len(unstarted) == 3
    for member in trained:
        epoch = member["progress"]["epoch"]
        assert member["stop_reason"] == f"{SWEEP_TIME_LIMIT} after epoch {epoch}" and 0 < epoch < 100_000
    assert unstarted and all(m["stop_reason"] == UNSTARTED_AT_DEADLINE and m["progress"]["epoch"] == 0 for m in unstarted)
    assert done["leaderboard"][0]["stop_reason"].startswith(SWEEP_TIME_LIMIT)


def test_a_resumed_attempt_keeps_the_seconds_trained_before_its_hand_back(make_app):
    """Handed back at a shutdown after half its limit, the job resumes from its checkpoint with that half spent."""
    limit = 8.0
    first = make_app(workers=1).start()
    job = first.submit(tiny_regression(**OUTLIVES_ITS_LIMIT, max_seconds=limit))
    first.wait_until(job["id"], lambda j: j["trained_seconds"] >= limit / 2, timeout=60)
    first.stop()  # the worker hands the job back with a checkpoint, as at SIGTERM
    second = make_app(workers=0).start()
    handed_back = second.client.get(f"/v1/jobs/{job['id']}").json()
    spent = handed_back["trained_seconds"]
    assert handed_back["status"] == "queued" and limit / 2 <= spent < limit
    assert second.query("SELECT epoch FROM checkpoints WHERE job_id = :id", id=job["id"])[0][0] > 0
    make_app(workers=1).start()
    done = second.wait_for(job["id"], timeout=60)
    assert done["status"] == "succeeded" and done["attempt"] == 2 and done["interruptions"] == 1
    assert done["stop_reason"] == f"time limit: max_seconds 8 reached after epoch {done['progress']['epoch']}"
    assert limit <= done["trained_seconds"] < limit + 10
    # the resumed attempt trained only what was left: a fresh budget would have taken it the whole limit
    assert seconds_between(done["started_at"], done["finished_at"]) < limit - 1
    epochs = [p["epoch"] for p in second.curve(job["id"])]
    assert epochs == list(range(1, done["progress"]["epoch"] + 1))  # resumed where the checkpoint left it
