"""The event stream as standard SSE clients read it: httpx-sse, sseclient-py and node's `eventsource`.

The WHATWG EventSource standard reconnects whenever a stream ends, sending the last event id it saw, and
stops only on an answer other than 200 (204 No Content is the one meant for it): a finished job's stream
must end that way, not replay its last event forever.
"""

import json
import re
import shutil
import socket
import struct
import subprocess
import time

import httpx
import pytest
import sseclient
from httpx_sse import connect_sse

from tests.conftest import train_beside
from tests.specs import tiny_regression


def events_url(served, job_id: str) -> str:
    return f"{served.client.base_url}/v1/jobs/{job_id}/events"


def follow_like_eventsource(served, job_id: str, last_event_id: str | None = None, max_opens: int = 5):
    """What an EventSource does: read the stream, reconnect with Last-Event-ID when it ends, stop on a non-200.

    Returns (the status code of each open, every event), at most `max_opens` opens.
    """
    codes, events = [], []
    with httpx.Client(timeout=30) as client:
        while len(codes) < max_opens:
            headers = {} if last_event_id is None else {"Last-Event-ID": last_event_id}
            with connect_sse(client, "GET", events_url(served, job_id), headers=headers) as source:
                codes.append(source.response.status_code)
                if source.response.status_code != 200:
                    return codes, events
                for event in source.iter_sse():
                    events.append(event)
                    last_event_id = event.id or last_event_id
    return codes, events


def test_a_finished_jobs_stream_opens_and_closes_with_its_status_and_its_reconnect_is_204(served):
    job = served.train(tiny_regression(epochs=40))
    codes, events = follow_like_eventsource(served, job["id"])
    assert codes == [200, 204]  # the stream, then the reconnect the standard makes: told to stop
    assert events[0].event == "status" and events[0].json()["status"] == "succeeded"
    assert [int(e.id) for e in events if e.event == "metric"] == list(range(1, 41))
    assert events[-1].event == "status" and events[-1].json()["status"] == "succeeded" and events[-1].id == "41"

    # a client that saw the last point but lost the closing event gets that event (then stops); past it, 204
    codes, events = follow_like_eventsource(served, job["id"], last_event_id="40")
    assert codes == [200, 204] and [(e.event, e.id) for e in events] == [("status", "41")]
    for seen in ("41", "42"):
        assert follow_like_eventsource(served, job["id"], last_event_id=seen) == ([204], [])


def test_a_job_with_no_points_still_opens_with_status_and_ends(make_server):
    srv = make_server(workers=0).start()
    job = srv.submit(tiny_regression())
    assert srv.client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200
    codes, events = follow_like_eventsource(srv, job["id"])
    assert codes == [200, 204]
    assert [(e.event, e.id, e.json()["status"]) for e in events] == [("status", "1", "cancelled")]


def test_sseclient_reads_a_live_stream_from_its_opening_status_to_its_closing_one(served):
    job = served.submit(tiny_regression(epochs=120))
    with served.client.stream("GET", f"/v1/jobs/{job['id']}/events", timeout=60) as response:
        assert response.status_code == 200
        events = list(sseclient.SSEClient(response.iter_bytes()).events())
    statuses = [json.loads(e.data)["status"] for e in events if e.event == "status"]
    assert events[0].event == "status" and statuses[-1] == "succeeded" and events[-1].event == "status"
    assert [int(e.id) for e in events if e.event == "metric"] == list(range(1, 121))
    ids = [int(e.id) for e in events]
    assert ids == sorted(ids) and ids[-1] == 121


NODE_CLIENT = """
import { EventSource } from "eventsource";
const [url, seconds] = process.argv.slice(2);
const seen = { opens: 0, events: [], closed: false };
const es = new EventSource(url);
es.onopen = () => { seen.opens += 1; };
for (const kind of ["status", "metric"]) es.addEventListener(kind, (e) => seen.events.push([kind, e.lastEventId]));
es.onerror = () => {
  if (es.readyState === EventSource.CLOSED) { seen.closed = true; finish(); }
};
function finish() { es.close(); console.log(JSON.stringify(seen)); process.exit(0); }
setTimeout(finish, Number(seconds) * 1000);
"""


@pytest.fixture(scope="module")
def node_eventsource(tmp_path_factory):
    """A folder with npm's `eventsource` installed, or a skip where node or the package cannot be had."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not on this machine")
    folder = tmp_path_factory.mktemp("node-eventsource")
    try:
        done = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--silent", "eventsource@4"],
            check=False,
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=120,
        )
    except subprocess.TimeoutExpired:
        pytest.skip("npm install eventsource took over 120 s")
    if done.returncode != 0:
        pytest.skip(f"npm install eventsource failed: {done.stderr[-500:]}")
    (folder / "client.mjs").write_text(NODE_CLIENT)
    return folder


def test_node_eventsource_reads_a_finished_job_once_and_stops(served, node_eventsource):
    job = served.train(tiny_regression(epochs=30))
    url = events_url(served, job["id"])
    started = time.monotonic()
    done = subprocess.run(
        ["node", "client.mjs", url, "20"], check=False, cwd=node_eventsource, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    # closed by the server's 204 within its reconnection delay (3 s), not by the 20 s bound
    assert seen["closed"] and time.monotonic() - started < 15
    assert seen["opens"] == 1  # the 204 reconnect is not an open
    assert seen["events"][0] == ["status", "0"] and seen["events"][-1] == ["status", "31"]
    assert [e for e in seen["events"] if e[0] == "metric"] == [["metric", str(s)] for s in range(1, 31)]
    requests = [line for line in served.read_log().splitlines() if f"/v1/jobs/{job['id']}/events" in line]
    # uvicorn's access log: two requests in all
    assert [re.search(r'HTTP/1.1" (\d{3})', line).group(1) for line in requests] == ["200", "204"]


def leave_early(port: int, path: str, read_bytes: int) -> int:
    """Read the start of a response, then drop the connection with a reset (as a killed client would)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        received = b""
        while len(received) < read_bytes:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return len(received)


def test_clients_leaving_a_long_stream_early_are_not_logged(make_server):
    srv = make_server(workers=0, FITSERVE_MAX_WATCHERS_PER_OWNER="1").start()
    spec = tiny_regression(epochs=10_000, data={"source": "synthetic", "generator": "linear", "n": 8})
    job, = train_beside(srv, spec, timeout=300)
    assert job["status"] == "succeeded" and job["metrics"]["step"] == 10_000
    port = srv.client.base_url.port
    for _ in range(3):
        assert leave_early(port, f"/v1/jobs/{job['id']}/events", read_bytes=4096) >= 4096
        # with one watcher per caller, the next stream is refused (429) until the dropped one has ended
        deadline = time.monotonic() + 30
        while (
            code := srv.client.get(f"/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": "10001"}).status_code
        ) == 429:
            assert time.monotonic() < deadline, "the dropped stream still holds its watcher slot"
            time.sleep(0.05)
        assert code == 204
    log = srv.read_log()
    assert "socket.send() raised exception" not in log
    assert "Traceback" not in log


def test_fitserve_client_reads_a_finished_job_and_stops_at_the_204(served):
    from fitserve.client import Client

    job = served.train(tiny_regression(epochs=20))
    with Client(str(served.client.base_url)) as fs:
        events = list(fs.events(job["id"]))
        assert [e.event for e in events] == ["status"] + ["metric"] * 20 + ["status"]
        assert events[-1].data.status == "succeeded" and events[-1].id == 21
        assert list(fs.events(job["id"], last_event_id=20)) == [events[-1]]  # the lost closing event, again
        assert list(fs.events(job["id"], last_event_id=21)) == []  # 204: the stream is over, no error
