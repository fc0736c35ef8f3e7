"""The schema comes only from the migrations: they match the models and run down and up again, on each back end."""

import json

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.orm import Session

from modelzoo.metrics import EPOCH_METRICS
from service.curves import Columns
from service.db import make_engine
from service.migrations import downgrade, in_models, upgrade
from service.models import Base
from service.repositories import jobs as job_repo
from service.repositories import metrics as metric_repo
from tests.specs import tiny_regression


def test_migrations_match_the_models(tmp_path, databases):
    url = databases.create(tmp_path / "schema.db", migrated=False)
    upgrade(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"include_name": in_models}), Base.metadata)
    engine.dispose()
    assert diff == []


def test_migrations_go_down_to_nothing_and_up_again(tmp_path, databases):
    url = databases.create(tmp_path / "updown.db", migrated=False)
    upgrade(url)
    downgrade(url, "base")
    engine = make_engine(url)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()
    upgrade(url)
    engine = make_engine(url)
    assert {"jobs", "metric_chunks", "job_weights", "checkpoints", "datasets"} <= set(inspect(engine).get_table_names())
    engine.dispose()


def stored_points(url: str) -> list[tuple]:
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT job_id, step, epoch, loss, val_loss, accuracy, val_accuracy FROM metric_points ORDER BY job_id, step")
        ).all()
    engine.dispose()
    return [tuple(r) for r in rows]


def test_curves_stored_as_rows_move_into_chunks_and_back(tmp_path, databases):
    """0006 moves every metric_points row into chunks; its downgrade gives back the same rows."""
    url = databases.create(tmp_path / "curves.db", migrated=False)
    upgrade(url, "0005")
    engine = make_engine(url)
    points = {
        "a" * 32: [(s, s, 1.0 / s, None if s % 3 else 2.0 / s, None, None) for s in range(1, 2501)],
        "b" * 32: [(10 * s, s, 0.5 + s, 0.25, s / 7, (s % 5) / 5) for s in range(1, 4)],
    }
    with engine.begin() as conn:
        for job_id, rows in points.items():
            conn.execute(
                text("INSERT INTO jobs (id, status, spec, epochs, epoch, step, attempt, max_attempts, cancel_requested,"
                     " created_at) VALUES (:id, 'succeeded', '{}', 1, 0, 0, 1, 3, false, '2026-11-27 00:00:00')"),
                {"id": job_id},
            )
            conn.execute(
                text("INSERT INTO metric_points VALUES (:j, :s, :e, :l, :v, :a, :va)"),
                [dict(zip(("j", "s", "e", "l", "v", "a", "va"), (job_id, *r))) for r in rows],
            )
    engine.dispose()
    before = stored_points(url)

    upgrade(url)
    engine = make_engine(url)
    with Session(engine) as session:
        for job_id, rows in points.items():
            got = metric_repo.list_points(session, job_id, 0, 10_000)
            assert [(p.step, p.epoch, p.loss, p.val_loss, p.accuracy, p.val_accuracy) for p in got] == rows
            assert metric_repo.count_points(session, job_id, 1000) == sum(r[0] > 1000 for r in rows)
    engine.dispose()

    downgrade(url, "0005")
    assert stored_points(url) == before


def test_a_chunk_with_every_metric_is_stored_and_0034s_downgrade_drops_only_such_chunks(tmp_path, databases):
    url = databases.create(tmp_path / "wide.db", migrated=False)
    upgrade(url)
    engine = make_engine(url)
    names = [f"{prefix}{name}" for prefix in ("", "val_") for name in EPOCH_METRICS["classification"]]
    wide = Columns(step=[1, 2], epoch=[1, 2], loss=[0.5, 0.4], val_loss=[0.6, 0.5], accuracy=[0.7, 0.8],
                   val_accuracy=[0.6, 0.7], **{name: [0.25, 0.5] for name in names})
    plain = Columns(step=[1], epoch=[1], loss=[0.5])
    with Session(engine) as session, session.begin():
        for job_id in ("w" * 32, "p" * 32):
            session.execute(
                text("INSERT INTO jobs (id, status, spec, epochs, epoch, step, attempt, max_attempts, cancel_requested,"
                     " created_at) VALUES (:id, 'succeeded', '{}', 1, 0, 0, 1, 3, false, '2026-12-07 00:00:00')"),
                {"id": job_id},
            )
        metric_repo.insert_points(session, [("w" * 32, wide), ("p" * 32, plain)])
    with Session(engine) as session:
        (last, _) = reversed(metric_repo.list_points(session, "w" * 32, 0, 10))
        assert len(",".join(["step", "epoch", "loss", "val_loss", "accuracy", "val_accuracy", *names])) > 100
        assert all(getattr(last, name) == 0.5 for name in names)
    engine.dispose()
    downgrade(url, "0033")
    engine = make_engine(url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT job_id FROM metric_chunks")).scalars().all() == ["p" * 32]
    engine.dispose()


def test_an_installed_wheel_finds_its_migrations_with_no_checkout_beside_it(tmp_path):
    """The Docker image runs `pip install ./client .`: its `fitserve db upgrade` (and `serve`, which upgrades first)
    must find the migrations the server's wheel installed under <prefix>/share/fitserve."""
    import importlib.metadata
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    source = tmp_path / "source"  # a copy, so the build leaves nothing in the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "alembic.ini"):
        shutil.copy(root / name, source / name)
    for name in ("alembic", "service", "workers", "modelzoo", "server"):
        shutil.copytree(root / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", tmp_path / "wheel", source], check=True)
    [wheel] = (tmp_path / "wheel").glob("fitserve-*.whl")
    prefix = tmp_path / "prefix"
    # --ignore-installed: without it pip would first uninstall this environment's own fitserve
    subprocess.run([*pip, "install", "--no-deps", "--ignore-installed", "--prefix", prefix, wheel], check=True)
    assert importlib.metadata.version("fitserve")  # still installed here, for the tests after this one
    [site] = prefix.glob("lib/python*/site-packages")
    db = tmp_path / "installed.db"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site), "FITSERVE_DATABASE_URL": f"sqlite:///{db}"}
    run = subprocess.run([sys.executable, "-c", "import service; print(service.__file__)"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, check=True)
    assert run.stdout.startswith(str(site))  # the installed copy, not this checkout
    run = subprocess.run([sys.executable, "-m", "fitserve.cli", "db", "upgrade"], cwd=tmp_path, env=env,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    engine = make_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    engine.dispose()
    latest = sorted(p.name for p in (root / "alembic" / "versions").glob("[0-9]*.py"))[-1]
    assert version == latest.split("_")[0]


def test_sweep_members_made_without_tag_rows_get_them(make_app):
    """0018 indexes the tags of sweep members that have none indexed (a TPE round's, before it), and no others."""
    app = make_app(workers=0).start()
    body = {"name": "tagged", "base": {**tiny_regression(), "tags": {"model": "line"}}, "space": {"lr": [0.01, 0.02]},
            "tags": {"team": "vision"}}
    sweep = app.client.post("/v1/sweeps", json=body).json()
    members = [e["job_id"] for e in app.client.get(f"/v1/sweeps/{sweep['id']}").json()["leaderboard"]]
    unindexed, indexed = members
    app.query("DELETE FROM job_tags WHERE job_id = :id", id=unindexed)
    before = app.query("SELECT job_id, key, value FROM job_tags ORDER BY job_id, key")
    url = app.db_url
    app.stop()
    downgrade(url, "0017")
    upgrade(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT job_id, key, value FROM job_tags ORDER BY job_id, key")).all()
    engine.dispose()
    assert [tuple(r) for r in rows if r[0] == indexed] == [tuple(r) for r in before if r[0] == indexed]
    assert [tuple(r[1:]) for r in rows if r[0] == unindexed] == [("model", "line"), ("team", "vision")]


def test_jobs_made_before_0022_are_found_by_name_and_sorted_by_metric(tmp_path, databases):
    """0022 indexes the names already stored (SQLite's trigram table), 0023 the metrics already stored: the pages
    read through the indexes hold the jobs made before, and the names keep following renames."""
    from service.models import Job
    from service.repositories.job_search import JobFilter, list_jobs, update_job

    url = databases.create(tmp_path / "before.db", migrated=False)
    upgrade(url, "0019")
    engine = make_engine(url)
    rows = [(f"{i:032x}", name, loss) for i, (name, loss) in
            enumerate([("Needle one", 0.3), ("hay", 0.1), (None, 0.2), ("a NEEDLE", None), ("haystack", 0.5)])]
    with engine.begin() as conn:
        for i, (job_id, name, loss) in enumerate(rows):
            conn.execute(
                text("INSERT INTO jobs (id, owner_id, name, status, spec, tags, epochs, epoch, step, attempt,"
                     " max_attempts, cancel_requested, priority, interruptions, latest_metrics, created_at)"
                     " VALUES (:id, 'alice', :name, 'succeeded', '{}', '{}', 1, 1, 1, 1, 3, false, 0, 0, :latest,"
                     " :at)"),
                {"id": job_id, "name": name, "latest": None if loss is None else f'{{"loss": {loss}}}',
                 "at": f"2026-12-01 00:00:{i:02d}"},
            )
    engine.dispose()
    upgrade(url)
    engine = make_engine(url)
    with Session(engine) as s:
        assert {job.name for job in list_jobs(s, "alice", JobFilter(name="needle"), None, 10)} == {"Needle one",
                                                                                                   "a NEEDLE"}
        by_loss = [job.latest_metrics for job in list_jobs(s, "alice", JobFilter(sort="loss"), None, 10)]
        assert by_loss == [{"loss": 0.1}, {"loss": 0.2}, {"loss": 0.3}, {"loss": 0.5}, None]
        update_job(s, s.get(Job, rows[1][0]), {"name": "needle at last"})
        assert len(list_jobs(s, "alice", JobFilter(name="needle"), None, 10)) == 3
    engine.dispose()


def test_0013_fills_the_counters_as_a_recount_does(make_app):
    """0013 fills job_counts from the history (SQLite: in one read of the jobs), and 0036 its checkpoint and dataset
    bytes: the same rows a recount builds."""
    from service.repositories import job_counts

    app = make_app(workers=1).start()
    for epochs in (3, 5):
        app.train(tiny_regression(epochs=epochs, name="done"))  # each keeps its final state in checkpoints
    wait = [app.train(tiny_regression(epochs=2))["id"] for _ in range(2)]
    csv = b"x,y\n" + b"".join(f"{i},{2 * i}\n".encode() for i in range(20))
    assert app.client.post("/v1/datasets", files={"file": ("d.csv", csv)}, data={"target": "y"}).status_code == 201
    url = app.db_url
    app.stop()
    downgrade(url, "0012")
    engine = make_engine(url)
    with engine.begin() as conn:  # a job that never ran, one cancelled, and another owner's
        conn.execute(text("UPDATE jobs SET status = 'queued', started_at = NULL, finished_at = NULL WHERE id = :id"),
                     {"id": wait[0]})
        conn.execute(text("UPDATE jobs SET status = 'cancelled', owner_id = 'bob' WHERE id = :id"), {"id": wait[1]})
    engine.dispose()
    upgrade(url)
    engine = make_engine(url)
    counts = ("SELECT owner_key, status, jobs, training_seconds, curve_bytes, weights_bytes, last_started_at,"
              " checkpoint_bytes, dataset_bytes FROM job_counts ORDER BY owner_key, status")
    with Session(engine) as s:
        filled = [tuple(row) for row in s.execute(text(counts))]
        datasets = s.scalar(text("SELECT sum(length(data)) FROM datasets"))
        job_counts.recount(s)
        recounted = [tuple(row) for row in s.execute(text(counts))]
    engine.dispose()
    assert len(filled) >= 4 and any(row[4] > 0 and row[5] > 0 and row[7] > 0 for row in filled)
    assert [row[8] for row in filled if row[1] == ""] == [datasets] and datasets > 0
    assert filled == recounted


def jobs_at(url: str, revision: str, specs: list, owners: list, statuses: list | None = None) -> None:
    """The database at `revision` with a job of each spec (as json.dumps writes it), owner and status (succeeded
    unless said; a running one is worker "w"'s first attempt), job i's id f"{i:032x}"."""
    upgrade(url, revision)
    engine = make_engine(url)
    with engine.begin() as conn:
        for i, (spec, owner) in enumerate(zip(specs, owners, strict=True)):
            status = statuses[i] if statuses else "succeeded"
            conn.execute(
                text("INSERT INTO jobs (id, owner_id, status, worker_id, spec, tags, epochs, epoch, step, attempt,"
                     " max_attempts, cancel_requested, priority, interruptions, created_at)"
                     " VALUES (:id, :owner, :status, :worker, :spec, '{}', 1, 1, 1, 1, 3, false, 0, 0, :at)"),
                {"id": f"{i:032x}", "owner": owner, "status": status, "worker": "w" if status == "running" else None,
                 "spec": json.dumps(spec), "at": f"2026-12-01 00:00:{i:02d}"},
            )
    engine.dispose()


def stored_params(url: str) -> list[tuple]:
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT job_id, owner_id, path, num_value, text_value FROM job_params")).all()
    engine.dispose()
    return sorted(tuple(row) for row in rows)


def test_0038_indexes_the_specs_already_stored_as_new_jobs_are(tmp_path, databases):
    """0038 writes each stored job's job_params rows: the rows repositories/job_params.py writes for a new job of
    that spec, and a params filter finds the jobs made before it."""
    from service.repositories.job_params import spec_params
    from service.repositories.job_search import JobFilter, list_jobs
    from service.schemas.job_filter import parse_filter

    url = databases.create(tmp_path / "params.db", migrated=False)
    specs = [{"optimizer": {"kind": "adam", "lr": 0.01}, "hidden": [8, 16], "flag": True, "name": None},
             {"optimizer": {"kind": "sgd", "lr": "0.01"}, "tags": {"a.b": "x", "t": "y"}, "data": {"x": list(range(30))}},
             {}]
    owners = [None] * 3 + ["alice"] * 3 + ["bob"] * 3  # more than one owner, and none
    jobs_at(url, "0037", specs * 3, owners)
    upgrade(url)
    assert stored_params(url) == sorted(
        (f"{i:032x}", owners[i], *values) for i, spec in enumerate(specs * 3) for values in spec_params(spec)
    )
    engine = make_engine(url)
    with Session(engine) as s:
        found = list_jobs(s, "alice", JobFilter(terms=parse_filter("params.optimizer.lr = 0.01")), None, 10)
        assert [job.id for job in found] == [f"{3:032x}"]
    engine.dispose()


def nested(depth: int, leaf) -> dict:
    return leaf if depth == 0 else {"d": nested(depth - 1, leaf)}


# specs whose rows the SQL walk of 0038 could get wrong: each rule of spec_params at its edge
TRICKY_SPECS = [
    {"a": [[1, 2, [3, {"b": 4, "c": [True, None, "x"]}]], {"c": "y"}], "e": [], "f": {}},  # nested lists
    {"s": "é" * 256, "t": "é" * 257, "u": "x" * 256, "v": "x" * 257, "w": "😀" * 256, "x": "😀" * 257,  # long strings
     "json": "[1, 2]", "obj": '{"a": 1}', "quote": 'a"b\\c\n', "empty": "", "tab": "\t", "sep": "\u2028"},
    {"t": True, "f": False, "l": [True, 1, False, 0], "n": None},  # booleans are no numbers
    {"a.b": 1, "a-b": 2, "1a": 3, "": 4, "é": 5, "with space": 6, "key\n": 7, "_ok": 8, "A9_z": 9, "x$": 10,
     "ok": {"bad key": 11, "good": 12, "0": 13}},  # odd keys
    {"long": list(range(40)), "rows": [{"i": i} for i in range(20)], "grid": [list(range(20))] * 20},  # > 16 items
    {"deep": nested(7, 1), "deeper": nested(8, 2), "deepest": nested(12, 3), "list": nested(6, [[1, [2]]])},  # depth
    {"k" * 100: {"k" * 100: {"k" * 54: 1, "k" * 55: 2, "k" * 56: 3}}},  # the path's 256 characters
    {"ints": [0, -1, 2**53 + 1, 2**63 - 1, 2**63 + 5, 10**30], "floats": [0.1, -0.0, 1e-300, 5e-324, 1.7976931348623157e308,
     2.2250738585072014e-308, 123456789.123456789, 1e23]},  # numbers as doubles
    [{"a": 1}, 2, "three"],  # a list at the top
]


def test_0038s_sql_walk_writes_the_rows_spec_params_does(tmp_path, databases):
    """0038 walks the specs in SQL: the rows are service/repositories/job_params.py's for specs made to differ, on
    each back end (and those SQL leaves to Python: SQLite's Infinity, a \\u0000 in a string)."""
    from service.repositories.job_params import spec_params

    url = databases.create(tmp_path / "walk.db", migrated=False)
    specs = [*TRICKY_SPECS, {"nul": {"bad key": "a\x00b", "ok": 1}}]
    if databases.backend == "sqlite":  # PostgreSQL's json takes neither
        specs += [{"inf": float("inf"), "ok": [1]}, {"nul": "a\x00b", "ok": 2}]
    owners = [f"owner{i % 3}" for i in range(len(specs))]
    jobs_at(url, "0037", specs, owners)
    upgrade(url)
    expected = sorted((f"{i:032x}", owners[i], *values) for i, spec in enumerate(specs) for values in spec_params(spec))
    assert len(expected) > 150
    assert stored_params(url) == expected


def checkpoints_read(url: str, sql: str) -> dict:
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = dict(conn.execute(text(sql)).all())
    engine.dispose()
    return rows


def test_0037_marks_the_succeeded_jobs_checkpoints_final_and_no_other(tmp_path, databases):
    """0037: the checkpoints of succeeded jobs are final states, those of the others not, and one saved after it
    is not final either; the final states are not written (the column's default is TRUE), so on PostgreSQL each
    keeps its row version."""
    url = databases.create(tmp_path / "final.db", migrated=False)
    statuses = ["succeeded", "failed", "cancelled", "running", "queued", "succeeded", "running"]
    jobs_at(url, "0036", [{}] * len(statuses), [None] * len(statuses), statuses)
    engine = make_engine(url)
    with engine.begin() as conn:
        for i in range(len(statuses) - 1):  # the last running job saves its first checkpoint after the upgrade
            conn.execute(text("INSERT INTO checkpoints (job_id, attempt, epoch, data, created_at)"
                              " VALUES (:id, 1, 1, :data, '2026-12-01 00:01:00')"), {"id": f"{i:032x}", "data": b"x"})
    engine.dispose()
    versions = "SELECT job_id, xmin::text FROM checkpoints" if databases.backend == "postgresql" else None
    before = checkpoints_read(url, versions) if versions else {}
    upgrade(url)
    engine = make_engine(url)
    with Session(engine) as s:
        assert job_repo.save_checkpoint(s, f"{len(statuses) - 1:032x}", "w", 1, 1, b"y")
        s.commit()
    engine.dispose()
    finals = checkpoints_read(url, "SELECT job_id, final FROM checkpoints")
    assert finals == {f"{i:032x}": status == "succeeded" for i, status in enumerate(statuses)}
    if versions:
        after = checkpoints_read(url, versions)
        assert [after[job_id] == version for job_id, version in sorted(before.items())] == [
            status == "succeeded" for status in statuses[:-1]]
