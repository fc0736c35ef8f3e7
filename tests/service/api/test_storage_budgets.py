"""Storage: an owner's byte budget (FITSERVE_MAX_STORED_BYTES_PER_OWNER) and the cap on one job's curve."""

from service.db import get_engine
from service.schemas.limits import LIMITS
from tests.conftest import as_
from tests.harness.calls import statements_run
from tests.specs import tiny_regression

CSV = b"x,y\n" + b"".join(f"{i / 40},{i / 20 + 1}\n".encode() for i in range(40))
BUDGET = 40_000  # bytes: one 2,000-epoch job's curve and weights pass it


def stored(srv, who: str) -> int:
    return srv.client.get("/v1/usage", headers=as_(srv, who)).json()["stored_bytes"]["total"]


def test_an_owner_past_its_budget_may_read_and_delete_but_store_nothing_new(keyed_app):
    srv = keyed_app(FITSERVE_MAX_STORED_BYTES_PER_OWNER=str(BUDGET))
    alice, bob = as_(srv, "alice"), as_(srv, "bob")
    job = srv.client.post("/v1/jobs", json=tiny_regression(epochs=2000), headers=alice).json()
    srv.wait_for_jobs([job["id"]])
    assert srv.client.get(f"/v1/jobs/{job['id']}", headers=alice).json()["status"] == "succeeded"
    assert stored(srv, "alice") >= BUDGET

    refused = [
        srv.client.post("/v1/jobs", json=tiny_regression(), headers=alice),
        srv.client.post("/v1/sweeps", json={"base": tiny_regression(), "space": {"lr": [0.01, 0.02]}}, headers=alice),
        srv.client.post("/v1/datasets", files={"file": ("d.csv", CSV)}, data={"target": "y"}, headers=alice),
    ]
    for response in refused:
        assert response.status_code == 403, response.text
        detail = response.json()["detail"]
        assert "FITSERVE_MAX_STORED_BYTES_PER_OWNER" in detail and f"{BUDGET:,}" in detail
    assert srv.query("SELECT count(*) FROM jobs WHERE owner_id = 'alice'") == [(1,)]  # nothing half made
    assert srv.query("SELECT count(*) FROM datasets") == [(0,)]
    # reads still answer; another owner is not held by alice's budget
    assert srv.client.get(f"/v1/jobs/{job['id']}/metrics", headers=alice).status_code == 200
    assert srv.client.post("/v1/jobs", json=tiny_regression(), headers=bob).status_code == 201
    # a delete makes room at once
    assert srv.client.delete(f"/v1/jobs/{job['id']}", headers=alice).status_code == 204
    assert stored(srv, "alice") < BUDGET
    assert srv.client.post("/v1/jobs", json=tiny_regression(), headers=alice).status_code == 201


def test_a_submit_checks_the_budget_from_the_counters_without_reading_any_blob(keyed_app):
    """Succeeded jobs keep their final states (checkpoints) and datasets have no cap on their number: the budget
    check at every submit reads the counters, which agree with the blobs, and no table of blobs."""
    srv = keyed_app(FITSERVE_MAX_STORED_BYTES_PER_OWNER=str(10**9))
    alice = as_(srv, "alice")
    jobs = [srv.client.post("/v1/jobs", json=tiny_regression(), headers=alice).json()["id"] for _ in range(2)]
    srv.wait_for_jobs(jobs)
    upload = srv.client.post("/v1/datasets", files={"file": ("d.csv", CSV)}, data={"target": "y"}, headers=alice)
    assert upload.status_code == 201, upload.text
    usage = srv.client.get("/v1/usage", headers=alice).json()["stored_bytes"]
    [(checkpoints,)] = srv.query("SELECT sum(length(data)) FROM checkpoints")
    [(datasets,)] = srv.query("SELECT sum(length(data)) FROM datasets")
    assert usage["checkpoints"] == checkpoints > 0 and usage["datasets"] == datasets > 0

    with statements_run(get_engine()) as run:  # the submit's; the app's workers may claim the new job meanwhile
        assert srv.client.post("/v1/jobs", json=tiny_regression(), headers=alice).status_code == 201
    statements = [statement.lower() for statement, _ in run]
    assert any("job_counts" in statement for statement in statements)  # the budget was checked
    for blobs in ("checkpoints", "datasets", "metric_chunks", "job_weights"):
        assert not [statement for statement in statements if blobs in statement], blobs


def test_an_upload_that_would_pass_the_budget_is_refused_naming_its_size(keyed_app):
    srv = keyed_app(workers=0, FITSERVE_MAX_STORED_BYTES_PER_OWNER="600")  # under the CSV's stored npz
    response = srv.client.post("/v1/datasets", files={"file": ("d.csv", CSV)}, data={"target": "y"},
                               headers=as_(srv, "alice"))
    assert response.status_code == 403 and "this upload would add" in response.json()["detail"], response.text
    assert srv.query("SELECT count(*) FROM datasets") == [(0,)]


def test_a_job_longer_than_the_curve_cap_records_one_epoch_in_n(make_app):
    """A 250,000-epoch job's curve keeps at most LIMITS.max_curve_points points: it records one epoch in 3, says so,
    and keeps the last; a job within the cap keeps every epoch it asked for."""
    srv = make_app(workers=0).start()
    epochs = 250_000
    long = srv.submit(tiny_regression(epochs=epochs))
    assert long["spec"]["metrics_every"] == 3
    assert any(w.startswith("metrics_every: 3: a curve keeps at most 100,000 points") for w in long["warnings"])
    assert -(-epochs // long["spec"]["metrics_every"]) <= LIMITS.max_curve_points
    asked = srv.submit(tiny_regression(epochs=epochs, metrics_every=10))
    assert asked["spec"]["metrics_every"] == 10 and not asked["warnings"]
    short = srv.submit(tiny_regression(epochs=LIMITS.max_curve_points))
    assert short["spec"]["metrics_every"] == 1 and not short["warnings"]
