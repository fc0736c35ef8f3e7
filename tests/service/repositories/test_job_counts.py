"""The job counters (service/repositories/job_counts.py) equal what the history holds, whatever changed it:
submits, claims, finishes (each keeping its final state), continuations, cancels (queued and running), deletes of
jobs and of sweeps (a cascade), rescues, retention (checkpoints and jobs), dataset uploads and deletes; before the
changes are folded, after, and after a recount."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from service.db import session_scope
from service.repositories import job_counts
from service.repositories import jobs as job_repo
from service.repositories import lifecycle as lifecycle_repo
from service.repositories import metrics as metric_repo
from service.services.rescue import rescue
from service.services.retention import delete_expired_jobs
from tests.conftest import FINAL, as_, wait_until
from tests.specs import long_job, tiny_regression

FINAL_SQL = "('succeeded', 'failed', 'cancelled')"
BYTES = ("curve_bytes", "weights_bytes", "checkpoint_bytes", "dataset_bytes")
CSV = b"x,y\n" + b"".join(f"{i / 40},{i / 20 + 1}\n".encode() for i in range(40))


def when(value) -> datetime:
    return (datetime.fromisoformat(value) if isinstance(value, str) else value).replace(tzinfo=UTC)


def truth(s) -> dict[tuple[str, str], dict]:
    """Per (owner, status): jobs and training seconds; per (owner, "bytes"): curve and weights bytes; from the rows."""
    found: dict[tuple[str, str], dict] = {}
    for owner, status, started, finished in s.execute(text("SELECT owner_id, status, started_at, finished_at FROM jobs")):
        entry = found.setdefault((owner or "", status), {"jobs": 0, "seconds": 0.0})
        entry["jobs"] += 1
        if status in FINAL and started is not None and finished is not None:
            entry["seconds"] += (when(finished) - when(started)).total_seconds()
    owned = {table: f"SELECT j.owner_id, t.data FROM {table} t JOIN jobs j ON j.id = t.job_id"
             for table in ("metric_chunks", "job_weights", "checkpoints")}
    owned["datasets"] = "SELECT owner_id, data FROM datasets"
    for kind, table in zip(BYTES, owned):
        for owner, data in s.execute(text(owned[table])):
            entry = found.setdefault((owner or "", "bytes"), dict.fromkeys(BYTES, 0))
            entry[kind] += len(bytes(data))
    return found


def counted(s, owners) -> dict[tuple[str, str], dict]:
    """The same figures as the counters give them."""
    found: dict[tuple[str, str], dict] = {}
    for owner in owners:
        for status, sums in job_counts.of_owner(s, owner).items():
            if sums["jobs"]:
                found[(owner, status)] = {"jobs": sums["jobs"], "seconds": sums["training_seconds"]}
            bytes_ = found.setdefault((owner, "bytes"), dict.fromkeys(BYTES, 0))
            for kind in BYTES:
                bytes_[kind] += sums[kind]
    totals = job_counts.totals_by_status(s)
    for key in [key for key, entry in found.items() if key[1] == "bytes" and not any(entry.values())]:
        del found[key]
    by_status = {}
    for (_, status), entry in found.items():
        if status != "bytes":
            by_status[status] = by_status.get(status, 0) + entry["jobs"]
    assert {status: jobs for status, (jobs, _) in totals.items() if jobs} == by_status
    return found


def assert_agree(srv) -> None:
    """Rows and counters read in one snapshot (a running job goes on writing meanwhile)."""
    with session_scope(read_only=True) as s:
        if s.get_bind().dialect.name == "postgresql":
            s.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        expected = truth(s)
        got = counted(s, ["alice", "bob"])
    assert set(got) == set(expected)
    for key, entry in expected.items():
        for name, value in entry.items():
            # SQLite's date functions keep milliseconds: a job's seconds may be 1 ms off there
            assert got[key][name] == (pytest.approx(value, abs=0.01) if name == "seconds" else value), (key, name)


def assert_turns_agree(srv) -> None:
    """Folded, owner_queues holds each owner's queued and running jobs (the fair claim's turn order)."""
    with session_scope() as s:
        job_counts.fold(s)
    turns = srv.query("SELECT owner_key, queued, running FROM owner_queues WHERE queued > 0 OR running > 0")
    jobs = srv.query("SELECT coalesce(owner_id, ''), sum(CASE WHEN status = 'queued' THEN 1 ELSE 0 END),"
                     " sum(CASE WHEN status = 'running' THEN 1 ELSE 0 END) FROM jobs GROUP BY coalesce(owner_id, '')")
    assert sorted(tuple(row) for row in turns) == sorted(tuple(row) for row in jobs if row[1] or row[2])


def job_of(srv, who: str, job_id: str) -> dict:
    return srv.client.get(f"/v1/jobs/{job_id}", headers=as_(srv, who)).json()


def submit(srv, who: str, spec: dict) -> str:
    response = srv.client.post("/v1/jobs", json=spec, headers=as_(srv, who))
    assert response.status_code == 201, response.text
    return response.json()["id"]


def wait_status(srv, who: str, job_id: str, statuses) -> dict:
    return wait_until(lambda: (job := job_of(srv, who, job_id))["status"] in statuses and job, 60, f"job {job_id}")


def claim_as(srv, worker_id: str, checkpoint: bytes | None = None) -> str:
    """Claimed by `worker_id`, which saves `checkpoint` (a first one, or one replacing the last attempt's)."""
    with session_scope() as s:
        job = job_repo.claim_next_job(s, worker_id, 3600)
        job_id, attempt = job.id, job.attempt
    if checkpoint is not None:
        with session_scope() as s:
            assert job_repo.save_checkpoint(s, job_id, worker_id, attempt, 1, checkpoint)
    return job_id


def test_counters_equal_the_history_through_every_change(keyed_app):
    srv = keyed_app(workers=1, FITSERVE_SWEEP_SECONDS="3600")  # folds only when the test asks
    done = [submit(srv, who, tiny_regression(epochs=20)) for who in ("alice", "alice", "bob")]
    for job_id, who in zip(done, ("alice", "alice", "bob")):
        wait_status(srv, who, job_id, {"succeeded"})
    assert_agree(srv)  # submits, claims, curves, weights, finishes with their final states
    continued = srv.client.post(f"/v1/jobs/{done[1]}/continue", json={"epochs": 5}, headers=as_(srv, "alice"))
    assert continued.status_code == 201, continued.text
    wait_status(srv, "alice", continued.json()["id"], {"succeeded"})
    datasets = [srv.client.post("/v1/datasets", files={"file": ("d.csv", CSV)}, data={"target": "y"},
                                headers=as_(srv, who)).json()["id"] for who in ("alice", "bob")]
    assert srv.query("SELECT count(*) FROM checkpoints") == [(4,)]
    assert_agree(srv)  # a continuation's final state, datasets

    running = submit(srv, "alice", long_job())
    wait_until(lambda: job_of(srv, "alice", running)["progress"]["epoch"] > 0, 60, "a running job")
    waiting = submit(srv, "bob", long_job())  # queued behind it: one worker
    assert srv.client.post(f"/v1/jobs/{waiting}/cancel", headers=as_(srv, "bob")).status_code == 200
    assert_agree(srv)  # a queued job cancelled at once, a running one still counting its curve

    [(pending,)] = srv.query("SELECT count(*) FROM job_count_changes")
    with session_scope() as s:
        folded = job_counts.fold(s)
    # every change written before the fold is folded (the running job's next curve flush may append one after it)
    assert pending > 0 and folded >= pending
    assert_agree(srv)

    assert srv.client.post(f"/v1/jobs/{running}/cancel", headers=as_(srv, "alice")).status_code == 200
    wait_status(srv, "alice", running, {"cancelled"})
    assert srv.client.delete(f"/v1/jobs/{done[0]}", headers=as_(srv, "alice")).status_code == 204
    assert srv.client.delete(f"/v1/datasets/{datasets[1]}", headers=as_(srv, "bob")).status_code == 204
    assert_agree(srv)  # the worker's cancel, a delete with its curve, weights and final state, a dataset's

    body = {"name": "doomed", "base": tiny_regression(epochs=20), "space": {"lr": [0.01, 0.02]}}
    sweep = srv.client.post("/v1/sweeps", json=body, headers=as_(srv, "bob")).json()
    members = [entry["job_id"] for entry in sweep["leaderboard"]]
    for member in members:
        wait_status(srv, "bob", member, FINAL)
    assert srv.client.delete(f"/v1/sweeps/{sweep['id']}", headers=as_(srv, "bob")).status_code == 204
    assert srv.query("SELECT count(*) FROM jobs WHERE sweep_id = :id", id=sweep["id"]) == [(0,)]
    assert_agree(srv)  # members deleted by the sweep's cascade

    srv.worker_threads.stop(30)  # from here a claim is the test's own, by a worker that then dies
    srv.worker_threads = None
    stalled = [submit(srv, "alice", long_job()) for _ in range(2)]
    for size in (100, 300, 200):  # claimed and lost three times: requeued twice, then failed
        claim_as(srv, "ghost", checkpoint=b"c" * size)
        rescue("worker died", worker_id="ghost")
    assert_agree(srv)
    assert job_of(srv, "alice", stalled[0])["status"] == "failed"
    claim_as(srv, "ghost")
    assert srv.client.post(f"/v1/jobs/{stalled[1]}/cancel", headers=as_(srv, "alice")).status_code == 200
    rescue("worker died", worker_id="ghost")
    assert job_of(srv, "alice", stalled[1])["status"] == "cancelled"
    assert_agree(srv)  # rescues: requeued, failed, cancelled
    assert_turns_agree(srv)

    with session_scope() as s:  # as a resumed attempt trims its curve: chunks rewritten and deleted
        metric_repo.truncate_points_many(s, [done[2]], 3)
    assert srv.query("SELECT count(*) FROM metric_chunks WHERE job_id = :id", id=done[2]) == [(1,)]
    assert_agree(srv)

    with session_scope() as s:  # retention's first rule: the checkpoints of failed and cancelled jobs
        assert lifecycle_repo.drop_checkpoints_ended_before(s, datetime.now(UTC) + timedelta(seconds=1), 100) > 0
    assert_agree(srv)

    delete_expired_jobs(datetime.now(UTC) + timedelta(seconds=1), batch=100)
    assert srv.query("SELECT count(*) FROM jobs WHERE status IN " + FINAL_SQL) == [(0,)]
    assert_agree(srv)  # retention deleted every ended job

    # wrong, as a repair would find them
    srv.query("UPDATE job_counts SET jobs = jobs + 7, curve_bytes = 0, checkpoint_bytes = 1, dataset_bytes = 2")
    assert "rebuilt" in srv.cli("db", "recount")
    assert srv.query("SELECT count(*) FROM job_count_changes") == [(0,)]
    assert_agree(srv)
    assert_turns_agree(srv)
