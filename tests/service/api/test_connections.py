"""Bounded connections, over real sockets to a served process: header bytes, header time, keep-alive, open count
(in all, and per client address: loopback's other addresses, 127.0.0.2 and up, are other clients here)."""

import socket
import threading
import time

import pytest

from tests.conftest import module_server, processes_only, wait_until

MAX_HEADER = 16 * 1024
HEADER_TIMEOUT = 2.0
KEEP_ALIVE = 1.0
MAX_CONNECTIONS = 20
MAX_PER_ADDRESS = 8
PROXY = "127.0.0.7"  # named in FITSERVE_FORWARDED_ALLOW_IPS: its connections carry many clients
BODY_TIMEOUT = 1.0


# Connections, headers and bodies over real sockets are the subject; no statement of theirs depends on the back end.
pytestmark = processes_only


@pytest.fixture(scope="module")
def bounded(tmp_path_factory, databases):
    srv = module_server(
        tmp_path_factory, databases, "connections",
        FITSERVE_MAX_HEADER_BYTES=str(MAX_HEADER),
        FITSERVE_HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT),
        FITSERVE_KEEP_ALIVE_SECONDS=str(KEEP_ALIVE),
        FITSERVE_MAX_CONNECTIONS=str(MAX_CONNECTIONS),
        FITSERVE_MAX_CONNECTIONS_PER_ADDRESS=str(MAX_PER_ADDRESS),
        FITSERVE_FORWARDED_ALLOW_IPS=PROXY,
        FITSERVE_BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT),
    ).start()
    yield srv
    srv.stop()
    databases.drop(srv.db_url)


def connect(srv, timeout: float = 10, source: str | None = None) -> socket.socket:
    """A connection to `srv`, from loopback address `source` (by default the one the kernel picks, 127.0.0.1)."""
    address = (srv.client.base_url.host, srv.client.base_url.port)
    return socket.create_connection(address, timeout=timeout, source_address=(source, 0) if source else None)


def first_answers(sockets: list[socket.socket], wait: float = 0.3) -> list[bytes]:
    """What each connection was sent at once (b"" where nothing came within `wait`)."""
    answers = []
    for sock in sockets:
        sock.settimeout(wait)
        try:
            answers.append(sock.recv(4096))
        except TimeoutError:
            answers.append(b"")
    return answers


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a socket timeout fails the test)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def log_has(srv, text: str) -> bool:
    return text in srv.read_log()


def test_headers_over_the_limit_are_431_and_the_connection_closed(bounded):
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (MAX_HEADER + 1024) + b"\r\n\r\n"
    with connect(bounded) as sock:
        sock.sendall(head)
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert b"FITSERVE_MAX_HEADER_BYTES" in answer
    wait_until(lambda: log_has(bounded, "limit=header_bytes"), 10, "a log line for the header limit")
    # a head just under the limit is served
    small = bounded.client.get("/healthz", headers={"X-Big": "a" * (MAX_HEADER // 2)})
    assert small.status_code == 200


def test_a_128mb_header_is_cut_off_early_and_others_are_served_meanwhile(bounded):
    chunk, sent, worst = b"a" * (1024 * 1024), 0, 0.0
    stop = threading.Event()

    def poll_health() -> None:
        nonlocal worst
        while not stop.is_set():
            started = time.monotonic()
            assert bounded.client.get("/healthz").status_code == 200
            worst = max(worst, time.monotonic() - started)

    poller = threading.Thread(target=poll_health)
    poller.start()
    started = time.monotonic()
    try:
        with connect(bounded) as sock:
            sock.sendall(b"GET /v1/jobs HTTP/1.1\r\nHost: x\r\nX-Big: ")
            try:
                while sent < 128 * chunk.__len__():
                    sock.sendall(chunk)
                    sent += len(chunk)
            except OSError:  # the server closed the connection: what this test wants
                pass
        took = time.monotonic() - started
    finally:
        stop.set()
        poller.join()
    assert sent < 16 * len(chunk), f"the server read {sent} bytes of one header"
    assert took < 5, took
    assert worst < 1.0, f"/healthz took {worst:.2f} s during the attack"


def test_a_client_dribbling_header_lines_is_closed_after_the_header_timeout(bounded):
    with connect(bounded) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        sock.settimeout(0.2)
        started, answer = time.monotonic(), None
        deadline = started + HEADER_TIMEOUT + 8
        while answer is None and time.monotonic() < deadline:
            try:
                sock.sendall(b"X-Slow: 1\r\n")
                answer = sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                answer = b""
        took = time.monotonic() - started
    assert answer is not None, "the connection was still open"
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert took >= HEADER_TIMEOUT - 0.1, took
    wait_until(lambda: log_has(bounded, "limit=header_timeout"), 10, "a log line for the header timeout")


def test_a_silent_connection_is_closed_after_the_header_timeout(bounded):
    with connect(bounded, timeout=HEADER_TIMEOUT + 8) as sock:
        started = time.monotonic()
        answer = read_until_closed(sock)
        took = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert HEADER_TIMEOUT - 0.1 <= took < HEADER_TIMEOUT + 5, took


def test_an_idle_kept_alive_connection_is_closed_after_the_keep_alive_timeout(bounded):
    with connect(bounded, timeout=KEEP_ALIVE + 3) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        started = time.monotonic()
        answer = read_until_closed(sock)  # the response, then the close
        took = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert took < KEEP_ALIVE + 2.5, took


def test_connections_past_the_cap_are_refused_with_503_until_some_close(bounded):
    # from four addresses, none past its own share: the cap on all connections is what trips
    sockets = [connect(bounded, timeout=5, source=f"127.0.0.{2 + i % 4}") for i in range(MAX_CONNECTIONS + 5)]
    try:
        refused = [data for data in first_answers(sockets) if data.startswith(b"HTTP/1.1 503")]
        assert refused, "no connection past the cap was refused"
        assert len(sockets) - len(refused) <= MAX_CONNECTIONS
        assert b"FITSERVE_MAX_CONNECTIONS" in refused[0]
    finally:
        for sock in sockets:
            sock.close()
    wait_until(lambda: bounded.client.get("/healthz").status_code == 200, 10, "/healthz served again")
    wait_until(lambda: log_has(bounded, "limit=connections "), 10, "a log line for the connection cap")


def test_one_address_past_its_share_is_refused_429_while_others_and_proxies_are_served(bounded):
    """One client (or a crowd behind one NAT) cannot take every connection: past FITSERVE_MAX_CONNECTIONS_PER_ADDRESS
    its new ones are 429 and closed, while another address is served, and a proxy named in
    FITSERVE_FORWARDED_ALLOW_IPS is not held to one client's share."""
    mine = [connect(bounded, timeout=5, source="127.0.0.6") for _ in range(MAX_PER_ADDRESS + 3)]
    try:
        answers = first_answers(mine)
        refused = [data for data in answers if data.startswith(b"HTTP/1.1 429")]
        assert len(refused) == 3, answers
        assert b"FITSERVE_MAX_CONNECTIONS_PER_ADDRESS" in refused[0] and b"retry-after: 1" in refused[0].lower()
        other = connect(bounded, timeout=5, source="127.0.0.5")
        other.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert read_until_closed(other).startswith(b"HTTP/1.1 200")
        proxied = [connect(bounded, timeout=5, source=PROXY) for _ in range(MAX_PER_ADDRESS + 3)]
        try:
            assert not any(data.startswith(b"HTTP/1.1 429") for data in first_answers(proxied, wait=0.1))
        finally:
            for sock in proxied:
                sock.close()
    finally:
        for sock in mine:
            sock.close()
    wait_until(lambda: log_has(bounded, "limit=connections_per_address"), 10, "a log line for the per-address cap")
    mine = [connect(bounded, timeout=5, source="127.0.0.6") for _ in range(2)]  # its share is back once they closed
    try:
        wait_until(lambda: not any(a.startswith(b"HTTP/1.1 429") for a in first_answers(mine, wait=0.05)), 10,
                   "the address served again")
    finally:
        for sock in mine:
            sock.close()


def post_head(path: str, content_type: str, length: int) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


@pytest.mark.parametrize("path, content_type", [
    ("/v1/jobs", "application/json"),
    ("/v1/datasets", "multipart/form-data; boundary=b"),  # an upload, read by the app as a stream
])
def test_a_body_that_stops_arriving_is_408_and_the_connection_closed(bounded, path, content_type):
    with connect(bounded) as sock:
        sock.sendall(post_head(path, content_type, 1000) + b"--b\r\n" + b"x" * 10)
        started = time.monotonic()
        answer = read_until_closed(sock)
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
    assert b"FITSERVE_BODY_TIMEOUT_SECONDS" in answer
    assert BODY_TIMEOUT <= waited < BODY_TIMEOUT + 5
    assert bounded.client.get("/healthz").status_code == 200


def test_a_body_sent_slowly_but_steadily_is_read_whole(bounded):
    """The limit is on silence, not on the whole body: pieces 0.6 s apart (over a second in all) are read."""
    body = b'{"model": {"kind": "linear", "in_features": 1, "out_features": 1}}'
    pieces = [body[:20], body[20:40], body[40:]]
    with connect(bounded) as sock:
        sock.sendall(post_head("/v1/jobs", "application/json", len(body)))
        for piece in pieces:
            time.sleep(BODY_TIMEOUT * 0.6)
            sock.sendall(piece)
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 422"), answer[:300]  # read whole, then found to lack its task, data, ...
    assert b"FITSERVE_BODY_TIMEOUT_SECONDS" not in answer
