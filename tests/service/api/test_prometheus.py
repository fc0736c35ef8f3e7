"""GET /metrics, read with prometheus_client's own parser."""

import time

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import processes_only
from tests.specs import long_job, tiny_regression


def scrape(server) -> dict[str, list]:
    response = server.client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {family.name: family.samples for family in text_string_to_metric_families(response.text)}


def value(samples: list, name: str, **labels) -> float:
    return next(s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def test_metrics_count_jobs_training_time_and_predict_latency(server):
    job = server.train(tiny_regression(epochs=50))
    before = scrape(server)
    for _ in range(2):
        server.client.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": [[1.0]]})
    server.client.post(f"/v2/models/{job['id']}/infer", json={"inputs": [
        {"name": "input", "shape": [1, 1], "datatype": "FP32", "data": [1.0]}
    ]})
    after = scrape(server)
    predicted = value(after["fitserve_predict_seconds"], "fitserve_predict_seconds_count")
    assert predicted - value(before["fitserve_predict_seconds"], "fitserve_predict_seconds_count") == 3
    assert value(after["fitserve_predict_seconds"], "fitserve_predict_seconds_bucket", le="+Inf") == predicted
    assert value(after["fitserve_jobs"], "fitserve_jobs", status="succeeded") >= 1
    statuses = {s.labels["status"] for s in after["fitserve_jobs"]}
    assert statuses == {"queued", "running", "succeeded", "failed", "cancelled"}
    assert value(after["fitserve_queue_depth"], "fitserve_queue_depth") == value(
        after["fitserve_jobs"], "fitserve_jobs", status="queued"
    )
    assert value(after["fitserve_training_seconds"], "fitserve_training_seconds_total") > 0


def test_epochs_per_second_of_a_running_job(server):
    job = server.submit(long_job())
    server.wait_for(job["id"], statuses={"running"})
    server.client.get(f"/v1/jobs/{job['id']}", params={"wait": 10})  # at least one progress report
    rates = scrape(server)["fitserve_epochs_per_second"]
    server.client.post(f"/v1/jobs/{job['id']}/cancel")
    assert value(rates, "fitserve_epochs_per_second") > 0
    assert all(not sample.labels for sample in rates)


def test_metrics_name_no_job_of_any_owner(make_app):
    """/metrics answers without a key, so it carries counts and rates, never a job id."""
    srv = make_app(workers=1, FITSERVE_AUTH="required").start()
    auth = {"Authorization": f"Bearer {srv.create_key('alice')}"}
    spec = long_job()
    job = srv.client.post("/v1/jobs", json=spec, headers=auth).json()
    deadline = time.monotonic() + 60
    while srv.client.get(f"/v1/jobs/{job['id']}", headers=auth).json()["progress"]["epoch"] == 0:
        assert time.monotonic() < deadline, "the job never reported progress"
        time.sleep(0.05)
    response = srv.client.get("/metrics")
    srv.client.post(f"/v1/jobs/{job['id']}/cancel", headers=auth)
    assert response.status_code == 200
    families = {f.name: f.samples for f in text_string_to_metric_families(response.text)}
    assert value(families["fitserve_epochs_per_second"], "fitserve_epochs_per_second") > 0
    assert job["id"] not in response.text and 'job_id="' not in response.text  # "{job_id}" in a route is no id


def test_process_metrics_of_the_api_process(server):
    families = scrape(server)
    assert value(families["process_resident_memory_bytes"], "process_resident_memory_bytes") > 10 * 2**20
    assert value(families["process_cpu_seconds"], "process_cpu_seconds_total") > 0
    assert value(families["process_open_fds"], "process_open_fds") > 0


def counted(samples: list, name: str, **labels) -> float:
    """The sample's value, 0 where no such series exists yet."""
    return sum(s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def http_figures(srv) -> tuple[dict[str, list], str]:
    """The HTTP request families and the whole text of a scrape."""
    text = srv.client.get("/metrics").text
    families = {f.name: f.samples for f in text_string_to_metric_families(text)}
    return {name: families.get(name, []) for name in ("fitserve_http_requests", "fitserve_http_request_duration_seconds")}, text


def test_http_requests_by_route_template_and_status(make_app):
    """Labels are route templates, never paths: an id, or a scanner's random path, makes no series of its own.
    The counters are this process's: the test reads what its own requests added between two scrapes."""
    srv = make_app(workers=0).start()
    before, _ = http_figures(srv)
    for _ in range(3):
        assert srv.client.get("/v1/jobs/no-such-job").status_code == 404
    assert srv.client.get("/no/such/path/3f0c9a").status_code == 404
    assert srv.client.post("/v1/jobs", content=b"{", headers={"Content-Type": "application/json"}).status_code == 422
    after, text = http_figures(srv)

    def added(family: str, name: str, **labels) -> float:
        return counted(after[family], name, **labels) - counted(before[family], name, **labels)

    requests, seconds = "fitserve_http_requests", "fitserve_http_request_duration_seconds"
    job_route = {"method": "GET", "route": "/v1/jobs/{job_id}", "status": "404"}
    assert added(requests, "fitserve_http_requests_total", **job_route) == 3
    assert added(seconds, "fitserve_http_request_duration_seconds_count", **job_route) == 3
    assert added(seconds, "fitserve_http_request_duration_seconds_sum", **job_route) > 0
    assert added(requests, "fitserve_http_requests_total", method="GET", route="unmatched", status="404") == 1
    assert added(requests, "fitserve_http_requests_total", method="POST", route="/v1/jobs", status="422") == 1
    assert "no-such-job" not in text and "3f0c9a" not in text


def test_requests_refused_before_routing_are_counted_by_their_route(make_app):
    """A missing key is answered before the router runs; the label is still the template the path matches."""
    srv = make_app(workers=0, FITSERVE_AUTH="required").start()
    route = {"method": "GET", "route": "/v1/jobs/{job_id}", "status": "401"}
    before, _ = http_figures(srv)
    assert srv.client.get("/v1/jobs/abc123").status_code == 401
    after, text = http_figures(srv)
    requests = "fitserve_http_requests"
    assert (counted(after[requests], "fitserve_http_requests_total", **route)
            - counted(before[requests], "fitserve_http_requests_total", **route)) == 1
    assert "abc123" not in text


@processes_only
def test_jobs_finished_are_counters_by_final_status(make_app, make_server):
    """Counted from the database at scrape time: right whichever process ended the job, and in a process started
    after they ended (one without workers: it only answers the scrape)."""
    trainer = make_app(workers=1).start()
    ok = trainer.train(tiny_regression(epochs=5))
    assert ok["status"] == "succeeded"
    failing = tiny_regression(epochs=50, optimizer={"kind": "sgd", "lr": 100.0})  # diverges: NaN loss fails the job
    assert trainer.train(failing)["status"] == "failed"
    queued = trainer.submit(long_job())
    trainer.client.post(f"/v1/jobs/{queued['id']}/cancel")
    trainer.wait_for(queued["id"])
    trainer.stop()
    srv = make_server(workers=0).start()  # on the same database: the counts come from it, not from a process's memory
    families = {f.name: (f.type, f.samples) for f in text_string_to_metric_families(srv.client.get("/metrics").text)}
    kind, finished = families["fitserve_jobs_finished"]
    assert kind == "counter"
    assert {s.labels["status"]: s.value for s in finished if s.name == "fitserve_jobs_finished_total"} == {
        "succeeded": 1, "failed": 1, "cancelled": 1
    }


def finished_totals(srv) -> dict[str, float]:
    families = {f.name: f.samples for f in text_string_to_metric_families(srv.client.get("/metrics").text)}
    return {s.labels["status"]: s.value for s in families["fitserve_jobs_finished"] if s.name.endswith("_total")}


def test_jobs_finished_never_fall_when_finished_jobs_are_deleted(make_app):
    """A counter that fell would read as a reset; a deleted job's end stays counted, and later ends add to it.
    The tally is this process's: the test reads what its own jobs added to the first scrape."""
    srv = make_app(workers=0).start()  # no workers: a cancelled queued job ends at once and holds nothing else
    spec = tiny_regression()

    def cancel_one() -> str:
        job = srv.submit(spec)
        assert srv.client.post(f"/v1/jobs/{job['id']}/cancel").json()["status"] == "cancelled"
        return job["id"]

    start = finished_totals(srv)["cancelled"]
    gone = cancel_one()
    assert finished_totals(srv)["cancelled"] == start + 1
    srv.query("DELETE FROM jobs WHERE id = :id", id=gone)
    assert finished_totals(srv)["cancelled"] == start + 1  # the database holds none
    cancel_one()
    assert finished_totals(srv)["cancelled"] == start + 2  # the database holds one
