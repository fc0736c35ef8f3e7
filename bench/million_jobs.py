"""Flat at a million jobs (issue 30): what a scrape, a usage read, a claim and an owner's pages cost as stored jobs grow.

    .venv/bin/python -m bench.million_jobs [--sizes 10000 100000] [--backends sqlite postgresql] [--calls 20]

1. Template rows: `fitserve serve` (one worker, SQLite) trains a few tiny jobs with names and tags; their rows
   (jobs, metric_chunks, job_weights) are what every filled job copies.
2. Fill: a database at migration 0012 (the schema before the counters) gets N jobs by SQL, over --owners owners:
   one owner, `big`, with 10% of them; 5% of all queued, 0.1% running, the rest succeeded with the template's
   curve and weights; two tags each (team: one of 10, run: one of 100), a name and a loss.
3. Baseline: a copy of that database upgraded by the migrations of --baseline (a commit, exported to a temporary
   folder; timed) and measured by its code.
4. This checkout: the same database upgraded to head one revision at a time (the migrations that add the counters
   and indexes and fill them from the history; each timed), then measured by this checkout's code.

Each operation runs --calls times in one process (one pooled connection, as a server's): p50 and p99 are of the
calls after the 10th, where psycopg prepares a statement and PostgreSQL may switch to a generic plan. HTTP calls
go through the real app in process (an ASGI client), as the `big` owner. A claim is one transaction, rolled back,
so each claim sees the same queue. Retention deletes 200 ended jobs a tick, 10 ticks, last. ratio = baseline p50 /
new p50. On PostgreSQL a last table runs the baseline's tag filter and today's 20 times on one connection, with
psycopg's defaults and with plan_cache_mode=force_custom_plan (what service/db.py sets).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.specs import tiny_regression

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
BASELINE = "7b87d1f"  # main before the counters (issue 30)
WARM_CALLS = 10
BIG = "big"
TINY = tiny_regression(epochs=50)
OPERATIONS = [  # (label, HTTP path or None for a call of the code)
    ("GET /metrics", "/metrics"),
    ("GET /v1/usage, big owner", "/v1/usage"),
    ("claim, fair share", None),
    ("claim, fifo", None),
    ("GET /v1/jobs?tag=team:none, big owner", "/v1/jobs?tag=team:none"),
    ("GET /v1/jobs?tag=team:t3, big owner", "/v1/jobs?tag=team:t3"),
    ("GET /v1/jobs?name=none, big owner", "/v1/jobs?name=none"),
    ("GET /v1/jobs?name=fit-12, big owner", "/v1/jobs?name=fit-12"),  # a part thousands of names hold
    ("GET /v1/jobs?sort=loss, big owner", "/v1/jobs?sort=loss"),
    ("GET /v1/jobs first page, big owner", "/v1/jobs"),
    ("retention tick deleting 200", None),
]


# ---- 1. template rows


def template_rows() -> dict[str, list[dict]]:
    """Rows the API and a worker wrote for a few trained jobs: jobs, metric_chunks, job_weights."""
    from sqlalchemy import create_engine, text

    from bench.common import Service

    with Service(workers=1, owners=("tpl",)) as service:
        ids = [service.submit({**TINY, "name": f"fit-{i}", "tags": {"team": "t0"}}, "tpl") for i in range(3)]
        for job_id in ids:
            service.wait(job_id, poll=0.05, owner="tpl")
        engine = create_engine(service.env["FITSERVE_DATABASE_URL"])
        with engine.connect() as conn:
            rows = {table: [dict(row._mapping) for job_id in ids
                            for row in conn.execute(text(f"SELECT * FROM {table} WHERE {key} = :id"), {"id": job_id})]
                    for table, key in (("jobs", "id"), ("metric_chunks", "job_id"), ("job_weights", "job_id"))}
        engine.dispose()
    return rows


# ---- 2. fill


def fill(url: str, n_jobs: int, n_owners: int, template: dict[str, list[dict]]) -> float:
    """N jobs copied from the template rows into a database at 0012; returns the seconds it took."""
    from sqlalchemy import JSON, MetaData, create_engine

    from service.migrations import upgrade

    started = time.perf_counter()
    upgrade(url, "0012")
    engine = create_engine(url)
    postgresql = engine.dialect.name == "postgresql"
    meta = MetaData()
    meta.reflect(engine, only=["jobs", "job_tags", "metric_chunks", "job_weights"])
    jobs, tags, chunks, weights = (meta.tables[name] for name in ("jobs", "job_tags", "metric_chunks", "job_weights"))
    for column in jobs.columns:  # SQLite reflects JSON as text: bind dicts as JSON either way
        if column.name in ("spec", "tags", "latest_metrics", "best_metrics", "evaluation"):
            column.type = JSON()
    rng = random.Random(30)
    start = datetime.now(UTC) - timedelta(days=30)
    step = timedelta(days=29) / n_jobs

    def at(moment: datetime):
        return moment if postgresql else moment.replace(tzinfo=None)

    batch: dict[str, list[dict]] = {"jobs": [], "tags": [], "chunks": [], "weights": []}
    with engine.begin() as conn:
        for i in range(n_jobs):
            t = template["jobs"][i % len(template["jobs"])]
            job_id = uuid.uuid4().hex
            owner = BIG if rng.random() < 0.1 else f"owner{rng.randrange(n_owners):04d}"
            draw = rng.random()
            status = "queued" if draw < 0.05 else "running" if draw < 0.051 else "succeeded"
            created = start + i * step
            ran = status != "queued"
            row = {c.name: t.get(c.name) for c in jobs.columns}
            loss = rng.random()
            row.update(
                id=job_id, owner_id=owner, sweep_id=None, alias=None, status=status, name=f"fit-{i}",
                tags={"team": f"t{i % 10}", "run": f"r{i % 100}"}, created_at=at(created),
                started_at=at(created + timedelta(seconds=1)) if ran else None,
                finished_at=at(created + timedelta(seconds=2 + rng.random())) if status == "succeeded" else None,
                latest_metrics={**as_json(t["latest_metrics"]), "loss": loss} if ran else None, best_metrics=None,
                epoch=t["epoch"] if ran else 0, step=t["step"] if ran else 0, attempt=1 if ran else 0,
                worker_id="gone" if status == "running" else None,
                lease_expires_at=at(datetime.now(UTC) + timedelta(days=1)) if status == "running" else None,
                spec=as_json(t["spec"]),
                evaluation=None, error=None,
            )
            batch["jobs"].append(row)
            batch["tags"] += [{"job_id": job_id, "key": k, "value": v} for k, v in row["tags"].items()]
            if ran:
                batch["chunks"] += [{**c, "job_id": job_id} for c in template["metric_chunks"]
                                    if c["job_id"] == t["id"]]
            if status == "succeeded":
                batch["weights"] += [{**w, "job_id": job_id, "created_at": row["finished_at"]}
                                     for w in template["job_weights"] if w["job_id"] == t["id"]]
            if len(batch["jobs"]) == 5000 or i == n_jobs - 1:
                for table, key in ((jobs, "jobs"), (tags, "tags"), (chunks, "chunks"), (weights, "weights")):
                    if batch[key]:
                        conn.execute(table.insert(), batch[key])
                    batch[key] = []
    analyze(engine)
    engine.dispose()
    return time.perf_counter() - started


def as_json(value):
    """A JSON column of a template row: SQLite's text, parsed."""
    return json.loads(value) if isinstance(value, str) else value


def analyze(engine) -> None:
    """PostgreSQL: statistics as autovacuum keeps them on a running service (SQLite's app runs no ANALYZE)."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")


# ---- 3, 4. measure (in a process of its own, on the code of the tree it runs in)


def measure(url: str, calls: int) -> dict[str, list[float]]:
    """Milliseconds of each call of each operation, by the code this process imports (its PYTHONPATH's tree)."""
    os.environ.update({
        "FITSERVE_DATABASE_URL": url,
        "FITSERVE_RATE_LIMIT_PER_SECOND": "1000000",
        "FITSERVE_RATE_LIMIT_BURST": "1000000",
    })
    from fastapi.testclient import TestClient
    from sqlalchemy.orm import Session

    from service.app import create_app
    from service.db import get_engine, session_scope
    from service.models import utcnow
    from service.repositories import jobs as job_repo
    from service.services.auth import create_key
    from service.services.retention import delete_expired_jobs

    with session_scope() as s:
        _, token = create_key(s, BIG, "bench")
    client = TestClient(create_app(), base_url="http://127.0.0.1")  # no lifespan: no maintenance loop
    headers = {"Authorization": f"Bearer {token}"}
    engine = get_engine()

    def claim(order: str):
        with Session(engine) as session:
            assert job_repo.claim_next_job(session, "bench", 30.0, order, None) is not None
            session.rollback()

    def run(label: str, path: str | None):
        if path is not None:
            response = client.get(path, headers=headers)
            assert response.status_code == 200, (label, response.status_code, response.text[:200])
        elif label.startswith("claim"):
            claim("fifo" if "fifo" in label else "fair")
        else:
            delete_expired_jobs(utcnow() + timedelta(days=1), 200)

    spent: dict[str, list[float]] = {}
    for label, path in OPERATIONS:
        n = 10 if label.startswith("retention") else calls
        spent[label] = []
        for _ in range(n):
            started = time.perf_counter()
            run(label, path)
            spent[label].append((time.perf_counter() - started) * 1000)
    return spent


def measure_in(tree: Path, url: str, calls: int) -> dict[str, list[float]]:
    """`measure` in a process that imports the code of `tree`."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run([sys.executable, __file__, "--measure", url, "--calls", str(calls), "--out", out.name],
                       cwd=tree, env=env, check=True)
        return json.loads(Path(out.name).read_text())


def exported(commit: str, into: Path) -> Path:
    """The files of `commit`, as a folder."""
    archive = subprocess.run(["git", "archive", commit], cwd=ROOT, capture_output=True, check=True).stdout
    into.mkdir()
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def upgrade_timed(url: str) -> dict[str, float]:
    """Seconds of each revision on the way from 0012 to head (the counters filled from the history, the indexes
    built), statistics refreshed after."""
    from sqlalchemy import create_engine

    from service.migrations import upgrade

    spent = {}
    for revision in sorted(path.name.split("_")[0] for path in (ROOT / "alembic" / "versions").glob("[0-9]*.py")):
        if revision > "0012":
            started = time.perf_counter()
            upgrade(url, revision)
            spent[revision] = time.perf_counter() - started
    engine = create_engine(url)
    analyze(engine)
    engine.dispose()
    return spent


def upgrade_in(tree: Path, url: str) -> float:
    """Seconds to upgrade to head by the migrations of `tree` (in a process that imports its code), statistics
    refreshed after."""
    code = ("import sys, time; from service.migrations import upgrade; started = time.perf_counter();"
            " upgrade(sys.argv[1]); print(time.perf_counter() - started)")
    run = subprocess.run([sys.executable, "-c", code, url], cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)},
                         capture_output=True, text=True, check=True)
    from sqlalchemy import create_engine

    engine = create_engine(url)
    analyze(engine)
    engine.dispose()
    return float(run.stdout.split()[-1])


class Databases:
    """A filled database and a copy of it, on one back end; removed on exit."""

    def __init__(self, backend: str, postgres_url: str, folder: Path):
        self.backend, self.postgres_url, self.folder, self.names = backend, postgres_url, folder, []

    def url(self, name: str) -> str:
        if self.backend == "sqlite":
            return f"sqlite:///{self.folder}/{name}.db"
        from sqlalchemy.engine import make_url

        return make_url(self.postgres_url).set(database=name).render_as_string(hide_password=False)

    def admin(self, sql: str) -> None:
        from sqlalchemy import create_engine

        engine = create_engine(self.postgres_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql(sql)
        engine.dispose()

    def create(self, name: str, template: str | None = None) -> str:
        if self.backend == "postgresql":
            self.admin(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
            self.names.append(name)
        elif template is not None:
            shutil.copy(self.folder / f"{template}.db", self.folder / f"{name}.db")
        return self.url(name)

    def close(self) -> None:
        for name in self.names:
            self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        if self.backend == "sqlite":  # a million jobs are some GB a copy
            for path in self.folder.glob("*.db*"):
                path.unlink()


# the tag filter as the baseline wrote it and as it is now, for the plan cache table
TAG_QUERIES = {
    "baseline's tag filter": "SELECT jobs.* FROM jobs WHERE jobs.owner_id = :owner AND EXISTS (SELECT job_tags.job_id"
    " FROM job_tags WHERE job_tags.job_id = jobs.id AND job_tags.key = :key AND job_tags.value = :value)"
    " ORDER BY jobs.created_at DESC, jobs.id DESC LIMIT 51",
    "tag filter now": "SELECT jobs.* FROM jobs JOIN job_tags t ON t.job_id = jobs.id WHERE t.owner_id = :owner"
    " AND t.key = :key AND t.value = :value AND jobs.owner_id = :owner ORDER BY t.created_at DESC, t.job_id DESC"
    " LIMIT 51",
}


def plan_cache(url: str) -> list[list]:
    """PostgreSQL: each tag filter 20 times on one connection, with psycopg's defaults (a statement prepared from
    its 6th run) and with plan_cache_mode=force_custom_plan: p50 ms of calls 1-10 and 11-20."""
    from sqlalchemy import create_engine, text

    rows = []
    for label, sql in TAG_QUERIES.items():
        for options in ("", "-c plan_cache_mode=force_custom_plan"):
            engine = create_engine(url, connect_args={"options": options} if options else {})
            spent = []
            with engine.connect() as conn:
                for _ in range(20):
                    started = time.perf_counter()
                    conn.execute(text(sql), {"owner": BIG, "key": "team", "value": "none"}).all()
                    spent.append((time.perf_counter() - started) * 1000)
            engine.dispose()
            rows.append([label, options or "psycopg's defaults", statistics.median(spent[:10]),
                         statistics.median(spent[10:])])
    return rows


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"])
    parser.add_argument("--owners", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--baseline", default=BASELINE, help="the commit whose code is the baseline")
    parser.add_argument("--postgres-url", default=os.environ.get("FITSERVE_TEST_POSTGRES_URL", DEFAULT_POSTGRES))
    parser.add_argument("--measure", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        Path(args.out).write_text(json.dumps(measure(args.measure, args.calls)))
        return

    from bench.common import header, load_average, print_table

    header(f"Flat at a million jobs: sizes {args.sizes}, {args.owners} owners, {args.calls} calls an operation")
    print(f"load average before: {load_average()}\n")
    template = template_rows()
    rows, setup, plans = [], [], []
    with tempfile.TemporaryDirectory(prefix="fitserve-bench-") as tmp:
        baseline = exported(args.baseline, Path(tmp) / "baseline")
        (Path(tmp) / "dbs").mkdir()
        for backend in args.backends:
            for size in args.sizes:
                dbs = Databases(backend, args.postgres_url, Path(tmp) / "dbs")
                try:
                    name = f"fitserve_million_{uuid.uuid4().hex[:8]}"
                    url = dbs.create(name)
                    filled = fill(url, size, args.owners, template)
                    copy = dbs.create(f"{name}_base", template=name)
                    base_upgrade = upgrade_in(baseline, copy)
                    before = measure_in(baseline, copy, args.calls)
                    migrated = upgrade_timed(url)
                    after = measure_in(ROOT, url, args.calls)
                    if backend == "postgresql":
                        plans += [[size, *row] for row in plan_cache(url)]
                finally:
                    dbs.close()
                setup.append([backend, size, filled, base_upgrade, sum(migrated.values()),
                              " ".join(f"{revision}:{seconds:.1f}" for revision, seconds in migrated.items())])
                for label, _ in OPERATIONS:
                    old, new = (values[WARM_CALLS:] or values for values in (before[label], after[label]))
                    ratio = statistics.median(old) / statistics.median(new)
                    rows.append([backend, size, label, statistics.median(old), statistics.median(new), ratio,
                                 percentile(new, 0.99)])
                print(f"{backend} {size}: done (load {load_average()})", file=sys.stderr)
    print_table(["back end", "jobs", "operation", f"{args.baseline} p50 ms", "now p50 ms", "ratio", "now p99 ms"], rows)
    print()
    print_table(["back end", "jobs", "fill s", f"{args.baseline}: upgrade from 0012 s", "now: upgrade from 0012 s",
                 "now: each revision s"], setup)
    if plans:
        print()
        print_table(["jobs", "PostgreSQL, one connection, tag=team:none", "settings", "p50 ms calls 1-10",
                     "p50 ms calls 11-20"], plans)
    print(f"\nload average after: {load_average()}")


if __name__ == "__main__":
    main()
