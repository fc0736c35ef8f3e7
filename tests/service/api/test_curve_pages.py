"""A curve longer than a page is read whole by following `next_since_step`; downsampling only when asked."""

import pytest

from fitserve.client import Client
from tests.conftest import Server
from tests.specs import tiny_regression

PAGE = 100
EPOCHS = 1000


@pytest.fixture(scope="module")
def long_curve(tmp_path_factory, databases):
    """A finished job of EPOCHS curve points on a server whose pages hold PAGE points."""
    path = tmp_path_factory.mktemp("pages") / "fitserve.db"
    srv = Server(path, workers=1, db_url=databases.create(path), FITSERVE_CURVE_PAGE_POINTS=str(PAGE)).start()
    job = srv.train(tiny_regression(epochs=EPOCHS, data={"source": "synthetic", "generator": "linear", "n": 8}))
    assert job["status"] == "succeeded", job
    yield srv, job["id"]
    srv.stop()
    databases.drop(srv.db_url)


def test_pages_yield_every_point_once_in_order(long_curve):
    srv, job_id = long_curve
    steps, since, pages = [], 0, 0
    while True:
        page = srv.client.get(f"/v1/jobs/{job_id}/metrics", params={"since_step": since}).json()
        assert len(page["points"]) <= PAGE and not page["downsampled"]
        assert page["total_points"] == EPOCHS - len(steps)
        steps += [p["step"] for p in page["points"]]
        since, pages = page["next_since_step"], pages + 1
        if not page["has_more"]:
            break
        assert page["points"][-1]["step"] == since
    epochs = [p["epoch"] for p in srv.client.get(f"/v1/jobs/{job_id}/metrics", params={"max_points": 1}).json()["points"]]
    assert pages == EPOCHS // PAGE
    assert len(steps) == EPOCHS and steps == sorted(set(steps))  # every point, each once, in step order
    assert epochs == [EPOCHS]  # max_points=1 keeps the last point
    tail = srv.client.get(f"/v1/jobs/{job_id}/metrics", params={"since_step": since}).json()
    assert tail["points"] == [] and tail["next_since_step"] == since and not tail["has_more"]


def test_downsampling_is_asked_for_and_spans_the_whole_curve(long_curve):
    srv, job_id = long_curve
    every = srv.client.get(f"/v1/jobs/{job_id}/metrics").json()
    few = srv.client.get(f"/v1/jobs/{job_id}/metrics", params={"max_points": 10}).json()
    assert len(few["points"]) == 10 and few["downsampled"] and not few["has_more"]
    assert few["points"][0]["epoch"] == 1 and few["points"][-1]["epoch"] == EPOCHS
    assert few["next_since_step"] == few["points"][-1]["step"]
    capped = srv.client.get(f"/v1/jobs/{job_id}/metrics", params={"max_points": 500}).json()
    assert len(capped["points"]) == PAGE and capped["points"][-1]["epoch"] == EPOCHS  # at most a page
    assert [p["epoch"] for p in every["points"]] == list(range(1, PAGE + 1)) and every["has_more"]


def test_the_client_reads_a_curve_of_many_pages_whole(long_curve):
    srv, job_id = long_curve
    with Client(str(srv.client.base_url)) as client:
        epochs = [point.epoch for point in client.iter_metrics(job_id)]
    assert epochs == list(range(1, EPOCHS + 1))
