"""API keys and owners: nobody reads or runs another owner's jobs, and nobody can tell they exist."""

import time

import pytest

from tests.conftest import as_
from tests.specs import tiny_regression


KEY_CACHE_SECONDS = 1.0  # a revoke is waited out in the tests below: 5 s (the default) each time


@pytest.fixture
def keyed(keyed_app):
    """An app on a database that has keys for alice and bob (so keys are required)."""
    return keyed_app(FITSERVE_KEY_CACHE_SECONDS=str(KEY_CACHE_SECONDS))


def test_requests_without_a_key_are_401_once_keys_exist(keyed):
    response = keyed.client.get("/v1/jobs")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert keyed.client.post("/v1/jobs", json=tiny_regression()).status_code == 401
    assert keyed.client.get("/healthz").status_code == 200  # probes stay open


@pytest.mark.parametrize("token", ["nonsense", "fs_abc_def", "fs__", "Bearer"])
def test_bad_keys_are_401(keyed, token):
    response = keyed.client.get("/v1/jobs", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


def test_a_key_with_the_right_id_but_wrong_secret_is_401(keyed):
    prefix, key_id, _secret = keyed.keys["alice"].split("_", 2)
    forged = f"{prefix}_{key_id}_{'x' * 43}"
    assert keyed.client.get("/v1/jobs", headers={"Authorization": f"Bearer {forged}"}).status_code == 401


def test_another_owners_job_is_404_on_every_endpoint(keyed):
    job = keyed.client.post("/v1/jobs", json=tiny_regression(epochs=20), headers=as_(keyed, "alice")).json()
    deadline = time.monotonic() + 60
    while keyed.client.get(f"/v1/jobs/{job['id']}", headers=as_(keyed, "alice")).json()["status"] != "succeeded":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    bob = as_(keyed, "bob")
    for method, path, body in [
        ("GET", f"/v1/jobs/{job['id']}", None),
        ("POST", f"/v1/jobs/{job['id']}/cancel", None),
        ("GET", f"/v1/jobs/{job['id']}/metrics", None),
        ("GET", f"/v1/jobs/{job['id']}/metrics.png", None),
        ("GET", f"/v1/jobs/{job['id']}/weights", None),
        ("POST", f"/v1/jobs/{job['id']}/predict", {"inputs": [[1.0]]}),
    ]:
        theirs = keyed.client.request(method, path, json=body, headers=bob)
        missing = keyed.client.request(method, path.replace(job["id"], "0" * 32), json=body, headers=bob)
        assert theirs.status_code == missing.status_code == 404, (path, theirs.text)
        assert theirs.json()["detail"].replace(job["id"], "0" * 32) == missing.json()["detail"]
    listed = keyed.client.get("/v1/jobs", headers=bob).json()["items"]
    assert job["id"] not in {j["id"] for j in listed}
    mine = keyed.client.get("/v1/jobs", headers=as_(keyed, "alice")).json()["items"]
    assert job["id"] in {j["id"] for j in mine}
    # the owner still reaches it all
    assert keyed.client.post(
        f"/v1/jobs/{job['id']}/predict", json={"inputs": [[1.0]]}, headers=as_(keyed, "alice")
    ).status_code == 200


def test_another_owners_dataset_cannot_be_read_or_trained_on(keyed):
    files = {"file": ("d.csv", b"a,y\n1,2\n2,4\n")}
    dataset = keyed.client.post("/v1/datasets", files=files, data={"target": "y"}, headers=as_(keyed, "alice")).json()
    bob = as_(keyed, "bob")
    assert keyed.client.get(f"/v1/datasets/{dataset['id']}", headers=bob).status_code == 404
    spec = tiny_regression(data={"source": "dataset", "dataset_id": dataset["id"]})
    response = keyed.client.post("/v1/jobs", json=spec, headers=bob)
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", "data", "dataset_id"]


def test_idempotency_keys_are_scoped_per_owner(keyed):
    spec = tiny_regression(epochs=1)
    headers = {"Idempotency-Key": "shared-key"}
    a = keyed.client.post("/v1/jobs", json=spec, headers={**headers, **as_(keyed, "alice")})
    b = keyed.client.post("/v1/jobs", json=spec, headers={**headers, **as_(keyed, "bob")})
    assert a.status_code == b.status_code == 201
    assert a.json()["id"] != b.json()["id"]


def test_a_revoked_key_stops_working(keyed):
    token = keyed.create_key("carol")
    headers = {"Authorization": f"Bearer {token}"}
    assert keyed.client.get("/v1/jobs", headers=headers).status_code == 200
    key_id = token.split("_")[1]
    assert f"revoked key {key_id}" in keyed.cli("keys", "revoke", key_id)
    assert "revoked" in keyed.cli("keys", "list")
    deadline = time.monotonic() + KEY_CACHE_SECONDS + 1.0  # the second: one request's latency on a busy machine
    while keyed.client.get("/v1/jobs", headers=headers).status_code != 401:
        assert time.monotonic() < deadline, "revoked key still works"
        time.sleep(0.5)


def test_a_revoked_key_cannot_predict_once_its_cache_entry_expires(keyed):
    """Checked keys are cached for FITSERVE_KEY_CACHE_SECONDS, off the database; a revoke is seen within that time."""
    token = keyed.create_key("dave")
    headers = {"Authorization": f"Bearer {token}"}
    job = keyed.client.post("/v1/jobs", json=tiny_regression(epochs=5), headers=headers).json()
    deadline = time.monotonic() + 60
    while keyed.client.get(f"/v1/jobs/{job['id']}", headers=headers).json()["status"] != "succeeded":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    url, body = f"/v1/jobs/{job['id']}/predict", {"inputs": [[1.0]]}
    assert keyed.client.post(url, json=body, headers=headers).status_code == 200
    keyed.cli("keys", "revoke", token.split("_")[1])
    deadline = time.monotonic() + KEY_CACHE_SECONDS + 1.0  # the second: one request's latency on a busy machine
    while (response := keyed.client.post(url, json=body, headers=headers)).status_code == 200:
        assert time.monotonic() < deadline, "revoked key still predicts"
        time.sleep(0.2)
    assert response.status_code == 401 and response.json()["detail"] == "invalid or revoked API key"
    assert keyed.client.post(url, json=body, headers=headers).status_code == 401


def test_serving_beyond_loopback_requires_keys_even_when_none_exist(make_server):
    srv = make_server(workers=0, host="0.0.0.0").start()
    assert srv.client.get("/v1/jobs").status_code == 401
    assert "none exists" in srv.read_log()
    assert "API keys: required: send `Authorization: Bearer <key>`" in srv.read_log()  # said at start, too


def test_local_development_without_keys_is_open_on_loopback(make_app):
    srv = make_app(workers=0).start()
    assert srv.client.get("/v1/jobs").status_code == 200
