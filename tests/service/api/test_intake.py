"""Before the body: unauthenticated bodies are refused unread, failed keys are rate-limited per address,
JSON bodies are capped in size and nesting."""

import json
import socket
import statistics
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, as_, module_server, processes_only
from tests.specs import tiny_regression

FAILURES, WINDOW = 5, 3.0
RSS_GROWTH_BOUND = 60 * 2**20  # the API's peak resident memory may grow this much during an attack
# seconds another owner's GET and /healthz may take while an attack runs: the median of them, and (one call stalled by
# a busy machine's scheduler, not by the attack) the slowest; an API that read the attackers' bodies took 30 s
LATENCY_BOUND, STALL_BOUND = 1.0, 5.0


# The intake over real sockets and the API process's memory is the subject: the key lookups it makes run on every
# back end in-process (test_auth.py), so this module runs on one.
pytestmark = processes_only


@pytest.fixture(scope="module")
def keyed(tmp_path_factory, databases):
    srv = module_server(
        tmp_path_factory, databases, "intake",
        FITSERVE_AUTH_FAILURES_PER_WINDOW=str(FAILURES),
        FITSERVE_AUTH_FAILURE_WINDOW_SECONDS=str(WINDOW),
        FITSERVE_MAX_JSON_BYTES=str(2 * 2**20),
    )
    srv.keys = {"alice": srv.create_key("alice"), "bob": srv.create_key("bob")}
    yield srv.start()
    srv.stop()


def from_address(srv: Server, address: str, who: str) -> httpx.Client:
    """A client of `who` whose requests come from another loopback address (the limits are per address)."""
    transport = httpx.HTTPTransport(local_address=address)
    headers = {"Authorization": f"Bearer {srv.keys[who]}"}
    return httpx.Client(base_url=srv.client.base_url, transport=transport, headers=headers, timeout=30)


def reset_peak_rss(pid: int) -> int:
    """Start counting the process's peak resident memory afresh; returns its resident memory now."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return proc_status_bytes(pid, "VmRSS")


def proc_status_bytes(pid: int, field: str) -> int:
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith(field + ":"))
    return int(line.split()[1]) * 1024


def send_unauthenticated_body(srv: Server, declared: int, sent: int, source: str) -> bytes:
    """POST /v1/jobs without a key from loopback address `source`, declaring `declared` bytes but sending only
    `sent`; returns the answer. Each test fails keys from an address of its own: the others never wait out a window."""
    head = b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % declared
    address = (srv.client.base_url.host, srv.client.base_url.port)
    with socket.create_connection(address, timeout=10, source_address=(source, 0)) as sock:
        sock.sendall(head + b"[" * sent)
        return sock.recv(4096)


class Watcher:
    """Times another owner's GET and /healthz, from another address, while an attack runs."""

    def __init__(self, client: httpx.Client):
        self.client, self.latencies, self.codes = client, [], set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run)

    def run(self) -> None:
        while not self.stop.is_set():
            for path in ("/healthz", "/v1/jobs"):
                started = time.monotonic()
                self.codes.add(self.client.get(path).status_code)
                self.latencies.append(time.monotonic() - started)
            time.sleep(0.05)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def test_an_unauthenticated_57mb_body_is_401_before_it_is_read(keyed):
    started = time.monotonic()
    # 64 KiB of a declared 57 MB: an app that read the body would wait for the rest, not answer
    answer = send_unauthenticated_body(keyed, 57_000_000, 65536, "127.0.0.7")
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert time.monotonic() - started < 2


def test_a_flood_of_unauthenticated_bodies_costs_no_memory_and_others_stay_fast(keyed):
    baseline = reset_peak_rss(keyed.proc.pid)
    answers: list[bytes] = []

    def attack() -> None:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            answers.append(send_unauthenticated_body(keyed, 57_000_000, 65536, "127.0.0.8")[:12])

    with from_address(keyed, "127.0.0.2", "bob") as bob, Watcher(bob) as watcher:
        attackers = [threading.Thread(target=attack) for _ in range(4)]
        for thread in attackers:
            thread.start()
        for thread in attackers:
            thread.join()
    assert answers and set(answers) <= {b"HTTP/1.1 401", b"HTTP/1.1 429"}, set(answers)
    assert b"HTTP/1.1 429" in answers  # the address ran out of failures
    peak = proc_status_bytes(keyed.proc.pid, "VmHWM")
    assert peak - baseline < RSS_GROWTH_BOUND, (peak - baseline) / 2**20
    assert watcher.codes == {200}
    assert statistics.median(watcher.latencies) < LATENCY_BOUND and max(watcher.latencies) < STALL_BOUND, \
        sorted(watcher.latencies)[-5:]


def forged_key(srv: Server, who: str) -> dict:
    return {"Authorization": f"Bearer fs_{srv.keys[who].split('_')[1]}_{'x' * 43}"}


def test_a_burst_of_bad_keys_is_429_for_the_guesser_while_right_keys_from_its_address_are_served(keyed):
    attacker = from_address(keyed, "127.0.0.3", "alice")
    forged = forged_key(keyed, "alice")
    codes = [attacker.get("/v1/jobs", headers=forged).status_code for _ in range(FAILURES + 3)]
    assert codes == [401] * FAILURES + [429] * 3
    refused = attacker.get("/v1/jobs", headers=forged)
    assert refused.status_code == 429 and "FITSERVE_AUTH_FAILURES_PER_WINDOW" in refused.json()["detail"]
    assert 1 <= int(refused.headers["retry-after"]) <= WINDOW + 1
    # alice and bob behind the same address (a NAT, a proxy) are never locked out by the stranger's guesses
    assert attacker.get("/v1/jobs").status_code == 200
    with from_address(keyed, "127.0.0.3", "bob") as neighbour:
        assert neighbour.get("/v1/jobs").status_code == 200
    # each guess is counted, so only a guesser that waits as told is heard again
    deadline = time.monotonic() + 2 * WINDOW + 2
    while (answer := attacker.get("/v1/jobs", headers=forged)).status_code == 429:
        assert time.monotonic() < deadline, "the guesser is still refused after waiting as told"
        time.sleep(float(answer.headers["retry-after"]))
    assert answer.status_code == 401
    attacker.close()


def test_x_forwarded_for_from_loopback_is_not_believed_by_default(keyed):
    forged = forged_key(keyed, "alice")
    codes = [  # from 127.0.0.1, which uvicorn alone would trust as a proxy
        keyed.client.get("/v1/jobs", headers={**forged, "X-Forwarded-For": f"198.51.100.{i}"}).status_code
        for i in range(FAILURES + 2)
    ]
    assert codes == [401] * FAILURES + [429] * 2  # one address, whatever it claims to forward for
    assert keyed.client.get("/v1/jobs", headers=as_(keyed, "bob")).status_code == 200


def test_x_forwarded_for_is_believed_from_the_proxies_named(make_server):
    srv = make_server(
        workers=0, FITSERVE_FORWARDED_ALLOW_IPS="127.0.0.11", FITSERVE_AUTH_FAILURES_PER_WINDOW=str(FAILURES),
        FITSERVE_AUTH_FAILURE_WINDOW_SECONDS="60",
    )
    srv.keys = {"alice": srv.create_key("alice")}
    srv.start()
    forged = forged_key(srv, "alice")
    with from_address(srv, "127.0.0.11", "alice") as proxy, from_address(srv, "127.0.0.12", "alice") as stranger:
        behind = {**forged, "X-Forwarded-For": "203.0.113.9"}
        codes = [proxy.get("/v1/jobs", headers=behind).status_code for _ in range(FAILURES + 1)]
        assert codes == [401] * FAILURES + [429]
        assert "203.0.113.9" in proxy.get("/v1/jobs", headers=behind).json()["detail"]
        # another client behind the proxy is its own address; a stranger's claim to be 203.0.113.9 is not believed
        assert proxy.get("/v1/jobs", headers={**forged, "X-Forwarded-For": "203.0.113.10"}).status_code == 401
        assert stranger.get("/v1/jobs", headers={**forged, "X-Forwarded-For": "203.0.113.9"}).status_code == 401


def test_a_body_sent_slowly_to_a_route_that_takes_none_is_413_at_once_and_closed(keyed):
    """/healthz and the other open routes take no body: one is refused unread, so a slow or large body can hold
    neither the connection nor memory (it was read whole, up to FITSERVE_MAX_JSON_BYTES, at the client's pace)."""
    head = b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n"
    address = (keyed.client.base_url.host, keyed.client.base_url.port)
    with socket.create_connection(address, timeout=10, source_address=("127.0.0.13", 0)) as sock:
        sock.sendall(head + b"x")
        started, answer = time.monotonic(), b""
        while chunk := sock.recv(4096):
            answer += chunk
        took = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 413") and b"takes no request body" in answer, answer[:200]
    assert took < 5, took
    assert keyed.client.post("/healthz").status_code == 405  # no body: the method is still what is wrong


def nested(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


def test_deeply_nested_json_is_422_naming_the_limit(keyed):
    with from_address(keyed, "127.0.0.5", "alice") as alice:
        spec = tiny_regression(data={"source": "inline", "x": "DEEP", "y": [1.0]})
        deep = json.dumps(spec).replace('"DEEP"', nested(900))
        response = alice.post("/v1/jobs", content=deep, headers={"Content-Type": "application/json"})
        assert response.status_code == 422, response.text
        assert "FITSERVE_MAX_JSON_DEPTH" in response.json()["detail"][0]["msg"]
        assert alice.post("/v1/jobs", json=tiny_regression()).status_code == 201  # shallow JSON still works


def test_a_json_body_over_its_cap_is_413_while_uploads_have_their_own(keyed):
    with from_address(keyed, "127.0.0.6", "alice") as alice:
        big = tiny_regression(data={"source": "inline", "x": [0.5] * 600_000, "y": [0.5] * 600_000})
        response = alice.post("/v1/jobs", json=big)
        assert response.status_code == 413 and "FITSERVE_MAX_JSON_BYTES" in response.json()["detail"]
        csv = b"a,y\n" + b"0.25,0.5\n" * 300_000  # 2.7 MB: over the JSON cap, under the upload cap
        upload = alice.post("/v1/datasets", files={"file": ("d.csv", csv)}, data={"target": "y"})
        assert upload.status_code == 201, upload.text
