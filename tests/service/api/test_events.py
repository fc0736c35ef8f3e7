"""Live progress without polling: the Server-Sent Events stream and the long-poll, over real HTTP."""

import json
import threading
import time

import pytest

from tests.conftest import module_server
from tests.harness.calls import wait_until
from tests.harness.inprocess import App
from tests.specs import long_job, tiny_regression


def read_events(client, job_id: str, on_open=lambda: None, **headers) -> list[dict]:
    """The whole stream, parsed here by hand: [{event, id, data}], comments skipped; `on_open()` is called once
    the first event has arrived (the stream is open and watching)."""
    text = ""
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for chunk in response.iter_text():
            opened = "\n\n" in text
            text += chunk
            if not opened and "\n\n" in text:
                on_open()
    events = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":"))
        if fields:
            events.append({"event": fields["event"], "id": int(fields["id"]), "data": json.loads(fields["data"])})
    return events


@pytest.fixture(scope="module")
def idle(tmp_path_factory, databases):
    """A served process without workers, for streams of queued jobs: each test watches a job of its own, and none
    leaves one queued."""
    srv = module_server(tmp_path_factory, databases, "events").start()
    yield srv
    srv.stop()
    databases.drop(srv.db_url)


def test_stream_sends_status_changes_and_every_point_then_ends(idle, tmp_path):
    # the stream opens on a queued job, with no worker yet: a tiny job could otherwise end before it opens
    job = idle.submit(tiny_regression(epochs=150))
    # once the stream is open, workers of their own on the same database (in this process) take the job
    workers = App(tmp_path / "workers.db", workers=1, db_url=idle.db_url)
    try:
        events = read_events(idle.client, job["id"], on_open=workers.start)
    finally:
        workers.stop()
    points = [e for e in events if e["event"] == "metric"]
    statuses = [e for e in events if e["event"] == "status"]
    assert [e["id"] for e in points] == list(range(1, 151)) == [e["data"]["step"] for e in points]
    assert statuses[0]["data"]["status"] == "queued"  # then what it saw change: a 150-epoch job may run unseen
    assert events[-1] == statuses[-1] and statuses[-1]["data"]["status"] == "succeeded"
    assert statuses[-1]["id"] == 151  # one past the last step: a reconnect with it is told to stop (204)
    assert len({s["data"]["status"] for s in statuses}) == len(statuses)  # only changes are sent


def test_last_event_id_resumes_after_that_step(served):
    job = served.train(tiny_regression(epochs=100))
    events = read_events(served.client, job["id"], **{"Last-Event-ID": "60"})
    assert [e["id"] for e in events if e["event"] == "metric"] == list(range(61, 101))
    # the job as it is when the stream opens, and the closing event after the last point
    assert [(e["event"], e["data"]["status"]) for e in events if e["event"] == "status"] == [("status", "succeeded")] * 2
    assert events[0]["event"] == "status" and events[0]["id"] == 60


def test_stream_of_a_queued_job_ends_once_it_is_cancelled(idle):
    job = idle.submit(tiny_regression())
    events = read_events(idle.client, job["id"], on_open=lambda: idle.client.post(f"/v1/jobs/{job['id']}/cancel"))
    assert [(e["event"], e["data"]["status"]) for e in events] == [("status", "queued"), ("status", "cancelled")]


def test_stream_errors_come_before_it_starts(served):
    assert served.client.get("/v1/jobs/nope/events").status_code == 404
    job = served.submit(tiny_regression(epochs=5))
    response = served.client.get(f"/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": "abc"})
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["header", "Last-Event-ID"]


def test_long_poll_answers_as_soon_as_the_job_changes(make_app):
    srv = make_app(workers=0).start()
    job = srv.submit(tiny_regression())
    started = time.monotonic()
    unchanged = srv.client.get(f"/v1/jobs/{job['id']}", params={"wait": 1}).json()
    assert unchanged["status"] == "queued" and time.monotonic() - started >= 1.0
    answers = []
    poll = threading.Thread(
        target=lambda: answers.append(srv.client.get(f"/v1/jobs/{job['id']}", params={"wait": 30}).json()))
    poll.start()
    feed = srv.client.app.state.watchers.feed
    wait_until(lambda: job["id"] in feed.jobs, 10, "the long-poll watching the job")  # it waits: now change the job
    cancelled = time.monotonic()
    assert srv.client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200
    poll.join(10)
    assert answers and answers[0]["status"] == "cancelled" and time.monotonic() - cancelled < 5, answers
    started = time.monotonic()
    final = srv.client.get(f"/v1/jobs/{job['id']}", params={"wait": 30}).json()
    assert final["status"] == "cancelled" and time.monotonic() - started < 1  # a final job never changes
    assert srv.client.get(f"/v1/jobs/{job['id']}", params={"wait": 61}).status_code == 422


def test_long_poll_answers_on_progress_of_a_running_job(make_app):
    """Reports a second apart: an answer that did not wait would show the epoch a plain GET just showed."""
    srv = make_app(workers=1, FITSERVE_REPORT_SECONDS="1.0").start()
    job = srv.submit(long_job())
    srv.wait_until(job["id"], lambda j: j["status"] == "running" and j["progress"]["epoch"] > 0)
    before = srv.client.get(f"/v1/jobs/{job['id']}").json()
    started = time.monotonic()
    changed = srv.client.get(f"/v1/jobs/{job['id']}", params={"wait": 30}).json()
    assert changed["status"] == "running" and changed["progress"]["epoch"] > before["progress"]["epoch"]
    assert time.monotonic() - started < 5  # at the next report, not at the end of the wait
    srv.client.post(f"/v1/jobs/{job['id']}/cancel")
