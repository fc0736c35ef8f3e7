"""The databases the scale benches measure: N jobs copied by SQL from rows a served API wrote (bench/scale.py
says how they are spread), at migration 0012, the schema before issue 30's counters; each removed when done."""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.specs import tiny_regression

ROOT = Path(__file__).resolve().parents[1]
BIG = "big"
TINY = tiny_regression(epochs=50)
TEMPLATE_TABLES = (("jobs", "id"), ("metric_chunks", "job_id"), ("job_weights", "job_id"), ("checkpoints", "job_id"))


def template_rows() -> dict[str, list[dict]]:
    """Rows the API and a worker wrote for a few trained jobs: jobs, metric_chunks, job_weights, checkpoints."""
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
                    for table, key in TEMPLATE_TABLES}
        engine.dispose()
    assert len(rows["checkpoints"]) == len(ids), "each succeeded template job keeps its final state"
    return rows


def fill(url: str, n_jobs: int, n_owners: int, template: dict[str, list[dict]], random_ids: bool = False) -> float:
    """N jobs copied from the template rows into a database at 0012; returns the seconds it took. Job ids are
    UUIDv7s in creation order, as the API makes them (random_ids: uuid4s, as it made them before)."""
    from sqlalchemy import JSON, MetaData, create_engine

    from service.migrations import upgrade
    from service.models import new_job_id

    started = time.perf_counter()
    upgrade(url, "0012")
    engine = create_engine(url)
    postgresql = engine.dialect.name == "postgresql"
    meta = MetaData()
    names = ("jobs", "job_tags", "metric_chunks", "job_weights", "checkpoints")
    meta.reflect(engine, only=names)
    jobs, tags, chunks, weights, checkpoints = (meta.tables[name] for name in names)
    for column in jobs.columns:  # SQLite reflects JSON as text: bind dicts as JSON either way
        if column.name in ("spec", "tags", "latest_metrics", "best_metrics", "evaluation"):
            column.type = JSON()
    rng = random.Random(30)
    start = datetime.now(UTC) - timedelta(days=30)
    step = timedelta(days=29) / n_jobs

    def at(moment: datetime):
        return moment if postgresql else moment.replace(tzinfo=None)

    def children(table, of: str, job_id: str, created_at=None) -> list[dict]:
        """The template's rows of `table` for template job `of`, as the 0012 table has them, for `job_id`."""
        moment = {"created_at": created_at} if created_at is not None else {}
        return [{**{c.name: row.get(c.name) for c in table.columns}, "job_id": job_id, **moment}
                for row in template[table.name] if row["job_id"] == of]

    batch: dict = {table: [] for table in (jobs, tags, chunks, weights, checkpoints)}
    with engine.begin() as conn:
        for i in range(n_jobs):
            t = template["jobs"][i % len(template["jobs"])]
            created = start + i * step
            job_id = uuid.uuid4().hex if random_ids else new_job_id(at=created)
            owner = BIG if rng.random() < 0.1 else f"owner{rng.randrange(n_owners):04d}"
            draw = rng.random()
            status = "queued" if draw < 0.05 else "running" if draw < 0.051 else "succeeded"
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
            batch[jobs].append(row)
            batch[tags] += [{"job_id": job_id, "key": k, "value": v} for k, v in row["tags"].items()]
            if ran:
                batch[chunks] += children(chunks, t["id"], job_id)
            if status == "succeeded":
                for table in (weights, checkpoints):
                    batch[table] += children(table, t["id"], job_id, row["finished_at"])
            if len(batch[jobs]) == 5000 or i == n_jobs - 1:
                for table, rows in batch.items():
                    if rows:
                        conn.execute(table.insert(), rows)
                    batch[table] = []
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


class Databases:
    """The databases of one back end made in a run; removed on close."""

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


@dataclass
class Filled:
    """One filled database at 0012 of a run (removed when the run moves on), and the baseline's tree if any."""

    backend: str
    size: int
    url: str
    seconds: float
    baseline: Path | None
    dbs: Databases
    name: str

    def copy(self) -> str:
        """A copy of the fill as it is now: its url."""
        return self.dbs.create(f"{self.name}_base", template=self.name)


def filled_databases(args: argparse.Namespace, prefix: str) -> Iterator[Filled]:
    """A database filled to each of args.sizes on each of args.backends, in turn, each removed before the next."""
    from bench.common import load_average

    template = template_rows()
    with tempfile.TemporaryDirectory(prefix="fitserve-bench-") as tmp:
        baseline = exported(args.baseline, Path(tmp) / "baseline") if args.baseline else None
        (Path(tmp) / "dbs").mkdir()
        for backend in args.backends:
            for size in args.sizes:
                dbs = Databases(backend, args.postgres_url, Path(tmp) / "dbs")
                try:
                    name = f"fitserve_{prefix}_{uuid.uuid4().hex[:8]}"
                    url = dbs.create(name)
                    seconds = fill(url, size, args.owners, template, args.random_ids)
                    yield Filled(backend, size, url, seconds, baseline, dbs, name)
                finally:
                    dbs.close()
                print(f"{backend} {size}: done (load {load_average()})", file=sys.stderr)


def exported(commit: str, into: Path) -> Path:
    """The files of `commit`, as a folder, with this checkout's bench/ over its own: a baseline's code is measured
    by today's benches (a child process there imports them from that tree)."""
    archive = subprocess.run(["git", "archive", commit], cwd=ROOT, capture_output=True, check=True).stdout
    into.mkdir()
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    shutil.copytree(ROOT / "bench", into / "bench", dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.md", "screenshots"))
    return into
