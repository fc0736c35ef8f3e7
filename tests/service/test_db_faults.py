"""A full disk: writes answer 507 naming it, reads and deletes go on, workers hand their jobs back and wait.

SQLite's disk is made full for real: FITSERVE_DB_MAX_BYTES (PRAGMA max_page_count) caps the file a little above
its size, and SQLite answers SQLITE_FULL ("database or disk is full") past it, as on a full disk; a database on a
small tmpfs (where this test runs as root) is the disk itself filling. PostgreSQL's disk is filled for real where a
database of the test's own lives in a tablespace on a small tmpfs (/readyz's probe, and a write's 507); where a
worker's writes must fail while others pass, its server raises SQLSTATE 53100 disk_full from triggers, through the
real driver (psycopg's DiskFull) and the same code path as a real one.
"""

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from service import db_faults
from tests.conftest import as_, corrupt_sqlite_file, wait_until, with_keys
from tests.specs import long_job, tiny_regression
from workers import loop as worker_loop

DISK_FULL = "the database's disk is full"
FULL_TABLES = ("datasets", "jobs", "metric_chunks", "checkpoints")  # PostgreSQL: the inserts its trigger refuses


def csv_file(rows: int, seed: int) -> bytes:
    values = np.random.default_rng(seed).normal(size=(rows, 8))
    return ("a,b,c,d,e,f,g,target\n" + "\n".join(",".join(f"{v:.6f}" for v in row) for row in values)).encode()


def upload(srv, rows: int, seed: int):
    files = {"file": ("fill.csv", csv_file(rows, seed))}
    return srv.client.post("/v1/datasets", files=files, data={"target": "target"})


def fill_with_datasets(srv, rows: int) -> tuple[list[str], dict]:
    """Upload datasets of `rows` rows until one is refused; the ids stored, and the refusal's body."""
    stored: list[str] = []
    for seed in range(200):
        response = upload(srv, rows, seed)
        if response.status_code != 201:
            assert response.status_code == 507, response.text
            return stored, response.json()
        stored.append(response.json()["id"])
    raise AssertionError(f"{len(stored)} datasets of {rows} rows stored and the disk is not full")


def make_disk_full(srv, backend: str) -> list[str]:
    """The disk full as each back end can make it here (see the module's docstring); the datasets that filled it."""
    if backend == "postgresql":
        srv.query("CREATE FUNCTION fitserve_disk_full() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                  "RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full'; "
                  "END $$")
        for table in FULL_TABLES:
            srv.query(f"CREATE TRIGGER disk_full BEFORE INSERT ON {table} FOR EACH ROW "
                      "EXECUTE FUNCTION fitserve_disk_full()")
        return []
    stored, refusal = fill_with_datasets(srv, 8000)
    more, refusal = fill_with_datasets(srv, 50)  # the pages' last room too: the job's next writes need a new page
    assert DISK_FULL in refusal["detail"] and "deleting jobs, sweeps or datasets frees space" in refusal["detail"]
    return stored + more


def free_disk(srv, backend: str, filler: list[str]) -> None:
    """Space freed through the API (SQLite: the datasets deleted); PostgreSQL: the triggers dropped."""
    if backend == "postgresql":
        for table in FULL_TABLES:
            srv.query(f"DROP TRIGGER disk_full ON {table}")
        return
    for dataset_id in filler:  # deletes need no new page: each works on the full disk
        assert srv.client.delete(f"/v1/datasets/{dataset_id}").status_code == 204


def test_a_full_disk_refuses_writes_with_507_and_the_worker_hands_its_job_back_until_space_is_freed(
    make_app, backend, monkeypatch
):
    # the windows this test would otherwise wait out once space is freed, shortened: PostgreSQL's readiness names a
    # full disk until FULL_REMEMBERED_SECONDS (30) after a write last met it, and a worker's pause between tries
    # doubles up to MAX_FAULT_PAUSE_SECONDS (60) while the disk stays full (its worker threads run here)
    monkeypatch.setattr(db_faults, "FULL_REMEMBERED_SECONDS", 3.0)
    monkeypatch.setattr(worker_loop, "MAX_FAULT_PAUSE_SECONDS", 2.0)
    srv = make_app(workers=1, FITSERVE_CHECKPOINT_SECONDS="0.3", FITSERVE_LEASE_SECONDS="5")
    if backend == "sqlite":  # the cap a little above the file as it is: 2 MiB to fill (readiness fails under 1 MiB)
        srv.env["FITSERVE_DB_MAX_BYTES"] = str(os.path.getsize(srv.db_url.removeprefix("sqlite:///")) + 2 * 1024**2)
    srv.start()
    trained = srv.train(tiny_regression(epochs=20))
    job = srv.submit(long_job())
    srv.wait_until(job["id"], lambda j: j["status"] == "running" and j["progress"]["epoch"] > 0)
    assert srv.client.get("/readyz").status_code == 200

    filler = make_disk_full(srv, backend)
    refused = srv.client.post("/v1/jobs", json=tiny_regression())
    for _ in range(100):  # a job's row may still fit where a dataset did not: more, until one does not
        if refused.status_code != 201:
            break
        refused = srv.client.post("/v1/jobs", json=tiny_regression())
    assert refused.status_code == 507 and DISK_FULL in refused.json()["detail"], refused.text

    # the job's next write fails: handed back to the queue, not failed, its attempt not spent
    handed = srv.wait_until(job["id"], lambda j: "disk is full; handed back" in (j["error"] or ""), timeout=60)
    assert handed["status"] in ("queued", "running"), handed
    ready = srv.client.get("/readyz")
    assert ready.status_code == 503 and DISK_FULL in ready.json()["detail"], ready.text
    v2_ready = srv.client.get("/v2/health/ready")
    assert v2_ready.status_code == 503 and DISK_FULL in v2_ready.json()["error"], v2_ready.text
    # reads go on
    assert srv.client.get(f"/v1/jobs/{job['id']}").status_code == 200
    assert srv.client.get("/v1/jobs").status_code == 200
    assert srv.client.get(f"/v1/jobs/{job['id']}/metrics").status_code == 200
    assert srv.client.get("/metrics").status_code == 200
    # a DELETE frees space: a job's rows go (its counters' change row fits in the pages it frees)
    assert srv.client.delete(f"/v1/jobs/{trained['id']}").status_code == 204

    free_disk(srv, backend, filler)
    resumed_from = handed["progress"]["epoch"]
    # the worker tries again after a pause that doubles from FITSERVE_POLL_SECONDS while the disk stays full
    srv.wait_until(job["id"], lambda j: j["status"] == "running" and j["progress"]["epoch"] > resumed_from + 50,
                   timeout=120)
    wait_until(lambda: srv.client.get("/readyz").status_code == 200, 60, "ready once space is freed", srv.read_log)
    assert srv.client.post("/v1/jobs", json=tiny_regression()).status_code == 201
    causes = srv.query("SELECT cause, counted FROM job_attempts WHERE job_id = :id", id=job["id"])
    assert causes and all(not counted for _, counted in causes), causes  # interruptions only: no attempt spent
    assert srv.client.delete(f"/v1/jobs/{job['id']}").status_code == 204
    log = srv.read_log()
    assert "Traceback" not in log, log[-3000:]
    assert sum(DISK_FULL in line for line in log.splitlines()) == 1, log[-3000:]  # one line when it happened


def stalled(srv, job_id: str, quiet: float = 1.0):
    """A condition for `wait_until`: the job's progress (what its reports write) has not moved for `quiet` seconds."""
    seen = {"epoch": None, "since": 0.0}

    def holds() -> bool:
        epoch, now = srv.client.get(f"/v1/jobs/{job_id}").json()["progress"]["epoch"], time.monotonic()
        if epoch != seen["epoch"]:
            seen.update(epoch=epoch, since=now)
        return now - seen["since"] >= quiet

    return holds


def fill(folder: Path) -> None:
    """A file, `ballast`, written into `folder` until its file system has no byte left."""
    with open(folder / "ballast", "wb", buffering=0) as f, pytest.raises(OSError):
        while True:
            f.write(b"\0" * 65536)


def mount_tmpfs(size: str) -> Path:
    """A tmpfs of `size` on a folder of its own under the system's temporary folder (a pytest folder is closed to
    other OS users, PostgreSQL's among them); the test is skipped where mounting is not permitted."""
    folder = Path(tempfile.mkdtemp(prefix="fitserve-tmpfs-"))
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True,
                             check=False)
    if mounted.returncode != 0:
        folder.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode(errors='replace').strip()}")
    return folder


def unmount(folder: Path) -> None:
    subprocess.run(["umount", "-l", str(folder)], check=True)
    folder.rmdir()


@pytest.fixture
def tiny_file_system(backend):
    """A 4 MiB tmpfs mounted for the test (root only; else skipped), unmounted after."""
    if backend != "sqlite":
        pytest.skip("a database file on a full file system: SQLite only")
    folder = mount_tmpfs("4m")
    yield folder
    unmount(folder)


def test_a_database_on_a_full_file_system_answers_507_and_works_again_once_space_is_freed(tiny_file_system, databases,
                                                                                          tmp_path):
    """The disk itself full: SQLite's log (-wal) cannot grow, so even a DELETE answers 507 (README, A full disk);
    space freed on the file system by other means (a file removed) lets the job go on."""
    from tests.harness.inprocess import App

    path = tiny_file_system / "fitserve.db"
    srv = App(path, workers=1, db_url=databases.create(path), FITSERVE_CHECKPOINT_SECONDS="0.3",
              FITSERVE_LEASE_SECONDS="3")
    srv.log_path = tmp_path / "fitserve.log"  # the log must not share the full disk
    srv.start()
    try:
        kept = upload(srv, 50, 1).json()["id"]
        job = srv.submit(long_job())
        srv.wait_until(job["id"], lambda j: j["status"] == "running" and j["progress"]["epoch"] > 0)
        fill(tiny_file_system)
        refused = upload(srv, 50, 0)
        assert refused.status_code == 507 and DISK_FULL in refused.json()["detail"], refused.text
        wait_until(lambda: DISK_FULL in srv.client.get("/readyz").text, 30, "readyz names the disk", srv.read_log)
        wait_until(stalled(srv, job["id"]), 30, "the job's curve stops: its writes meet the full disk", srv.read_log)
        assert srv.client.get(f"/v1/jobs/{job['id']}").json()["status"] != "failed"
        deleted = srv.client.delete(f"/v1/datasets/{kept}")  # 204 where its log still has room, else 507: never 500
        assert deleted.status_code == 204 or DISK_FULL in deleted.json()["detail"], deleted.text

        (tiny_file_system / "ballast").unlink()
        wait_until(lambda: srv.client.get("/readyz").status_code == 200, 60, "ready once space is freed", srv.read_log)
        epoch = srv.client.get(f"/v1/jobs/{job['id']}").json()["progress"]["epoch"]
        srv.wait_until(job["id"], lambda j: j["status"] == "running" and j["progress"]["epoch"] > epoch + 50,
                       timeout=60)
        assert srv.client.delete(f"/v1/jobs/{job['id']}").status_code == 204
    finally:
        srv.stop()
    log = srv.read_log()
    assert "Traceback" not in log and sum(DISK_FULL in line for line in log.splitlines()) == 1, log[-3000:]


@pytest.fixture
def tiny_tablespace(backend, databases):
    """A PostgreSQL tablespace on a 16 MiB tmpfs mounted for the test (a local server, root and a superuser only;
    else skipped): its name and folder; dropped and unmounted after."""
    if backend != "postgresql":
        pytest.skip("a tablespace on a full file system: PostgreSQL only (SQLite's is the test above)")
    folder = mount_tmpfs("16m")
    name = f"fitserve_tiny_{uuid.uuid4().hex[:8]}"
    try:
        try:
            shutil.chown(folder, "postgres", "postgres")  # the server's OS user owns a tablespace's folder
            with databases.admin.connect() as conn:
                conn.execute(text(f"CREATE TABLESPACE {name} LOCATION '{folder}'"))
        except (LookupError, DBAPIError) as exc:
            pytest.skip(f"cannot make a tablespace on a tmpfs here: {str(exc).splitlines()[0]}")
        yield name, folder
    finally:
        with databases.admin.connect() as conn:  # its databases are dropped first (the test's `finally`)
            conn.execute(text(f"DROP TABLESPACE IF EXISTS {name}"))
        unmount(folder)


def test_readyz_names_a_full_postgresql_disk_before_any_write_meets_it(tiny_tablespace, databases, tmp_path,
                                                                        monkeypatch):
    """The database lives in a tablespace on a tmpfs that is then filled: with no write of this process meeting it,
    /readyz's probe (a sort spilled to a temporary file in that tablespace) meets SQLSTATE 53100 and names the disk;
    reads go on; once space is freed it is ready again."""
    from tests.harness.inprocess import App

    monkeypatch.setattr(db_faults, "FULL_REMEMBERED_SECONDS", 2.0)  # the wait for ready again, shortened
    monkeypatch.setattr(db_faults, "PROBE_SECONDS", 1.0)
    name, folder = tiny_tablespace
    path = tmp_path / "fitserve.db"  # names the log (off the full disk) and the database's log line
    srv = App(path, workers=0, db_url=databases.create(path, tablespace=name))
    try:
        srv.start()  # and nothing written after: the API's maintenance loop has no counts to fold, no job to rescue
        assert srv.client.get("/readyz").status_code == 200
        fill(folder)
        # the probe's last answer (room) stands for PROBE_SECONDS, then the next one meets the full disk
        wait_until(lambda: srv.client.get("/readyz").status_code == 503, 10, "readyz names the disk", srv.read_log)
        ready = srv.client.get("/readyz").json()["detail"]
        assert DISK_FULL in ready and "the disk of the PostgreSQL server" in ready, ready
        assert srv.client.get("/v1/jobs").status_code == 200  # reads go on
        refused = srv.client.post("/v1/jobs", json=tiny_regression())  # a write meets the disk as the probe did
        assert refused.status_code == 507 and DISK_FULL in refused.json()["detail"], refused.text
        (folder / "ballast").unlink()
        wait_until(lambda: srv.client.get("/readyz").status_code == 200, 30, "ready once space is freed", srv.read_log)
        assert srv.client.post("/v1/jobs", json=tiny_regression()).status_code == 201
    finally:
        (folder / "ballast").unlink(missing_ok=True)
        srv.stop()
        databases.drop(srv.db_url)
    log = srv.read_log()
    assert "Traceback" not in log and sum(DISK_FULL in line for line in log.splitlines()) == 1, log[-3000:]


def test_a_database_corrupted_under_a_running_api_is_named_by_every_answer_and_the_workers_wait(make_app, backend):
    """`serve` refuses a corrupt file at start (test_db_check.py); one that goes bad while it runs (here: damaged
    before an in-process app, which runs no check, opens it) answers 503 saying so and how to restore, /readyz names
    it rather than the workers, and the workers wait instead of crash-looping. PostgreSQL: its server raises
    SQLSTATE XX001 data_corrupted (from a trigger, as for 53100 above) and the answers name it likewise."""
    srv = make_app(workers=1)
    if backend == "sqlite":
        corrupt_sqlite_file(srv.db_url.removeprefix("sqlite:///"), "pages")
        srv.start()
        why, restore, answers = "database disk image is malformed", "copy the backup over", [srv.client.get("/v1/jobs")]
    else:
        srv.start()
        srv.query("CREATE FUNCTION fitserve_corrupt() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                  "RAISE EXCEPTION 'invalid page in block 7 of relation base/1/2' USING ERRCODE = 'data_corrupted'; "
                  "END $$")
        srv.query("CREATE TRIGGER corrupt BEFORE INSERT ON jobs FOR EACH ROW EXECUTE FUNCTION fitserve_corrupt()")
        why, restore, answers = "invalid page in block 7", "pg_restore into an empty database", []
    answers += [srv.client.post("/v1/jobs", json=tiny_regression()), srv.client.get("/readyz")]
    for answer in answers:
        assert answer.status_code == 503 and f"is corrupt ({why}" in answer.text, answer.text
        assert restore in answer.json()["detail"], answer.text
    v2_ready = srv.client.get("/v2/health/ready")
    assert v2_ready.status_code == 503 and "is corrupt" in v2_ready.json()["error"], v2_ready.text
    assert srv.client.get("/metrics").status_code in (200, 503)  # its counters live outside the damaged table
    wait_until(lambda: srv.query("SELECT count(*) FROM workers")[0][0] == 1, 10, "the worker registered")
    log = srv.read_log()
    assert "Traceback" not in log and sum("is corrupt" in line for line in log.splitlines()) == 1, log[-3000:]
    srv.stop()  # fails the test if a worker thread died


def test_a_key_lookup_that_meets_a_corrupt_database_answers_503_naming_it(make_app, backend):
    """A key is read before any route runs (service/api/intake.py): a corrupt `api_keys` answers as a route's read
    would, 503 naming the corruption and how to restore, never a 500. PostgreSQL: the table's reads raise SQLSTATE
    XX001 data_corrupted, through a view in its place."""
    srv = with_keys(make_app(workers=0))
    if backend == "sqlite":
        corrupt_sqlite_file(srv.db_url.removeprefix("sqlite:///"), "pages", table="api_keys")
        srv.start()
        why = "database disk image is malformed"
    else:
        srv.start()
        srv.query("ALTER TABLE api_keys RENAME TO api_keys_kept")
        srv.query("CREATE FUNCTION fitserve_corrupt_read() RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN "
                  "RAISE EXCEPTION 'invalid page in block 3 of relation base/1/3' USING ERRCODE = 'data_corrupted'; "
                  "END $$")
        srv.query("CREATE VIEW api_keys AS SELECT * FROM api_keys_kept WHERE fitserve_corrupt_read()")
        why = "invalid page in block 3"
    for answer in (srv.client.get("/v1/jobs", headers=as_(srv, "alice")),
                   srv.client.post("/v1/jobs", json=tiny_regression(), headers=as_(srv, "bob"))):
        assert answer.status_code == 503 and f"is corrupt ({why}" in answer.text, answer.text
    assert "Traceback" not in srv.read_log()


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_lease_renewals_and_heartbeats_that_meet_a_full_disk_are_tried_again_and_logged_once(make_app, backend):
    """A running job's lease renewals and its worker's heartbeats fail for a full disk (the run's other writes go
    through): the lease thread and the heartbeat log it once and go on trying, no traceback, no dead thread; the lease
    expires, the job is requeued and trains again once the disk has room."""
    if backend != "postgresql":
        pytest.skip("on SQLite a renewal rewrites its row in place: past the cap it never needs a new page, and a full "
                    "file system fails every write at once (above)")
    # PostgreSQL's limit on a session idle in a transaction defaults to the lease: 1.5 s would also end the session
    # of a worker thread that a busy machine starves that long (its thread then dies), which is not this test's fault
    srv = make_app(workers=1, FITSERVE_LEASE_SECONDS="1.5", FITSERVE_SWEEP_SECONDS="0.5",
                   FITSERVE_DB_IDLE_IN_TRANSACTION_SECONDS="30").start()
    job = srv.submit(long_job())
    srv.wait_until(job["id"], lambda j: j["status"] == "running" and j["progress"]["epoch"] > 0)
    srv.query("CREATE FUNCTION fitserve_disk_full() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
              "RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full'; END $$")
    srv.query("CREATE TRIGGER disk_full BEFORE UPDATE OF lease_expires_at ON jobs FOR EACH ROW "  # renewals alone
              "WHEN (OLD.status = 'running' AND NEW.status = 'running') EXECUTE FUNCTION fitserve_disk_full()")
    srv.query("CREATE TRIGGER disk_full BEFORE UPDATE ON workers FOR EACH ROW EXECUTE FUNCTION fitserve_disk_full()")
    srv.wait_until(job["id"], lambda j: "lease expired" in (j["error"] or ""), timeout=30)
    srv.query("DROP TRIGGER disk_full ON jobs")
    srv.query("DROP TRIGGER disk_full ON workers")
    srv.wait_until(job["id"], lambda j: j["status"] == "running" and j["attempt"] > 1, timeout=60)
    assert srv.client.delete(f"/v1/jobs/{job['id']}").status_code == 204
    log = srv.read_log()
    assert "Traceback" not in log and sum(DISK_FULL in line for line in log.splitlines()) == 1, log[-3000:]
