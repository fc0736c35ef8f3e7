"""Retention applied by the maintenance loop: checkpoints of ended jobs, then ended jobs themselves, in small batches."""


from tests.conftest import wait_until
from tests.specs import tiny_regression

FAST_SWEEPS = {"FITSERVE_SWEEP_SECONDS": "0.3", "FITSERVE_CHECKPOINT_SECONDS": "0.3"}


def checkpoints(srv, job_id: str) -> int:
    return srv.query("SELECT count(*) FROM checkpoints WHERE job_id = :id", id=job_id)[0][0]


def cancelled_with_checkpoint(srv) -> str:
    """A long job cancelled once it has saved a checkpoint; its id."""
    job = srv.submit(tiny_regression(epochs=1_000_000))
    srv.wait_until(job["id"], lambda j: j["status"] == "running")
    wait_until(lambda: checkpoints(srv, job["id"]), 30, "checkpoint", srv.read_log)
    assert srv.client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200
    srv.wait_for(job["id"], {"cancelled"})
    return job["id"]


def ago(backend: str, seconds: int) -> str:
    return f"datetime('now', '-{seconds} seconds')" if backend == "sqlite" else f"now() - interval '{seconds} seconds'"


def end_in_the_past(srv, backend: str, job_ids: list[str], seconds: int) -> None:
    """Move the jobs' making and end `seconds` into the past, as if they had run then."""
    past = ago(backend, seconds)
    for job_id in job_ids:
        srv.query(f"UPDATE jobs SET created_at = {past}, finished_at = {past} WHERE id = :id", id=job_id)


def test_a_cancelled_jobs_checkpoint_is_dropped_by_the_next_sweep_by_default(make_app):
    srv = make_app(**FAST_SWEEPS).start()
    job_id = cancelled_with_checkpoint(srv)
    wait_until(lambda: checkpoints(srv, job_id) == 0, 30, "checkpoint dropped", srv.read_log)
    assert srv.client.get(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"  # the job itself stays


def test_retention_drops_old_checkpoints_then_old_jobs_in_batches(make_app, backend):
    srv = make_app(
        **FAST_SWEEPS, FITSERVE_RETENTION_CHECKPOINTS="3600", FITSERVE_RETENTION_DAYS="1", FITSERVE_RETENTION_BATCH="2"
    ).start()
    old_checkpointed, recent_checkpointed = cancelled_with_checkpoint(srv), cancelled_with_checkpoint(srv)
    finished = [srv.train(tiny_regression(epochs=3))["id"] for _ in range(5)]
    sweep = srv.client.post("/v1/sweeps", json={"base": tiny_regression(epochs=3), "space": {"lr": [0.01, 0.02]}}).json()
    members = [entry["job_id"] for entry in sweep["leaderboard"]]
    for member in members:
        srv.wait_for(member)
    assert checkpoints(srv, old_checkpointed) == checkpoints(srv, recent_checkpointed) == 1  # kept for an hour

    # two hours ago: past the checkpoints' hour, within the jobs' day
    end_in_the_past(srv, backend, [old_checkpointed], 2 * 3600)
    wait_until(lambda: checkpoints(srv, old_checkpointed) == 0, 30, "old checkpoint dropped", srv.read_log)
    assert checkpoints(srv, recent_checkpointed) == 1
    assert srv.client.get(f"/v1/jobs/{old_checkpointed}").status_code == 200

    # two days ago: past the day, so deleted, two a sweep; then the sweep they emptied
    expired = [old_checkpointed, recent_checkpointed, *finished[:3], *members]
    srv.query(f"UPDATE sweeps SET created_at = {ago(backend, 2 * 86400)} WHERE id = :id", id=sweep["id"])
    end_in_the_past(srv, backend, expired, 2 * 86400)
    wait_until(lambda: all(srv.client.get(f"/v1/jobs/{j}").status_code == 404 for j in expired), 60, "jobs deleted", srv.read_log)
    for job_id in finished[3:]:
        assert srv.client.get(f"/v1/jobs/{job_id}").status_code == 200
    assert srv.query("SELECT count(*) FROM checkpoints WHERE job_id = :id", id=recent_checkpointed) == [(0,)]
    wait_until(lambda: srv.client.get(f"/v1/sweeps/{sweep['id']}").status_code == 404, 30, "empty sweep deleted", srv.read_log)
    batches = [line for line in srv.read_log().splitlines() if "retention:" in line and "job(s)" in line]
    assert batches and all(int(line.split("retention: ")[1].split()[0]) <= 2 for line in batches)


def test_a_tick_deletes_its_batch_in_transactions_of_a_chunk_each(make_app, backend):
    """A tick of RETENTION_BATCH jobs holds the write lock (SQLite's one writer: every API write and claim waits)
    for RETENTION_CHUNK jobs at a time, not for the whole batch, which still bounds the tick."""
    from datetime import timedelta

    from sqlalchemy import event

    from service.db import get_engine
    from service.models import utcnow
    from service.services.retention import RETENTION_CHUNK, delete_expired_jobs

    day_ago = utcnow() - timedelta(days=1)
    srv = make_app(workers=0).start()
    ids = [srv.submit(tiny_regression(name=f"j{i}"))["id"] for i in range(2 * RETENTION_CHUNK + 10)]
    srv.query("UPDATE jobs SET status = 'cancelled', started_at = created_at, finished_at = created_at")
    end_in_the_past(srv, backend, ids[:-5], 3 * 86400)  # all but the 5 last ended three days ago
    engine, deletes = get_engine(), []

    def on_delete(conn, cursor, statement, params, context, many):
        if statement.lstrip().upper().startswith("DELETE FROM JOBS"):
            deletes.append(len(params) if isinstance(params, (list, tuple)) else len(params.values()))

    event.listen(engine, "before_cursor_execute", on_delete)
    try:
        assert delete_expired_jobs(day_ago, batch=2 * RETENTION_CHUNK) == 2 * RETENTION_CHUNK
    finally:
        event.remove(engine, "before_cursor_execute", on_delete)
    assert deletes == [RETENTION_CHUNK, RETENTION_CHUNK], deletes  # two transactions, a chunk each
    left = {job_id for (job_id,) in srv.query("SELECT id FROM jobs")}
    assert len(left) == 10 and set(ids[-5:]) <= left  # the batch bounds the tick; the recent 5 are not due
    assert delete_expired_jobs(day_ago, batch=2 * RETENTION_CHUNK) == 5  # the 5 left that ended long ago
    assert {job_id for (job_id,) in srv.query("SELECT id FROM jobs")} == set(ids[-5:])
