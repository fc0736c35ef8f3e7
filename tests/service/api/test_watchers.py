"""Connection budgets: event streams and long-polls are capped per owner, hold no database connection while
they wait, and leave other owners' requests and /healthz fast (issue 13, point 2); over real HTTP.

Each watcher is a request on a socket of its own, so the test decides when its client goes away.
"""

import itertools
import json
import os
import socket
import time
from pathlib import Path

import pytest

from tests.specs import long_job, tiny_regression

QUICK_SECONDS = 1.0  # what another owner's request and /healthz may take while one owner is at its cap


class RawRequest:
    """A GET on a socket of its own; closing the socket is its client going away."""

    def __init__(self, srv, path: str, key: str, **headers: str):
        self.sock = socket.create_connection(("127.0.0.1", srv.client.base_url.port), timeout=10)
        lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", f"Authorization: Bearer {key}", "Connection: close"]
        lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.data = b""

    def receive(self, until: bytes, timeout: float) -> bool:
        """Read until `until` has come (True), the server closed (True), or `timeout` passed (False)."""
        deadline = time.monotonic() + timeout
        while until not in self.data and (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                return False
            if not chunk:
                return True
            self.data += chunk
        return until in self.data

    def status(self, timeout: float) -> int | None:
        """The status code, or None when none came within `timeout` (a long-poll that is waiting)."""
        if not self.receive(b"\r\n\r\n", timeout) or not self.data:
            return None
        return int(self.data.split(b" ", 2)[1])

    def headers(self) -> dict[str, str]:
        head = self.data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
        return {name.lower(): value for name, value in (line.split(": ", 1) for line in head)}

    def body(self, timeout: float = 5.0) -> bytes:
        """The whole body of an answer that ends (the headers may come in a segment before it)."""
        length = int(self.headers().get("content-length", 0))
        if len(self.data.split(b"\r\n\r\n", 1)[1]) < length:
            self.receive(b"\0never", timeout)  # until the server closes: each request says Connection: close
        return self.data.split(b"\r\n\r\n", 1)[1]

    def close(self) -> None:
        self.sock.close()


def stream(srv, job_id: str, key: str) -> RawRequest:
    return RawRequest(srv, f"/v1/jobs/{job_id}/events", key)


def long_poll(srv, job_id: str, key: str, wait: int = 60) -> RawRequest:
    return RawRequest(srv, f"/v1/jobs/{job_id}?wait={wait}", key)


def timed_get(srv, path: str, key: str | None = None) -> tuple[int, float]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    started = time.monotonic()
    status = srv.client.get(path, headers=headers).status_code
    return status, time.monotonic() - started


def start(make_server, **env: str):
    srv = make_server(workers=0, **{f"FITSERVE_{name}": value for name, value in env.items()}).start()
    keys = {owner: srv.create_key(owner) for owner in ("alice", "bob")}
    jobs = {
        owner: srv.client.post("/v1/jobs", json=tiny_regression(), headers={"Authorization": f"Bearer {key}"}).json()[
            "id"
        ]
        for owner, key in keys.items()
    }
    return srv, keys, jobs


def open_until_accepted(srv, job_id: str, key: str, timeout: float = 10.0) -> RawRequest:
    """A stream, opened again after each 429 until one is accepted (slots are given back asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        request = stream(srv, job_id, key)
        status = request.status(timeout=5)
        if status == 200:
            return request
        request.close()
        assert status == 429 and time.monotonic() < deadline, f"no stream accepted within {timeout}s (last: {status})"
        time.sleep(0.1)


def long_poll_holding_the_slot(srv, job_id: str, key: str, timeout: float = 10.0) -> RawRequest:
    """A long-poll known to hold its owner's only slot: a stream opened while it waits is refused."""
    deadline = time.monotonic() + timeout
    while True:
        waiting = long_poll(srv, job_id, key)
        if waiting.status(timeout=0.3) is None:  # not refused (yet): probe
            probe = stream(srv, job_id, key)
            refused = probe.status(timeout=5) == 429
            probe.close()
            if refused and waiting.status(timeout=0) is None:
                return waiting
        waiting.close()  # the probe came first, or an earlier probe's slot was not given back yet: again
        assert time.monotonic() < deadline, "no long-poll took the slot"


def assert_quiet_log(srv) -> None:
    log = srv.read_log()
    for noise in ("Traceback", "QueuePool", "ERROR", "Exception in ASGI"):
        assert noise not in log, log[-3000:]


def test_an_owner_past_its_cap_gets_429_while_other_owners_stay_fast(make_server):
    srv, keys, jobs = start(make_server, MAX_WATCHERS_PER_OWNER="5")
    alice, bob = keys["alice"], keys["bob"]
    # 8 watchers of alice's queued job, long-polls and streams mixed: 5 fit under her cap
    watchers = [opener(srv, jobs["alice"], alice) for _ in range(4) for opener in (long_poll, stream)]
    streams = set(range(1, 8, 2))
    deadline, answered = time.monotonic() + 15, {}
    while sum(s == 429 for s in answered.values()) < 3 or not streams <= answered.keys():
        assert time.monotonic() < deadline, answered
        for i, request in enumerate(watchers):
            if i not in answered and (status := request.status(timeout=0.05)) is not None:
                answered[i] = status
    refused = [watchers[i] for i, status in answered.items() if status == 429]
    assert len(refused) == 3 and set(answered.values()) <= {200, 429}, answered  # never a 500
    waiting = [watchers[i] for i in range(0, 8, 2) if i not in answered]
    assert len(waiting) + sum(s == 200 for s in answered.values()) == 5
    assert all(request.status(timeout=0.2) is None for request in waiting)  # accepted long-polls wait
    for request in refused:
        assert int(request.headers()["retry-after"]) >= 1
        assert "FITSERVE_MAX_WATCHERS_PER_OWNER" in json.loads(request.body())["detail"]
    assert stream(srv, jobs["alice"], alice).status(timeout=5) == 429  # still at her cap

    # meanwhile another owner, and /healthz, are served at once
    for path, key in ((f"/v1/jobs/{jobs['bob']}", bob), ("/healthz", None), (f"/v1/jobs/{jobs['bob']}/metrics", bob)):
        status, seconds = timed_get(srv, path, key)
        assert status == 200 and seconds < QUICK_SECONDS, (path, status, seconds)
    bobs = stream(srv, jobs["bob"], bob)
    assert bobs.status(timeout=QUICK_SECONDS) == 200

    # once alice's clients are gone, long-polls and streams alike, her 5 slots are free again
    for request in watchers:
        request.close()
    reopened = [open_until_accepted(srv, jobs["alice"], alice) for _ in range(5)]
    assert stream(srv, jobs["alice"], alice).status(timeout=5) == 429
    for request in [*reopened, bobs]:
        request.close()
    assert_quiet_log(srv)


def test_a_long_poll_holds_a_slot_until_it_answers_or_its_client_goes(make_server):
    srv, keys, jobs = start(make_server, MAX_WATCHERS_PER_OWNER="1")
    alice = keys["alice"]
    waiting = long_poll_holding_the_slot(srv, jobs["alice"], alice)
    assert stream(srv, jobs["alice"], alice).status(timeout=5) == 429
    waiting.close()
    open_until_accepted(srv, jobs["alice"], alice).close()  # well before the long-poll's 60 s
    # a finished job: the long-poll answers at once without a slot, and streams end after its status
    assert (
        srv.client.post(f"/v1/jobs/{jobs['alice']}/cancel", headers={"Authorization": f"Bearer {alice}"}).status_code
        == 200
    )
    for _ in range(10):  # each gives its slot back once it has ended (asynchronously: the client may see the end first)
        ended = open_until_accepted(srv, jobs["alice"], alice)
        assert ended.receive(b"\r\n0\r\n\r\n", timeout=10) and b'"status":"cancelled"' in ended.body()
        ended.close()
    assert long_poll(srv, jobs["alice"], alice).status(timeout=QUICK_SECONDS) == 200
    assert_quiet_log(srv)


def database_connections(srv) -> int:
    """The API process's open connections to its database: pg_stat_activity, or the SQLite file's descriptors."""
    if srv.db_url.startswith("postgresql"):
        sql = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        return srv.query(sql)[0][0]
    database = Path(srv.db_url.removeprefix("sqlite:///")).resolve()
    fds = Path(f"/proc/{srv.proc.pid}/fd")
    count = 0
    for fd in fds.iterdir():
        try:
            count += Path(os.readlink(fd)) == database
        except OSError:
            pass  # closed meanwhile
    return count


def test_thirty_watchers_share_a_pool_of_two_connections(make_server):
    pool = 2
    srv, keys, jobs = start(
        make_server,
        MAX_WATCHERS_PER_OWNER="30",
        DB_POOL_SIZE=str(pool),
        DB_MAX_OVERFLOW="0",
        DB_POOL_TIMEOUT_SECONDS="2",
    )
    alice, bob = keys["alice"], keys["bob"]
    streams = [stream(srv, jobs["alice"], alice) for _ in range(15)]
    polls = [long_poll(srv, jobs["alice"], alice, wait=30) for _ in range(15)]
    assert [request.status(timeout=10) for request in streams] == [200] * 15
    peak = 0
    for _ in range(10):  # over a second and more of the feed's polling, the 30 waiting
        peak = max(peak, database_connections(srv))
        time.sleep(0.1)
    assert 1 <= peak <= pool
    for path, key in ((f"/v1/jobs/{jobs['bob']}", bob), ("/healthz", None)):
        status, seconds = timed_get(srv, path, key)
        assert status == 200 and seconds < QUICK_SECONDS, (path, status, seconds)
    assert all(request.status(timeout=0) is None for request in polls)  # all 15 still waiting

    # one change wakes all 30, and each reads it through the same two connections
    assert (
        srv.client.post(f"/v1/jobs/{jobs['alice']}/cancel", headers={"Authorization": f"Bearer {alice}"}).status_code
        == 200
    )
    for request in polls:
        assert request.status(timeout=10) == 200
        assert request.receive(b"}", timeout=5) and json.loads(request.body())["status"] == "cancelled"
    for request in streams:
        assert request.receive(b"\r\n0\r\n\r\n", timeout=10) and b'"status":"cancelled"' in request.body()
    assert database_connections(srv) <= pool
    for request in [*streams, *polls]:
        request.close()
    assert_quiet_log(srv)


@pytest.mark.parametrize(
    "value", ["9" * 400, "-1", "2147483649", "\xb2", "\xff", "1.5", ""], ids=lambda v: repr(v)[:12]
)
def test_a_bad_last_event_id_is_a_422_naming_the_header(server, value):
    job = server.submit(tiny_regression(epochs=5))
    response = server.client.get(f"/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": value.encode("latin-1")})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["header", "Last-Event-ID"]


def test_the_largest_last_event_ids_are_answered_not_a_500(served):
    job = served.train(tiny_regression(epochs=5))
    for value in (2**31 - 1, 2**31):  # the largest step a column holds, and one past it (a closing event's id)
        response = served.client.get(f"/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": str(value)})
        assert response.status_code == 204  # past the end of a finished job's stream
    running = served.submit(
        long_job()
    )
    headers = {"Last-Event-ID": str(2**31)}  # compared with the step columns as 2^31-1: PostgreSQL refuses 2^31
    with served.client.stream("GET", f"/v1/jobs/{running['id']}/events", headers=headers, timeout=30) as response:
        assert response.status_code == 200
        opening = list(itertools.takewhile(bool, response.iter_lines()))
    served.client.post(f"/v1/jobs/{running['id']}/cancel")
    assert opening[:2] == ["event: status", f"id: {2**31}"]
