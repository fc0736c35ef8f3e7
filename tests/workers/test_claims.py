"""workers/claims.py: what one claim takes, and what a sweep trained one by one holds meanwhile."""

from __future__ import annotations

import threading

from service.db import get_engine
from service.settings import get_settings
from tests.conftest import register_gpu
from tests.harness.calls import statements_run
from tests.service.api.test_fair_share import keyed_api, submit
from tests.specs import tiny_regression
from workers.claims import claim
from workers.devices import this_node
from workers.loop import train

LRS = [round(0.001 * (i + 1), 3) for i in range(20)]


def grid(execution: str, **base) -> dict:
    return {"name": f"grid {execution}", "base": tiny_regression(epochs=5, **base), "space": {"lr": LRS},
            "execution": execution}


def test_a_sweep_asked_to_train_one_by_one_is_claimed_a_member_at_a_time_in_turn_with_other_owners(make_app):
    """20 members of alice's, then a job of bob's: the first claim takes one member (it took all 20, and held
    them while training each in turn); the next is bob's, fair share's turn."""
    api = keyed_api(make_app)
    sweep = submit(api, "alice", grid("one_by_one"), "/v1/sweeps")
    bobs = submit(api, "bob", tiny_regression(name="bob's"))["id"]
    settings = get_settings()
    first, second, third = (claim(f"worker-{i}", settings) for i in range(3))
    assert [len(c) for c in (first, second, third)] == [1, 1, 1]
    assert first[0].sweep_id == sweep["id"] and second[0].id == bobs and third[0].sweep_id == sweep["id"]
    assert api.query("SELECT count(*) FROM jobs WHERE status = 'queued'") == [(18,)]


def test_members_found_to_train_one_by_one_go_back_to_the_queue_unspent(make_app):
    """An auto sweep whose members cannot be stacked (dropout): the worker that claimed all of them trains the
    first, puts the others back as never claimed (attempt 0, queued), and from then on the sweep's `execution`
    makes every claim take one member; each member ends in one attempt."""
    api = keyed_api(make_app)
    sweep = submit(api, "alice", grid("auto", model={"kind": "mlp", "in_features": 1, "hidden": [4],
                                                     "out_features": 1, "dropout": 0.1}), "/v1/sweeps")
    settings = get_settings()
    members = claim("worker-0", settings)
    assert len(members) == 20  # the first claim does not know yet
    train(members, "worker-0", settings, None, threading.Event())
    rows = api.query("SELECT status, attempt, count(*) FROM jobs GROUP BY status, attempt ORDER BY status")
    assert rows == [("queued", 0, 19), ("succeeded", 1, 1)]
    [(execution,)] = api.query("SELECT execution FROM sweeps")
    assert execution.startswith("one by one: 20 members on cpu; ")
    for i in range(19):
        [member] = claim(f"worker-{i + 1}", settings)
        train([member], f"worker-{i + 1}", settings, None, threading.Event())
    assert api.query("SELECT status, attempt, count(*) FROM jobs GROUP BY status, attempt") == [("succeeded", 1, 20)]
    assert api.client.get(f"/v1/sweeps/{sweep['id']}", headers={"Authorization": f"Bearer {api.keys['alice']}"}
                          ).json()["status"] == "succeeded"


def test_cancelling_a_large_sweep_costs_a_few_statements(make_app):
    """A 1,000-member sweep's cancel: every queued member cancelled at once, in a few statements (one UPDATE per
    member and its refresh took 7-8 s on PostgreSQL), and a second cancel is 409."""
    from service.db import get_engine, session_scope
    from service.services import sweeps as sweep_service

    api = keyed_api(make_app)
    body = {"name": "big", "base": tiny_regression(epochs=5), "space": {"lr": [1e-4 * (i + 1) for i in range(1000)]}}
    sweep = submit(api, "alice", body, "/v1/sweeps")
    [(owner,)] = api.query("SELECT DISTINCT owner_id FROM jobs")
    with statements_run(get_engine()) as statements, session_scope() as s:
        sweep_service.cancel_sweep(s, sweep["id"], owner)
    assert len(statements) <= 8, statements
    assert api.query("SELECT status, count(*) FROM jobs GROUP BY status") == [("cancelled", 1000)]
    again = api.client.post(f"/v1/sweeps/{sweep['id']}/cancel", headers={"Authorization": f"Bearer {api.keys['alice']}"})
    assert again.status_code == 409 and "already ended" in again.json()["detail"]


def test_a_gpu_workers_claim_places_jobs_only_where_their_estimates_fit_beside_those_running_there(make_app):
    """cuda:0 registered with 2.5 job estimates: two jobs go on it, the third is left queued (no attempt spent)
    while they run, goes to cuda:1 (registered, empty) when its worker claims, and a fourth starts on cuda:0 once one
    there ends. The claim writes where each trains (jobs.device and jobs.node)."""
    api = keyed_api(make_app, FITSERVE_LEASE_SECONDS="600", FITSERVE_AUTO_BATCH="off")
    spec = tiny_regression(model={"kind": "mlp", "in_features": 1, "hidden": [256], "out_features": 1},
                           data={"source": "synthetic", "generator": "linear", "n": 1000}, device="cuda")
    ids = [submit(api, "alice", {**spec, "name": f"j{i}"})["id"] for i in range(4)]
    [(estimate,)] = api.query("SELECT DISTINCT estimate_bytes FROM jobs")
    register_gpu("gpu-0", estimate * 5 // 2)
    settings = get_settings()
    first, second = claim("gpu-0", settings, gpu=0), claim("gpu-0b", settings, gpu=0)
    assert [j.id for j in first + second] == ids[:2]
    assert claim("gpu-0c", settings, gpu=0) == []  # 3 estimates > 2.5: left for later
    queued = "SELECT id, attempt FROM jobs WHERE status = 'queued' ORDER BY created_at"
    assert api.query(queued) == [(ids[2], 0), (ids[3], 0)]
    register_gpu("gpu-1", estimate * 5 // 2, device="cuda:1")
    assert [j.id for j in claim("gpu-1", settings, gpu=1)] == [ids[2]]
    api.query("UPDATE jobs SET status = 'succeeded', finished_at = started_at WHERE id = :id", id=ids[0])
    assert [j.id for j in claim("gpu-0c", settings, gpu=0)] == [ids[3]]
    placed = api.query("SELECT id, device, node FROM jobs WHERE status = 'running' ORDER BY created_at")
    assert placed == [(ids[1], "cuda:0", this_node()), (ids[2], "cuda:1", this_node()), (ids[3], "cuda:0", this_node())]


def test_a_claim_that_alone_exceeds_its_gpu_starts_and_a_cpu_job_is_not_placed(make_app):
    """Nothing running on cuda:0: a job bigger than it (queued before it registered) starts there rather than hold
    the queue; a `cpu` job a GPU worker claims is not checked against the GPU, nor placed on it."""
    api = keyed_api(make_app, FITSERVE_LEASE_SECONDS="600", FITSERVE_AUTO_BATCH="off")
    big = submit(api, "alice", tiny_regression(device="cuda", name="big"))["id"]
    small = submit(api, "alice", tiny_regression(device="cpu", name="on the cpu"))["id"]
    register_gpu("gpu-0", 1)
    settings = get_settings()
    assert [j.id for j in claim("gpu-0", settings, gpu=0)] == [big]
    assert [j.id for j in claim("gpu-0b", settings, gpu=0)] == [small]
    assert api.query("SELECT id, device FROM jobs ORDER BY created_at") == [(big, "cuda:0"), (small, None)]


def test_a_claim_with_nothing_queued_only_reads_and_a_queued_job_is_then_claimed(make_app):
    """An idle worker's poll: one read, no write (on SQLite no write lock, which API writes would wait for)."""
    api = make_app(workers=0).start()
    finished = api.submit(tiny_regression(epochs=1))
    [first] = claim("idle", get_settings())
    assert first.id == finished["id"]  # a job queued is claimed: the read did not hide it
    with statements_run(get_engine()) as statements:
        assert claim("idle", get_settings()) == []
    run = [statement.split()[0].upper() for statement, _ in statements]
    assert run and set(run) <= {"BEGIN", "SELECT"}, statements
    job = api.submit(tiny_regression(epochs=1))
    [claimed] = claim("idle", get_settings())
    assert claimed.id == job["id"] and claimed.status == "running" and claimed.worker_id == "idle"
