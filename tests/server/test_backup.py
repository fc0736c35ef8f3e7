"""`fitserve db backup`: a copy of a live SQLite database while a job writes to it; pg_dump advice on PostgreSQL."""

import sqlite3

from tests.conftest import run_fitserve as fitserve
from tests.specs import tiny_regression


def test_a_live_sqlite_database_is_backed_up_with_its_jobs(make_app, backend, tmp_path):
    srv = make_app(workers=1, FITSERVE_CHECKPOINT_SECONDS="0.3").start()
    if backend != "sqlite":
        done = fitserve(srv, "db", "backup", tmp_path / "fitserve.dump")
        assert done.returncode == 2 and "pg_dump --format=custom" in done.stderr
        return
    finished = srv.train(tiny_regression(epochs=20))
    running = srv.submit(tiny_regression(epochs=1_000_000))
    srv.wait_until(running["id"], lambda j: j["status"] == "running" and j["progress"]["epoch"] > 0)

    copy = tmp_path / "copy.db"
    done = fitserve(srv, "db", "backup", copy)  # while the running job writes its curve and checkpoints
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "copy.db-wal").exists()  # one self-contained file
    with sqlite3.connect(copy) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        jobs = dict(db.execute("SELECT id, status FROM jobs").fetchall())
        assert jobs[finished["id"]] == "succeeded" and jobs[running["id"]] == "running"
        assert db.execute("SELECT count(*) FROM job_weights WHERE job_id = ?", (finished["id"],)).fetchone() == (1,)
        assert db.execute("SELECT count(*) FROM metric_chunks WHERE job_id = ?", (running["id"],)).fetchone()[0] > 0
    assert f"backed up {len(jobs)} jobs" in done.stdout

    again = fitserve(srv, "db", "backup", copy)
    assert again.returncode == 2 and "exists" in again.stderr  # never overwritten
    assert srv.client.get(f"/v1/jobs/{running['id']}").json()["status"] == "running"  # the service went on
