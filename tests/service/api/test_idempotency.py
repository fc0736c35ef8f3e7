"""Idempotency-Key on POST /v1/jobs and /v1/datasets: retries create nothing new."""

import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.conftest import shared_app
from tests.specs import tiny_regression

server = shared_app()  # the tests keep apart by their own jobs


def post_job(server, spec: dict, key: str) -> httpx.Response:
    return server.client.post("/v1/jobs", json=spec, headers={"Idempotency-Key": key})


def count_named(server, name: str) -> int:
    items = server.client.get("/v1/jobs", params={"limit": 200}).json()["items"]
    return sum(1 for j in items if j["name"] == name)


def test_same_key_and_body_returns_the_first_response(server):
    key, name = str(uuid.uuid4()), f"idem-{uuid.uuid4()}"
    first = post_job(server, tiny_regression(epochs=1, name=name), key)
    again = post_job(server, tiny_regression(epochs=1, name=name), key)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["idempotent-replayed"] == "true"
    assert count_named(server, name) == 1


def test_same_key_with_another_body_is_422(server):
    key = str(uuid.uuid4())
    assert post_job(server, tiny_regression(epochs=1), key).status_code == 201
    other = post_job(server, tiny_regression(epochs=2), key)
    assert other.status_code == 422
    assert other.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]


def test_a_rejected_request_frees_its_key(server):
    key = str(uuid.uuid4())
    bad = post_job(server, tiny_regression(epochs=1, model={"kind": "linear", "in_features": 9, "out_features": 1}), key)
    assert bad.status_code == 422
    assert post_job(server, tiny_regression(epochs=1), key).status_code == 201


def test_fifty_concurrent_posts_with_one_key_make_one_job(server):
    key, name = str(uuid.uuid4()), f"race-{uuid.uuid4()}"
    spec = tiny_regression(epochs=1, name=name)
    with ThreadPoolExecutor(50) as pool:
        responses = list(pool.map(lambda _: post_job(server, spec, key), range(50)))
    codes = {r.status_code for r in responses}
    assert codes <= {201, 409}, codes
    created = {r.json()["id"] for r in responses if r.status_code == 201}
    assert len(created) == 1
    assert count_named(server, name) == 1


def test_dataset_upload_is_idempotent(server):
    key = str(uuid.uuid4())
    files = {"file": ("d.csv", b"a,y\n1,2\n2,4\n")}
    first = server.client.post("/v1/datasets", files=files, data={"target": "y"}, headers={"Idempotency-Key": key})
    again = server.client.post("/v1/datasets", files=files, data={"target": "y"}, headers={"Idempotency-Key": key})
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    other = server.client.post("/v1/datasets", files=files, data={"target": "a"}, headers={"Idempotency-Key": key})
    assert other.status_code == 422
