"""Deleting jobs, sweeps and datasets: everything they own goes, another owner's ids are 404, space comes back."""

import os
import sqlite3
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import FINAL, as_, wait_until
from tests.specs import tiny_regression

CSV = b"x1,x2,y\n" + b"".join(f"{i / 60},{i % 7 / 7},{i / 30 + 1}\n".encode() for i in range(60))
# rows a job owns, besides its own: each must be gone once the job is deleted
OWNED = ("metric_chunks", "job_weights", "checkpoints")


@pytest.fixture
def keyed(keyed_app):
    return keyed_app(FITSERVE_CHECKPOINT_SECONDS="0.3")


def submit(srv, who: str, spec: dict, **headers) -> dict:
    response = srv.client.post("/v1/jobs", json=spec, headers=as_(srv, who) | headers)
    assert response.status_code == 201, response.text
    return response.json()


def wait_job(srv, who: str, job_id: str, predicate, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = srv.client.get(f"/v1/jobs/{job_id}", headers=as_(srv, who)).json()
        if predicate(job):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} is {job['status']} after {timeout} s:\n{srv.read_log()[-3000:]}")


def rows_of(srv, job_id: str) -> dict[str, int]:
    counts = {table: srv.query(f"SELECT count(*) FROM {table} WHERE job_id = :id", id=job_id)[0][0] for table in OWNED}
    counts["jobs"] = srv.query("SELECT count(*) FROM jobs WHERE id = :id", id=job_id)[0][0]
    counts["idempotency_keys"] = srv.query(
        "SELECT count(*) FROM idempotency_keys WHERE location = :loc", loc=f"/v1/jobs/{job_id}"
    )[0][0]
    return counts


def test_deleting_a_job_removes_its_curve_weights_alias_and_idempotency_record(keyed):
    key = uuid.uuid4().hex
    job = submit(keyed, "alice", tiny_regression(), **{"Idempotency-Key": key})
    wait_job(keyed, "alice", job["id"], lambda j: j["status"] == "succeeded")
    alice = as_(keyed, "alice")
    assert keyed.client.put(f"/v1/jobs/{job['id']}/alias", json={"alias": "line"}, headers=alice).status_code == 200
    assert keyed.client.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": [[1.0]]}, headers=alice).status_code == 200
    before = rows_of(keyed, job["id"])
    assert before["metric_chunks"] > 0 and before["job_weights"] == 1 and before["idempotency_keys"] == 1

    assert keyed.client.delete(f"/v1/jobs/{job['id']}", headers=as_(keyed, "bob")).status_code == 404
    assert rows_of(keyed, job["id"]) == before  # another owner deletes nothing

    response = keyed.client.delete(f"/v1/jobs/{job['id']}", headers=alice)
    assert response.status_code == 204 and response.content == b""
    assert rows_of(keyed, job["id"]) == dict.fromkeys(before, 0)
    assert keyed.client.get(f"/v1/jobs/{job['id']}", headers=alice).status_code == 404
    assert keyed.client.delete(f"/v1/jobs/{job['id']}", headers=alice).status_code == 404
    # the cached network went with the job, and the alias is free again
    assert keyed.client.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": [[1.0]]}, headers=alice).status_code == 404
    other = submit(keyed, "alice", tiny_regression(epochs=1))
    assert keyed.client.put(f"/v1/jobs/{other['id']}/alias", json={"alias": "line"}, headers=alice).status_code == 200
    # a retry of the deleted job's submit creates a new job instead of replaying a 201 for a deleted one
    again = submit(keyed, "alice", tiny_regression(), **{"Idempotency-Key": key})
    assert again["id"] != job["id"]


def test_deleting_a_running_job_stops_its_worker_and_nothing_is_written_after(keyed):
    job = submit(keyed, "alice", tiny_regression(epochs=1_000_000))
    wait_job(keyed, "alice", job["id"], lambda j: j["status"] == "running" and j["progress"]["epoch"] > 0)
    wait_until(lambda: rows_of(keyed, job["id"])["checkpoints"], 30, "a checkpoint")

    assert keyed.client.delete(f"/v1/jobs/{job['id']}", headers=as_(keyed, "alice")).status_code == 204
    # the one worker lets go of the deleted job: the next job runs and finishes
    after = submit(keyed, "alice", tiny_regression(epochs=5))
    wait_job(keyed, "alice", after["id"], lambda j: j["status"] == "succeeded", timeout=60)
    assert rows_of(keyed, job["id"]) == dict.fromkeys(rows_of(keyed, job["id"]), 0)
    assert "Traceback" not in keyed.read_log()


def test_a_dataset_in_use_is_409_until_its_jobs_end(keyed):
    alice, bob = as_(keyed, "alice"), as_(keyed, "bob")
    response = keyed.client.post("/v1/datasets", files={"file": ("d.csv", CSV)}, data={"target": "y"}, headers=alice)
    dataset = response.json()
    spec = tiny_regression(
        model={"kind": "linear", "in_features": 2, "out_features": 1},
        data={"source": "dataset", "dataset_id": dataset["id"]},
        epochs=1_000_000,
    )
    job = submit(keyed, "alice", spec)

    refused = keyed.client.delete(f"/v1/datasets/{dataset['id']}", headers=alice)
    assert refused.status_code == 409 and job["id"] in refused.json()["detail"]
    assert keyed.client.delete(f"/v1/datasets/{dataset['id']}", headers=bob).status_code == 404

    assert keyed.client.post(f"/v1/jobs/{job['id']}/cancel", headers=alice).status_code == 200
    wait_job(keyed, "alice", job["id"], lambda j: j["status"] in FINAL)
    assert keyed.client.delete(f"/v1/datasets/{dataset['id']}", headers=alice).status_code == 204
    assert keyed.client.get(f"/v1/datasets/{dataset['id']}", headers=alice).status_code == 404
    assert keyed.query("SELECT count(*) FROM datasets WHERE id = :id", id=dataset["id"]) == [(0,)]
    assert keyed.client.get(f"/v1/jobs/{job['id']}", headers=alice).status_code == 200  # ended jobs stay


def test_deleting_a_sweep_deletes_its_members(keyed):
    alice = as_(keyed, "alice")
    body = {"name": "doomed", "base": tiny_regression(epochs=1_000_000), "space": {"lr": [0.01, 0.02, 0.03]}}
    response = keyed.client.post("/v1/sweeps", json=body, headers=alice | {"Idempotency-Key": uuid.uuid4().hex})
    sweep = response.json()
    members = [entry["job_id"] for entry in sweep["leaderboard"]]
    wait_job(keyed, "alice", members[0], lambda j: j["status"] != "queued")  # some member runs, or all do

    assert keyed.client.delete(f"/v1/sweeps/{sweep['id']}", headers=as_(keyed, "bob")).status_code == 404
    assert keyed.query("SELECT count(*) FROM jobs WHERE sweep_id = :id", id=sweep["id"]) == [(3,)]

    assert keyed.client.delete(f"/v1/sweeps/{sweep['id']}", headers=alice).status_code == 204
    assert keyed.client.get(f"/v1/sweeps/{sweep['id']}", headers=alice).status_code == 404
    for member in members:
        assert keyed.client.get(f"/v1/jobs/{member}", headers=alice).status_code == 404
    assert keyed.query("SELECT count(*) FROM jobs WHERE sweep_id = :id", id=sweep["id"]) == [(0,)]
    assert keyed.query("SELECT count(*) FROM idempotency_keys WHERE location = :l", l=f"/v1/sweeps/{sweep['id']}") == [(0,)]
    # the worker is free again
    after = submit(keyed, "alice", tiny_regression(epochs=5))
    wait_job(keyed, "alice", after["id"], lambda j: j["status"] == "succeeded", timeout=60)


def test_datasets_are_listed_newest_first_in_pages(keyed):
    alice, bob = as_(keyed, "alice"), as_(keyed, "bob")
    made = []
    for i in range(3):
        response = keyed.client.post("/v1/datasets", files={"file": (f"{i}.csv", CSV)}, data={"target": "y"}, headers=bob)
        made.append(response.json()["id"])
    first = keyed.client.get("/v1/datasets", params={"limit": 2}, headers=bob).json()
    assert [d["id"] for d in first["items"]] == made[::-1][:2] and first["next_cursor"]
    rest = keyed.client.get("/v1/datasets", params={"limit": 2, "cursor": first["next_cursor"]}, headers=bob).json()
    assert [d["id"] for d in rest["items"]] == made[:1] and rest["next_cursor"] is None
    assert not set(made) & {d["id"] for d in keyed.client.get("/v1/datasets", headers=alice).json()["items"]}
    bad = keyed.client.get("/v1/datasets", params={"cursor": "nonsense"}, headers=bob)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "cursor"]


BLOB_BYTES = 256 * 1024
JOBS = 40  # 10 MiB of weights


def store_weights(srv, job_ids: list[str]) -> None:
    for job_id in job_ids:
        srv.query("INSERT INTO job_weights (job_id, data, created_at) VALUES (:id, :data, :at)",
                  id=job_id, data=os.urandom(BLOB_BYTES), at="2026-01-01 00:00:00")


def sqlite_bytes(srv) -> int:
    path = Path(srv.db_url.removeprefix("sqlite:///"))
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


def postgres_bytes(srv, vacuum: bool = False) -> int:
    engine = create_engine(srv.db_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            if vacuum:
                conn.execute(text("VACUUM job_weights"))
            return conn.execute(text("SELECT pg_total_relation_size('job_weights')")).scalar()
    finally:
        engine.dispose()


@pytest.mark.parametrize("made", ["new", "before incremental vacuum"])
def test_deleted_jobs_give_their_space_back(make_app, backend, made, tmp_path):
    """SQLite: the file shrinks within a few sweeps, whether it frees pages incrementally from the start or is
    switched to that by one VACUUM. PostgreSQL: once vacuumed (autovacuum does it by itself), the space is reused,
    so the same volume written again does not grow the table."""
    if made != "new":
        if backend != "sqlite":
            pytest.skip("SQLite files only")
        with sqlite3.connect(tmp_path / "fitserve.db") as older:  # as fitserve made files before: no auto_vacuum
            older.execute("CREATE TABLE made_before (id INTEGER)")
    srv = make_app(workers=0, FITSERVE_SWEEP_SECONDS="0.3", FITSERVE_RECLAIM_FREE_BYTES=str(1024 * 1024)).start()
    job_ids = [srv.submit(tiny_regression())["id"] for _ in range(JOBS)]
    store_weights(srv, job_ids)
    if backend == "sqlite":
        full = sqlite_bytes(srv)
        for job_id in job_ids:
            assert srv.client.delete(f"/v1/jobs/{job_id}").status_code == 204
        wait_until(lambda: sqlite_bytes(srv) < full - JOBS * BLOB_BYTES * 0.9, 30, "space given back")
        # logged once the space is back: a moment after the file shrinks
        wait_until(lambda: "free page(s) given back" in srv.read_log(), 10, "the maintenance loop's line")
    else:
        full = postgres_bytes(srv)
        for job_id in job_ids:
            assert srv.client.delete(f"/v1/jobs/{job_id}").status_code == 204
        postgres_bytes(srv, vacuum=True)
        store_weights(srv, [srv.submit(tiny_regression())["id"] for _ in range(JOBS)])
        assert postgres_bytes(srv) <= full * 1.1
