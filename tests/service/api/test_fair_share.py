"""Fair share: another owner's job starts ahead of a backlog, priority orders one owner's jobs, a running cap holds.

Orders are read from the database (`started_at`, the time of each claim) once the jobs ran, never from timing.
"""

import time
from datetime import datetime, timedelta

import pytest

from tests.harness.calls import wait_until
from tests.specs import long_job, tiny_regression

QUICK = {"epochs": 5}  # a claim, a few steps, a finish: what is measured here is the order of claims
# one job a claim: auto-batching would start equal jobs together (its own fair share: tests/workers/test_auto_batch.py)
ALONE = {"FITSERVE_AUTO_BATCH": "off"}


def steady() -> dict:
    """A job of about half a second on a quiet machine: 6,000 small steps."""
    data = {"source": "synthetic", "generator": "linear", "n": 1000, "slope": 2.0, "intercept": 1.0}
    return tiny_regression(data=data, batch_size=50, epochs=300)


def keyed_api(make_app, **env):
    """An API without workers on a fresh database with keys for alice and bob: jobs queue up."""
    api = make_app(workers=0, **env)
    api.keys = {who: api.create_key(who) for who in ("alice", "bob")}
    return api.start()


def submit(srv, who: str, body: dict, path: str = "/v1/jobs") -> dict:
    response = srv.client.post(path, json=body, headers={"Authorization": f"Bearer {srv.keys[who]}"})
    assert response.status_code == 201, response.text
    return response.json()


def claim_order(srv) -> list[tuple[str, str]]:
    """(owner, job id) of every job that started, in the order workers claimed them."""
    rows = srv.query("SELECT owner_id, id FROM jobs WHERE started_at IS NOT NULL ORDER BY started_at, id")
    return [(owner, job_id) for owner, job_id in rows]


def test_another_owners_job_starts_ahead_of_a_backlog(make_app):
    api = keyed_api(make_app)
    backlog = [submit(api, "alice", tiny_regression(name=f"a{i}", **QUICK))["id"] for i in range(30)]
    bobs = submit(api, "bob", tiny_regression(name="b", **QUICK))["id"]
    make_app(workers=1, **ALONE).start()  # one worker, on the same database, finds all 31 queued
    api.wait_for_jobs([bobs])
    order = claim_order(api)
    position = [job_id for _, job_id in order].index(bobs)
    # alice's and bob's turns alternate: one of alice's jobs (a tie, broken by owner id) may go first, not 30
    assert position <= 1, order
    alices = [job_id for owner, job_id in order if owner == "alice"]
    assert alices == backlog[: len(alices)]  # oldest first within an owner


def test_priority_orders_one_owners_jobs_higher_first(make_app):
    api = keyed_api(make_app)
    priorities = [0, 5, -3, 5, 10, -1000, 1000]
    ids = [submit(api, "alice", tiny_regression(priority=p, **QUICK))["id"] for p in priorities]
    assert api.client.get(f"/v1/jobs/{ids[1]}", headers={"Authorization": f"Bearer {api.keys['alice']}"}).json()[
        "priority"
    ] == 5
    make_app(workers=1, **ALONE).start()
    api.wait_for_jobs(ids)
    expected = [ids[i] for i in sorted(range(len(ids)), key=lambda i: (-priorities[i], i))]
    assert [job_id for _, job_id in claim_order(api)] == expected


def test_priority_out_of_bounds_is_422_naming_it(make_app):
    api = keyed_api(make_app)
    for bad in (1001, -1001, "high", 2**63):
        response = api.client.post(
            "/v1/jobs", json=tiny_regression(priority=bad), headers={"Authorization": f"Bearer {api.keys['alice']}"}
        )
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == ["body", "priority"]


def test_running_cap_keeps_an_owner_to_one_job_at_a_time(make_app):
    """Two workers, FITSERVE_MAX_RUNNING_PER_OWNER=1: alice's jobs (a sweep's members too) never overlap."""
    cap = {"FITSERVE_MAX_RUNNING_PER_OWNER": "1"}
    api = keyed_api(make_app, **cap)
    # two jobs and a sweep of two members: four jobs of alice's for two workers, which would overlap without the cap
    alices = [submit(api, "alice", steady())["id"] for _ in range(2)]
    sweep = submit(api, "alice", {"base": steady(), "space": {"lr": [0.01, 0.02]}}, "/v1/sweeps")
    bobs = submit(api, "bob", steady())["id"]
    make_app(workers=2, **cap, **ALONE).start()
    members = [job_id for (job_id,) in api.query("SELECT id FROM jobs WHERE sweep_id = :s", s=sweep["id"])]
    everything = [*alices, *members, bobs]
    deadline, most = time.monotonic() + 180, 0
    while time.monotonic() < deadline:  # sampled as the jobs run; the intervals below are the proof
        running = api.query("SELECT count(*) FROM jobs WHERE owner_id = 'alice' AND status = 'running'")[0][0]
        most = max(most, running)
        if api.query("SELECT count(*) FROM jobs WHERE finished_at IS NULL")[0][0] == 0:
            break
        time.sleep(0.05)
    api.wait_for_jobs(everything, timeout=5)
    assert most <= 1
    spans = sorted(
        (parse(started), parse(finished)) for started, finished in api.query(
            "SELECT started_at, finished_at FROM jobs WHERE owner_id = 'alice' AND status = 'succeeded'"
        )
    )
    assert len(spans) == len(alices) + len(members)
    # each of alice's jobs started once the one before it ended; the slack is the clocks': a claim stamps
    # its start before it waits for SQLite's write lock, which the finishing job may still hold
    slack = timedelta(seconds=0.1)
    assert min(finished - started for started, finished in spans) > 2 * slack  # a job takes longer than that
    for (_, finished), (started, _) in zip(spans, spans[1:]):
        assert finished <= started + slack, spans


def parse(moment) -> datetime:
    return moment if isinstance(moment, datetime) else datetime.fromisoformat(moment)


def test_a_long_run_yields_its_worker_to_another_owners_waiting_job(make_app):
    """FITSERVE_YIELD_SECONDS: alice's long job, alone on the one worker, gives it up between epochs once bob's
    job has waited that long; bob's trains, then alice's resumes from the checkpoint it wrote as it yielded: no
    epoch trained twice, and the hand-back counts as an interruption, never an attempt."""
    api = keyed_api(make_app)
    alices = submit(api, "alice", long_job(epochs=1_000_000, metrics_every=100, name="long"))["id"]
    make_app(workers=1, FITSERVE_YIELD_SECONDS="1", **ALONE).start()

    def state(job_id):
        return api.query("SELECT status, epoch, attempt, interruptions, yields FROM jobs WHERE id = :id", id=job_id)[0]

    wait_until(lambda: state(alices)[0] == "running" and state(alices)[1] > 0, 60, "alice's job trains")
    bobs = submit(api, "bob", tiny_regression(name="b", **QUICK))["id"]
    api.wait_for_jobs([bobs])
    assert state(bobs)[0] == "succeeded"
    assert state(alices)[4] == 1  # it yielded once: bob's job was its only reason
    wait_until(lambda: state(alices)[2] == 2 and state(alices)[0] == "running", 60, "alice's job claimed again")
    resumed_at = state(alices)[1]
    wait_until(lambda: state(alices)[1] > resumed_at + 200, 60, "alice's job trains on")
    api.client.post(f"/v1/jobs/{alices}/cancel", headers={"Authorization": f"Bearer {api.keys['alice']}"})
    api.wait_for_jobs([alices])

    status, _, attempt, interruptions, yields = state(alices)
    assert (status, attempt, interruptions, yields) == ("cancelled", 2, 1, 1)
    [(cause, counted)] = api.query("SELECT cause, counted FROM job_attempts WHERE job_id = :id", id=alices)
    assert "another owner's waiting job" in cause and not counted
    # bob's job ran while alice's was back in the queue
    started, finished = api.query("SELECT started_at, finished_at FROM jobs WHERE id = :id", id=bobs)[0]
    assert attempt == 2 and started is not None and finished is not None
    points = api.client.get(f"/v1/jobs/{alices}/metrics", params={"max_points": 100_000},
                            headers={"Authorization": f"Bearer {api.keys['alice']}"}).json()["points"]
    epochs = [p["epoch"] for p in points]
    assert epochs == sorted(set(epochs)) and epochs[-1] > resumed_at, epochs[:20]


@pytest.mark.parametrize("search", [{"search": "asha", "asha": {"min_epochs": 100_000, "reduction_factor": 3}},
                                    {"search": "pbt", "pbt": {"interval_epochs": 100_000}}], ids=["asha", "pbt"])
def test_an_adaptive_sweep_trained_in_turn_yields_its_worker_whole(make_app, search):
    """ASHA and PBT one by one hold every member on one worker (they take turns an epoch each): the run gives the
    worker up for all of them at once, and takes them all up again at its next turn (its first decision is far
    off: every member is still in the run)."""
    api = keyed_api(make_app)
    body = {"base": long_job(epochs=1_000_000, metrics_every=100), "execution": "one_by_one", "count": 3,
            "space": {"lr": {"distribution": "log_uniform", "low": 1e-3, "high": 0.1}}, "search_seed": 0, **search}
    sweep = submit(api, "alice", body, "/v1/sweeps")["id"]
    make_app(workers=1, FITSERVE_YIELD_SECONDS="1", **ALONE).start()

    def members():
        return api.query("SELECT status, attempt, yields FROM jobs WHERE sweep_id = :id ORDER BY id", id=sweep)

    wait_until(lambda: all(status == "running" for status, _, _ in members()), 60, "the sweep's members train")
    bobs = submit(api, "bob", tiny_regression(name="b", **QUICK))["id"]
    api.wait_for_jobs([bobs])
    assert [yields for _, _, yields in members()] == [1, 1, 1]
    wait_until(lambda: all(row[:2] == ("running", 2) for row in members()), 60, "the sweep claimed again, whole")
    api.client.post(f"/v1/sweeps/{sweep}/cancel", headers={"Authorization": f"Bearer {api.keys['alice']}"})
    wait_until(lambda: all(status == "cancelled" for status, _, _ in members()), 60, "the sweep cancelled")
