"""Limits on what a request may ask: body size, rate, queued jobs, rows; no mass assignment."""

import socket
import time

import pytest

from tests.conftest import module_server, wait_until
from tests.specs import tiny_regression

MAX_BODY = 1024 * 1024


@pytest.fixture(scope="module")
def limited(tmp_path_factory, databases):
    srv = module_server(
        tmp_path_factory, databases, "limits",
        FITSERVE_MAX_BODY_BYTES=str(MAX_BODY),
        FITSERVE_MAX_QUEUED_PER_OWNER="3",
        FITSERVE_RATE_LIMIT_PER_SECOND="2",
        FITSERVE_RATE_LIMIT_BURST="30",
    ).start()
    yield srv
    srv.stop()


def raw_request(srv, head: bytes, body_part: bytes) -> bytes:
    """Send a request head and part of its body over a socket; returns what the server answered."""
    host, port = srv.client.base_url.host, srv.client.base_url.port
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(head + body_part)
        return sock.recv(4096)


def test_a_declared_200mb_body_is_413_before_it_is_read(limited):
    head = (
        b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 200000000\r\n\r\n"
    )
    started = time.monotonic()
    answer = raw_request(limited, head, b'{"model": ')
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert time.monotonic() - started < 5
    assert limited.client.get("/healthz").status_code == 200


def test_a_chunked_body_is_cut_off_at_the_limit(limited):
    chunk = b"x" * 65536
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(MAX_BODY // len(chunk) + 4)) + b"0\r\n\r\n"
    head = b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    answer = raw_request(limited, head, body)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert limited.client.get("/healthz").status_code == 200


def test_queued_jobs_per_owner_are_capped(limited):
    codes = [limited.client.post("/v1/jobs", json=tiny_regression()).status_code for _ in range(4)]
    assert codes == [201, 201, 201, 429]
    last = limited.client.post("/v1/jobs", json=tiny_regression())
    assert "queued" in last.json()["detail"] and int(last.headers["retry-after"]) >= 1
    # with the queue full, a spec that can never run is told why (422), not to retry later (429)
    bad_field = limited.client.post("/v1/jobs", json=tiny_regression(epochs=0))
    assert bad_field.status_code == 422 and bad_field.json()["detail"][0]["loc"][-1] == "epochs"
    wide = tiny_regression(model={"kind": "linear", "in_features": 3, "out_features": 1})
    misfit = limited.client.post("/v1/jobs", json=wide)
    assert misfit.status_code == 422 and "in_features" in str(misfit.json()["detail"]), misfit.json()
    on_dataset = tiny_regression(data={"source": "dataset", "dataset_id": "0" * 32})
    missing = limited.client.post("/v1/jobs", json=on_dataset)
    assert missing.status_code == 422 and "no dataset" in str(missing.json()["detail"]), missing.json()


def test_request_rate_per_caller_is_limited_with_retry_after(limited):
    wait_until(lambda: limited.client.get("/v1/jobs").status_code == 200, 30, "a token in the bucket")
    codes = [limited.client.get("/v1/jobs").status_code for _ in range(60)]
    assert 429 in codes and codes[0] == 200
    limited_response = next(
        r for r in (limited.client.get("/v1/jobs") for _ in range(5)) if r.status_code == 429
    )
    assert int(limited_response.headers["retry-after"]) >= 1
    assert limited.client.get("/healthz").status_code == 200  # probes are not rate limited
    # polled, not slept: a refused request takes no token, and one comes back within Retry-After
    retry_after = int(limited_response.headers["retry-after"])
    wait_until(lambda: limited.client.get("/v1/jobs").status_code == 200, retry_after + 0.5, "served again after Retry-After")


@pytest.mark.parametrize("field", ["status", "owner_id", "id", "attempt", "created_at"])
def test_server_fields_cannot_be_set_by_the_body(server, field):
    response = server.client.post("/v1/jobs", json={**tiny_regression(), field: "succeeded"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", field]


def test_too_many_inline_rows_is_422(server):
    n = 100_001
    spec = tiny_regression(data={"source": "inline", "x": [0.0] * n, "y": [0.0] * n})
    response = server.client.post("/v1/jobs", json=spec)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][:3] == ["body", "data", "inline"]


def test_values_beyond_float32_are_422(server):
    spec = tiny_regression(data={"source": "inline", "x": [1.0, 1e39], "y": [1.0, 2.0]})
    response = server.client.post("/v1/jobs", json=spec)
    assert response.status_code == 422
    assert "float32" in response.json()["detail"][0]["msg"]
