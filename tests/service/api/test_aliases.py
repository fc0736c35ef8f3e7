"""Aliases move from job to job in one step, keep a history, and never leave /v2 without the model meanwhile."""

import threading

import httpx

from service.db import session_scope
from service.repositories import aliases as alias_repo
from service.repositories import jobs as job_repo
from tests.specs import tiny_regression


def test_an_alias_moves_in_one_step_and_keeps_its_history(served):
    a, b = (served.train(tiny_regression(epochs=5, seed=seed))["id"] for seed in (1, 2))
    alias = f"prod-{a[:8]}"
    assert served.client.put(f"/v1/jobs/{a}/alias", json={"alias": alias}).status_code == 200
    taken = served.client.put(f"/v1/jobs/{b}/alias", json={"alias": alias})
    assert taken.status_code == 409 and '"move": true' in taken.json()["detail"] and a in taken.json()["detail"]

    # a reader asks for the model the whole time the alias moves back and forth: it is always there
    statuses, stop = [], threading.Event()

    def read() -> None:
        with httpx.Client(base_url=served.client.base_url, timeout=30) as client:
            while not stop.is_set():
                statuses.append(client.get(f"/v2/models/{alias}/ready").status_code)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for target in [b, a] * 10:
            moved = served.client.put(f"/v1/jobs/{target}/alias", json={"alias": alias, "move": True})
            assert moved.status_code == 200 and moved.json()["alias"] == alias, moved.text
    finally:
        stop.set()
        reader.join()
    assert len(statuses) > 20 and set(statuses) == {200}, sorted(set(statuses))
    assert served.client.get(f"/v1/jobs/{b}").json()["alias"] is None  # it moved off b, back to a

    history = served.client.get(f"/v1/aliases/{alias}").json()
    assert history["job_id"] == a
    held = [(h["job_id"], h["released_at"] is None) for h in history["history"]]
    assert held == [(a, True)] + [(b, False), (a, False)] * 10  # newest first: only the latest is open
    times = [h["assigned_at"] for h in history["history"]]
    assert times == sorted(times, reverse=True)

    # deleting the job that holds it ends its assignment; the history stays, naming no job now
    assert served.client.delete(f"/v1/jobs/{a}").status_code == 204
    after = served.client.get(f"/v1/aliases/{alias}").json()
    assert after["job_id"] is None and all(h["released_at"] is not None for h in after["history"])
    assert served.client.get(f"/v2/models/{alias}/ready").status_code == 404
    assert served.client.get("/v1/aliases/never-set").status_code == 404
    assert served.client.get("/v1/aliases/no spaces").status_code == 422


def test_an_owner_sees_only_its_own_aliases(keyed_app):
    srv = keyed_app(workers=0)
    alice, bob = ({"Authorization": f"Bearer {srv.keys[who]}"} for who in ("alice", "bob"))
    job = srv.client.post("/v1/jobs", json=tiny_regression(), headers=alice).json()
    assert srv.client.put(f"/v1/jobs/{job['id']}/alias", json={"alias": "mine"}, headers=alice).status_code == 200
    assert srv.client.get("/v1/aliases/mine", headers=alice).json()["job_id"] == job["id"]
    assert srv.client.get("/v1/aliases/mine", headers=bob).status_code == 404
    # bob's own alias of the same name is his: moving it never touches alice's
    bobs = srv.client.post("/v1/jobs", json=tiny_regression(), headers=bob).json()
    moved = srv.client.put(f"/v1/jobs/{bobs['id']}/alias", json={"alias": "mine", "move": True}, headers=bob)
    assert moved.status_code == 200
    assert srv.client.get("/v1/aliases/mine", headers=alice).json()["job_id"] == job["id"]
    assert srv.client.put(f"/v1/jobs/{job['id']}/alias", json={"alias": "mine", "move": True},
                          headers=bob).status_code == 404


def test_an_alias_taken_by_a_concurrent_request_is_refused_and_the_session_goes_on(make_app):
    """Two requests that both found an alias free: the unique index decides, the loser changes nothing (the
    service answers it 409), and its transaction stays usable."""
    app = make_app(workers=0).start()
    a, b = (app.submit(tiny_regression())["id"] for _ in range(2))
    assert app.client.put(f"/v1/jobs/{a}/alias", json={"alias": "race"}).status_code == 200
    with session_scope() as s:  # what the later request does next: set the alias it found free
        late = job_repo.get_job(s, b, None)
        assert alias_repo.set_alias(s, late, "race") is False
        assert alias_repo.set_alias(s, late, "other") is True
    assert app.client.get("/v1/aliases/race").json()["job_id"] == a
    assert app.client.get(f"/v1/jobs/{b}").json()["alias"] == "other"
    assert [h["job_id"] for h in app.client.get("/v1/aliases/other").json()["history"]] == [b]
