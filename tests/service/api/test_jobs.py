"""The jobs endpoints, end to end: real HTTP, a real SQLite file, real worker processes."""

import math
import time

import pytest
import torch
from safetensors.torch import load

from modelzoo import build_network
from modelzoo.weights import spec_from_bytes
from service.schemas.spec import JobSpec
from tests.conftest import shared_app
from tests.specs import long_job, tiny_regression

server = shared_app()  # the tests keep apart by their own jobs


def test_submit_returns_created_job_with_location(server):
    response = server.client.post("/v1/jobs", json=tiny_regression(name="located"))
    assert response.status_code == 201
    job = response.json()
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] in ("queued", "running")
    assert job["progress"]["epochs"] == 200
    assert job["spec"]["optimizer"]["momentum"] == 0.0  # defaults filled in
    assert server.client.get(f"/v1/jobs/{job['id']}").json()["name"] == "located"


def test_job_trains_and_reports_curve_device_and_timestamps(server):
    job = server.train(tiny_regression())
    assert job["status"] == "succeeded", job
    assert job["progress"] == {"epoch": 200, "epochs": 200}
    assert job["device"] == "cpu"
    assert job["started_at"] and job["finished_at"] and job["finished_at"] >= job["started_at"]
    assert job["metrics"]["epoch"] == 200 and job["metrics"]["loss"] < 0.01
    page = server.client.get(f"/v1/jobs/{job['id']}/metrics").json()
    assert page["total_points"] == 200 and not page["downsampled"]
    assert [p["epoch"] for p in page["points"]] == list(range(1, 201))
    assert page["points"][0]["loss"] > page["points"][-1]["loss"]
    assert page["points"][0]["val_loss"] is None and page["points"][0]["accuracy"] is None


def test_metrics_cursor_returns_only_new_points_and_downsampling_caps_them(server):
    job = server.train(tiny_regression())
    url = f"/v1/jobs/{job['id']}/metrics"
    newer = server.client.get(url, params={"since_step": 150}).json()
    assert [p["step"] for p in newer["points"]] == list(range(151, 201))
    assert newer["next_since_step"] == 200
    assert server.client.get(url, params={"since_step": 200}).json()["points"] == []
    few = server.client.get(url, params={"max_points": 10}).json()
    assert len(few["points"]) == 10 and few["downsampled"]
    assert few["points"][0]["step"] == 1 and few["points"][-1]["step"] == 200


def test_metrics_png_is_a_png(server):
    job = server.train(tiny_regression())
    response = server.client.get(f"/v1/jobs/{job['id']}/metrics.png")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content.startswith(b"\x89PNG\r\n\x1a\n") and len(response.content) > 5000


def test_weights_are_safetensors_that_rebuild_the_model_anywhere(server):
    job = server.train(tiny_regression())
    blob = server.client.get(f"/v1/jobs/{job['id']}/weights").content
    spec = JobSpec.model_validate(spec_from_bytes(blob))
    net = build_network(spec.model)
    net.load_state_dict(load(blob))
    x = [[0.5], [-1.0]]
    served = server.client.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": x}).json()["predictions"]
    local = net(torch.tensor(x)).squeeze(1).tolist()
    assert served == pytest.approx(local, rel=1e-6)
    assert served == pytest.approx([2 * 0.5 + 1, 2 * -1 + 1], abs=0.05)  # y = 2x + 1


def test_listing_is_newest_first_with_cursor_paging_and_status_filter(server):
    ids = [server.submit(tiny_regression(epochs=1, name=f"page-{i}"))["id"] for i in range(5)]
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = server.client.get("/v1/jobs", params=params).json()
        assert len(page["items"]) <= 2
        seen += [j["id"] for j in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    mine = [i for i in seen if i in ids]
    assert mine == ids[::-1]
    assert len(seen) == len(set(seen))
    for job_id in ids:
        server.wait_for(job_id)
    done = server.client.get("/v1/jobs", params={"status": "succeeded", "limit": 200}).json()["items"]
    assert {j["status"] for j in done} == {"succeeded"} and set(ids) <= {j["id"] for j in done}


def test_listing_rejects_bad_paging(server):
    too_big = server.client.get("/v1/jobs", params={"limit": 10_000})
    assert too_big.status_code == 422 and too_big.json()["detail"][0]["loc"] == ["query", "limit"]
    bad_cursor = server.client.get("/v1/jobs", params={"cursor": "not-a-cursor"})
    assert bad_cursor.status_code == 422 and bad_cursor.json()["detail"][0]["loc"] == ["query", "cursor"]
    bad_status = server.client.get("/v1/jobs", params={"status": "sleeping"})
    assert bad_status.status_code == 422


def test_unknown_ids_are_404(server):
    for method, path in [
        ("GET", "/v1/jobs/missing"),
        ("POST", "/v1/jobs/missing/cancel"),
        ("GET", "/v1/jobs/missing/metrics"),
        ("GET", "/v1/jobs/missing/metrics.png"),
        ("GET", "/v1/jobs/missing/weights"),
        ("GET", "/v1/datasets/missing"),
    ]:
        response = server.client.request(method, path)
        assert response.status_code == 404, (method, path, response.text)
        assert "missing" in response.json()["detail"]
    predict = server.client.post("/v1/jobs/missing/predict", json={"inputs": [[1.0]]})
    assert predict.status_code == 404


def test_cancel_running_job_stops_it_and_keeps_its_curve(server):
    job = server.submit(long_job(1_000_000))
    server.wait_for(job["id"], {"running"})
    deadline = time.monotonic() + 30
    while server.client.get(f"/v1/jobs/{job['id']}").json()["progress"]["epoch"] == 0:
        assert time.monotonic() < deadline, "no progress recorded"
        time.sleep(0.1)
    response = server.client.post(f"/v1/jobs/{job['id']}/cancel")
    assert response.status_code == 200 and response.json()["cancel_requested"]
    done = server.wait_for(job["id"], timeout=5)
    assert done["status"] == "cancelled"
    points = server.client.get(f"/v1/jobs/{job['id']}/metrics").json()
    assert points["total_points"] > 0
    assert done["progress"]["epoch"] < 1_000_000
    again = server.client.post(f"/v1/jobs/{job['id']}/cancel")
    assert again.status_code == 409 and "cancelled" in again.json()["detail"]


def test_predict_on_unfinished_job_is_409(server):
    job = server.submit(tiny_regression(epochs=1_000_000))
    response = server.client.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": [[1.0]]})
    assert response.status_code == 409 and job["id"] in response.json()["detail"]
    weights = server.client.get(f"/v1/jobs/{job['id']}/weights")
    assert weights.status_code == 409
    server.client.post(f"/v1/jobs/{job['id']}/cancel")
    server.wait_for(job["id"])


@pytest.mark.parametrize(
    "inputs",
    ["[[1.0, 2.0]]", '[["a"]]', "[[1.0], [2.0, 3.0]]", "[[NaN]]"],
    ids=["too-wide", "not-numbers", "ragged", "nan"],
)
def test_predict_rejects_inputs_of_the_wrong_shape(server, inputs):
    job = server.train(tiny_regression(epochs=5))
    body = '{"inputs": %s}' % inputs
    headers = {"content-type": "application/json"}
    response = server.client.post(f"/v1/jobs/{job['id']}/predict", content=body, headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][:2] == ["body", "inputs"]


def test_a_few_rows_and_a_large_batch_answer_alike(server):
    """A few rows run on the event loop, a large batch on a worker thread: the same numbers either way."""
    job = server.train(tiny_regression(epochs=5))
    url = f"/v1/jobs/{job['id']}/predict"
    xs = [[i / 10] for i in range(200)]
    batch = server.client.post(url, json={"inputs": xs}).json()["predictions"]
    singles = [server.client.post(url, json={"inputs": [x]}).json()["predictions"][0] for x in xs[:3]]
    assert len(batch) == 200
    assert singles == pytest.approx(batch[:3], rel=1e-6)


def test_diverging_job_fails_with_epoch_and_keeps_curve(server):
    spec = tiny_regression(optimizer={"kind": "sgd", "lr": 50.0}, epochs=5000)
    job = server.train(spec)
    assert job["status"] == "failed"
    assert "diverged" in job["error"] and "at epoch" in job["error"]
    failed_epoch = int(job["error"].rsplit("at epoch ", 1)[1])
    points = server.client.get(f"/v1/jobs/{job['id']}/metrics").json()["points"]
    assert points and points[-1]["epoch"] == failed_epoch - 1
    assert all(math.isfinite(p["loss"]) for p in points)


def test_openapi_docs_are_served(server):
    assert server.client.get("/docs").status_code == 200
    schema = server.client.get("/openapi.json").json()
    assert "/v1/jobs/{job_id}/predict" in schema["paths"]
    assert server.client.get("/healthz").json() == {"status": "ok"}
