"""GET /v1/usage and `fitserve usage`: the figures equal what the database holds, owner by owner."""

from datetime import UTC, datetime
from datetime import time as midnight_time

import pytest

from tests.conftest import as_, wait_until
from tests.specs import tiny_regression

CSV = b"x,y\n" + b"".join(f"{i / 40},{i / 20 + 1}\n".encode() for i in range(40))
BLOBS = {
    "curves": "SELECT c.data FROM metric_chunks c JOIN jobs j ON j.id = c.job_id WHERE j.owner_id = :owner",
    "weights": "SELECT w.data FROM job_weights w JOIN jobs j ON j.id = w.job_id WHERE j.owner_id = :owner",
    "checkpoints": "SELECT c.data FROM checkpoints c JOIN jobs j ON j.id = c.job_id WHERE j.owner_id = :owner",
    "datasets": "SELECT data FROM datasets WHERE owner_id = :owner",
}


@pytest.fixture
def keyed(keyed_app):
    """Keys for alice and bob; failed and cancelled jobs keep their checkpoints an hour."""
    return keyed_app(FITSERVE_CHECKPOINT_SECONDS="0.3", FITSERVE_RETENTION_CHECKPOINTS="3600")


def when(value) -> datetime:
    """A timestamp as the database returned it (SQLite: text in UTC), aware."""
    return (datetime.fromisoformat(value) if isinstance(value, str) else value).replace(tzinfo=UTC)


def expected_usage(srv, owner: str) -> dict:
    """The usage of `owner`, computed here from the rows themselves."""
    counts = dict(srv.query("SELECT status, count(*) FROM jobs WHERE owner_id = :owner GROUP BY status", owner=owner))
    stored = {kind: sum(len(bytes(row[0])) for row in srv.query(sql, owner=owner)) for kind, sql in BLOBS.items()}
    spans = [
        (when(start), when(end))
        for start, end in srv.query(
            "SELECT started_at, finished_at FROM jobs WHERE owner_id = :owner AND started_at IS NOT NULL "
            "AND status IN ('succeeded', 'failed', 'cancelled')", owner=owner,
        )
    ]
    today = datetime.combine(datetime.now(UTC).date(), midnight_time(), tzinfo=UTC)
    return {
        "jobs": counts,
        "stored": stored,
        "total": sum((end - start).total_seconds() for start, end in spans),
        "today": sum((end - max(start, today)).total_seconds() for start, end in spans if end > today),
    }


def run(srv, who: str, spec: dict, predicate) -> str:
    """Submit as `who`; the job's id once `predicate` holds for it."""
    job_id = srv.client.post("/v1/jobs", json=spec, headers=as_(srv, who)).json()["id"]
    wait_until(lambda: predicate(srv.client.get(f"/v1/jobs/{job_id}", headers=as_(srv, who)).json()), 60, f"job {job_id}")
    return job_id


def test_usage_equals_what_the_database_holds(keyed):
    alice = as_(keyed, "alice")
    keyed.client.post("/v1/datasets", files={"file": ("d.csv", CSV)}, data={"target": "y"}, headers=alice)
    for _ in range(2):
        run(keyed, "alice", tiny_regression(epochs=20), lambda j: j["status"] == "succeeded")
    long = run(keyed, "alice", tiny_regression(epochs=1_000_000), lambda j: j["progress"]["epoch"] > 0)
    wait_until(lambda: keyed.query("SELECT count(*) FROM checkpoints WHERE job_id = :id", id=long)[0][0], 60, "a checkpoint")
    keyed.client.post(f"/v1/jobs/{long}/cancel", headers=alice)
    wait_until(lambda: keyed.client.get(f"/v1/jobs/{long}", headers=alice).json()["status"] == "cancelled", 60, "cancelled")
    run(keyed, "bob", tiny_regression(epochs=20), lambda j: j["status"] == "succeeded")

    usage = keyed.client.get("/v1/usage", headers=alice).json()
    expected = expected_usage(keyed, "alice")
    assert usage["owner"] == "alice"
    assert {k: v for k, v in usage["jobs"].items() if v and k != "total"} == expected["jobs"]
    assert usage["jobs"]["total"] == sum(expected["jobs"].values()) == 3
    assert {k: v for k, v in usage["stored_bytes"].items() if k != "total"} == expected["stored"]
    assert all(expected["stored"].values())  # each kind is really there: curves, weights, a checkpoint, a dataset
    assert usage["stored_bytes"]["total"] == sum(expected["stored"].values())
    assert usage["training_seconds"]["total"] == pytest.approx(expected["total"], abs=0.01)
    assert usage["training_seconds"]["today"] == pytest.approx(expected["today"], abs=0.01)
    assert 0 < usage["training_seconds"]["total"]

    bob = keyed.client.get("/v1/usage", headers=as_(keyed, "bob")).json()
    assert bob["jobs"]["total"] == 1 and bob["stored_bytes"]["datasets"] == 0
    assert bob["stored_bytes"]["weights"] == expected_usage(keyed, "bob")["stored"]["weights"] > 0


def test_operators_read_every_owners_usage_from_the_database(keyed):
    for who in ("alice", "bob"):  # ended before the figures are read: both reads see the same rows
        run(keyed, who, tiny_regression(epochs=1), lambda j: j["status"] == "succeeded")
    every = keyed.cli("usage")
    rows = {line.split()[0]: line.split() for line in every.splitlines()[1:]}
    assert {"alice", "bob"} <= set(rows)
    alice_jobs = dict(keyed.query("SELECT status, count(*) FROM jobs WHERE owner_id = 'alice' GROUP BY status"))
    assert int(rows["alice"][1]) == alice_jobs.get("queued", 0) and int(rows["alice"][2]) == alice_jobs.get("running", 0)
    assert int(rows["alice"][3]) == sum(n for s, n in alice_jobs.items() if s in ("succeeded", "failed", "cancelled"))
    only = keyed.cli("usage", "--owner", "bob")
    assert [line.split()[0] for line in only.splitlines()[1:]] == ["bob"]
