"""Finding jobs: tags set at submit and by PATCH, filters on name, tag, sweep and dates, sorts with cursor pages."""

import time

import pytest

from tests.conftest import as_
from tests.specs import tiny_regression


@pytest.fixture
def keyed(keyed_app):
    """An app with one worker, keys for alice and bob, and at most 4 tags a job."""
    return keyed_app(FITSERVE_MAX_TAGS="4")


def submit(srv, who: str, spec: dict) -> dict:
    response = srv.client.post("/v1/jobs", json=spec, headers=as_(srv, who))
    assert response.status_code == 201, response.text
    return response.json()


def listed(srv, who: str = "alice", **params) -> list[str]:
    """Ids of every page of `GET /v1/jobs` with these parameters, following `next_cursor`."""
    ids, cursor = [], None
    for _ in range(100):
        response = srv.client.get("/v1/jobs", params={**params, **({"cursor": cursor} if cursor else {})},
                                  headers=as_(srv, who))
        assert response.status_code == 200, response.text
        page = response.json()
        ids += [job["id"] for job in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return ids
    raise AssertionError("pages never ended")


def wait_done(srv, who: str, job_ids: list[str], timeout: float = 120.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = [srv.client.get(f"/v1/jobs/{j}", headers=as_(srv, who)).json() for j in job_ids]
        if all(job["status"] == "succeeded" for job in jobs):
            return jobs
        time.sleep(0.1)
    raise AssertionError(f"jobs not done:\n{srv.read_log()[-3000:]}")


@pytest.fixture
def trained(keyed) -> list[dict]:
    """Six of alice's jobs that ran: three hold out a validation split (val_loss), three do not (none)."""
    ids = []
    for i in range(6):
        data = {"source": "synthetic", "generator": "linear", "n": 50, "slope": 2.0, "intercept": 1.0}
        if i % 2:
            data["validation_fraction"] = 0.2
        spec = tiny_regression(name=f"ranked {i}", epochs=10 + 7 * i, data=data, tags={"set": "ranked", "i": str(i)})
        ids.append(submit(keyed, "alice", spec)["id"])
    return wait_done(keyed, "alice", ids)


def test_tags_set_at_submit_are_found_by_key_and_value(keyed):
    a = submit(keyed, "alice", tiny_regression(epochs=1, tags={"team": "vision", "run": "a:1"}))
    b = submit(keyed, "alice", tiny_regression(epochs=1, tags={"team": "vision"}))
    c = submit(keyed, "alice", tiny_regression(epochs=1, tags={"team": "nlp", "run": "a:1"}))
    assert a["tags"] == {"team": "vision", "run": "a:1"}
    assert keyed.client.get(f"/v1/jobs/{a['id']}", headers=as_(keyed, "alice")).json()["tags"] == a["tags"]
    assert set(listed(keyed, tag="team:vision")) == {a["id"], b["id"]}
    assert set(listed(keyed, tag="run:a:1")) == {a["id"], c["id"]}  # the value is all after the first ':'
    assert set(listed(keyed, tag=["team:vision", "run"])) == {a["id"]}  # several tags: all of them; a key: any value
    assert listed(keyed, "bob", tag="team:vision") == []  # another owner's jobs are never found


def test_bad_tags_are_422_naming_the_field(keyed):
    for tags, loc in (
        ({f"k{i}": "v" for i in range(5)}, ["body", "tags"]),  # FITSERVE_MAX_TAGS is 4 here
        ({"bad:key": "v"}, ["body", "tags", "bad:key", "[key]"]),
        ({"k": "v" * 257}, ["body", "tags", "k"]),
        ({"k": 1}, ["body", "tags", "k"]),
    ):
        response = keyed.client.post("/v1/jobs", json=tiny_regression(tags=tags), headers=as_(keyed, "alice"))
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == loc
    for tag in (":v", "x" * 65, "a b:c"):
        response = keyed.client.get("/v1/jobs", params={"tag": tag}, headers=as_(keyed, "alice"))
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == ["query", "tag"]


def test_patch_renames_and_merges_tags_and_refuses_anything_else(keyed):
    job = submit(keyed, "alice", tiny_regression(name="before", epochs=1, tags={"keep": "1", "drop": "1"}))
    path, alice = f"/v1/jobs/{job['id']}", as_(keyed, "alice")
    response = keyed.client.patch(path, json={"name": "after", "tags": {"drop": None, "new": "x"}}, headers=alice)
    assert response.status_code == 200, response.text
    assert (response.json()["name"], response.json()["tags"]) == ("after", {"keep": "1", "new": "x"})
    assert job["id"] in listed(keyed, tag="new:x")
    assert job["id"] not in listed(keyed, tag="drop")  # the index follows the tags
    assert job["id"] in listed(keyed, name="AFT")
    assert keyed.client.patch(path, json={"tags": {"a": "1", "b": "2", "c": "3"}}, headers=alice).status_code == 422
    for body in ({"status": "succeeded"}, {"priority": 3}, {"spec": {}}):
        response = keyed.client.patch(path, json=body, headers=alice)
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == ["body", next(iter(body))]
    assert keyed.client.patch(path, json={"name": "theirs"}, headers=as_(keyed, "bob")).status_code == 404
    again = keyed.client.get(path, headers=alice).json()
    assert (again["name"], again["tags"]) == ("after", {"keep": "1", "new": "x"})
    assert again["spec"]["tags"] == job["spec"]["tags"]  # the spec stays what was submitted


def test_filters_by_name_sweep_and_creation_time(keyed):
    first = submit(keyed, "alice", tiny_regression(name="Needle in a stack", epochs=1))
    time.sleep(0.05)  # distinct creation times to filter between
    middle = submit(keyed, "alice", tiny_regression(name="hay 100%_x", epochs=1))
    time.sleep(0.05)
    last = submit(keyed, "alice", tiny_regression(name="other needle", epochs=1))
    assert set(listed(keyed, name="needle")) >= {first["id"], last["id"]}
    assert middle["id"] not in listed(keyed, name="needle")
    assert listed(keyed, name="100%_") == [middle["id"]]  # % and _ are plain characters
    response = keyed.client.get("/v1/jobs", params={"name": "nee\x00dle"}, headers=as_(keyed, "alice"))
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["query", "name"]
    between = listed(keyed, created_after=first["created_at"], created_before=last["created_at"])
    assert between == [middle["id"]]
    body = {"name": "findable", "base": tiny_regression(epochs=1), "space": {"lr": [0.01, 0.02]}, "tags": {"s": "1"}}
    sweep = keyed.client.post("/v1/sweeps", json=body, headers=as_(keyed, "alice")).json()
    members = listed(keyed, sweep_id=sweep["id"])
    assert len(members) == 2
    assert set(listed(keyed, tag="s:1")) == set(members)  # the sweep's tags go to its members
    assert keyed.client.get(f"/v1/sweeps/{sweep['id']}", headers=as_(keyed, "alice")).json()["tags"] == {"s": "1"}


@pytest.mark.parametrize("sort", ["loss", "-loss", "val_loss", "-val_loss", "-val_accuracy", "created_at"])
def test_every_sort_pages_through_all_jobs_in_order(keyed, trained, sort):
    name, descending = sort.lstrip("-"), sort.startswith("-")
    got = listed(keyed, tag="set:ranked", sort=sort, limit=2)

    def key(job):
        value = job[name] if name == "created_at" else (job["metrics"] or {}).get(name)
        return value is None, value, job["id"]

    present = sorted((job for job in trained if key(job)[0] is False), key=key, reverse=descending)
    missing = sorted((job for job in trained if key(job)[0] is True), key=lambda job: job["id"], reverse=descending)
    assert got == [job["id"] for job in present + missing]  # jobs without the metric last, either way


def test_default_sort_is_newest_first_and_a_cursor_keeps_its_sort(keyed, trained):
    newest = listed(keyed, tag="set:ranked", limit=4)
    assert newest == [job["id"] for job in sorted(trained, key=lambda j: (j["created_at"], j["id"]), reverse=True)]
    page = keyed.client.get("/v1/jobs", params={"sort": "loss", "limit": 2, "tag": "set:ranked"},
                            headers=as_(keyed, "alice")).json()
    response = keyed.client.get("/v1/jobs", params={"sort": "-val_loss", "cursor": page["next_cursor"]},
                                headers=as_(keyed, "alice"))
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "cursor"]
    response = keyed.client.get("/v1/jobs", params={"sort": "accuracy"}, headers=as_(keyed, "alice"))
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "sort"]
