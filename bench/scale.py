"""Flat at a million jobs (issue 30): every operation of the issue's table, p50 and p99, as stored jobs grow.

    .venv/bin/python -m bench.scale [--sizes 10000 100000 1000000] [--backends sqlite postgresql] [--calls 20]
        [--baseline COMMIT]

1. Template rows: `fitserve serve` (one worker, SQLite) trains a few tiny jobs with names and tags; their rows
   (jobs, metric_chunks, job_weights, and the final state each keeps in checkpoints) are what every filled job
   copies.
2. Fill: a database at migration 0012 (the schema before the counters) gets N jobs by SQL, over --owners owners:
   one owner, `big`, with 10% of them; 5% queued, 0.1% running, the rest succeeded with the template's curve,
   weights and final state (0037 marks those final, as a service since 0035 keeps them); two tags each (team: one
   of 10, run: one of 100), a name and a loss.
3. Upgrade: 0012 to head one revision at a time (the counters filled from the history, the indexes built; each
   timed), statistics refreshed after, then measured by this checkout's code. With --baseline, a copy of the fill
   is first upgraded by that commit's migrations (a temporary export) and measured by its code too.

Each operation runs --calls times in one process (one pooled connection, as a server's): p50 and p99 are of the
calls after the 10th, where psycopg prepares a statement and PostgreSQL could switch to a generic plan. HTTP calls
go through the real app in process (an ASGI client), as the `big` owner. A claim is one transaction, rolled back,
so each claim sees the same queue. Retention deletes 200 ended jobs a tick, 10 ticks (all counted), last.
growth = p50 at the largest size / p50 at the size before it. The issue's targets: p99 under 50 ms (the fair
claim under 10 ms) and growth under 1.5, each marked yes/no.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from bench.fill import BIG, ROOT, analyze, filled_databases

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
WARM_CALLS = 10
FAIR_CLAIM = "claim, fair share"
LONGEST_HOLD = "retention tick's longest transaction"
OPERATIONS = [  # (label, HTTP path or None for a call of the code)
    ("GET /metrics", "/metrics"),
    ("GET /v1/usage, big owner", "/v1/usage"),
    (FAIR_CLAIM, None),
    ("claim, fifo", None),
    ("GET /v1/jobs?tag=team:none, big owner", "/v1/jobs?tag=team:none"),
    ("GET /v1/jobs?tag=team:t3, big owner", "/v1/jobs?tag=team:t3"),
    ("GET /v1/jobs?name=none, big owner", "/v1/jobs?name=none"),
    ("GET /v1/jobs?name=fit-12, big owner", "/v1/jobs?name=fit-12"),  # a part thousands of names hold
    ("GET /v1/jobs?sort=loss, big owner", "/v1/jobs?sort=loss"),
    ("GET /v1/jobs first page, big owner", "/v1/jobs"),
    ("dashboard poll (?limit=50), big owner", "/v1/jobs?limit=50"),  # what jobs.js asks every second
    ("retention tick deleting 200", None),
    (LONGEST_HOLD, None),  # measured inside the tick above: how long other writers wait for it at most
]
TARGET_P99_MS = {FAIR_CLAIM: 10.0}  # the others: 50
TARGET_GROWTH = 1.5


# ---- upgrade and measure (in a process of its own, on the code of the tree it runs in)


def big_owner_client(url: str):
    """The real app of this process's tree on `url`, in process, as the large owner: a TestClient (no lifespan: no
    maintenance loop, no rate limit in the way) and the owner's headers."""
    os.environ.update({
        "FITSERVE_DATABASE_URL": url,
        "FITSERVE_RATE_LIMIT_PER_SECOND": "1000000",
        "FITSERVE_RATE_LIMIT_BURST": "1000000",
    })
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.db import session_scope
    from service.services.auth import create_key

    with session_scope() as s:
        _, token = create_key(s, BIG, "bench")
    return TestClient(create_app(), base_url="http://127.0.0.1"), {"Authorization": f"Bearer {token}"}


def measure(url: str, calls: int) -> dict[str, list[float]]:
    """Milliseconds of each call of each operation, by the code this process imports (its PYTHONPATH's tree)."""
    client, headers = big_owner_client(url)
    from sqlalchemy.orm import Session

    from service.db import get_engine
    from service.models import utcnow
    from service.repositories import jobs as job_repo
    from service.services.retention import delete_expired_jobs

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
            holds.clear()
            delete_expired_jobs(utcnow() + timedelta(days=1), 200)
            spent[LONGEST_HOLD].append(max(holds))

    # each transaction's milliseconds from its start to the end of its commit: SQLite's write lock is taken at the
    # first write and held into the commit, so this bounds what other writers wait (it includes the WAL checkpoint
    # SQLite may run at a commit, which writers do not wait for)
    from sqlalchemy import event

    holds: list[float] = []
    began: dict[int, float] = {}
    event.listen(Session, "after_begin", lambda session, *_: began.__setitem__(id(session), time.perf_counter()))
    event.listen(Session, "after_commit",
                 lambda session: holds.append((time.perf_counter() - began.pop(id(session))) * 1000))
    spent: dict[str, list[float]] = {LONGEST_HOLD: []}
    for label, path in OPERATIONS:
        if label == LONGEST_HOLD:
            continue
        n = 10 if label.startswith("retention") else calls
        spent[label] = []
        for _ in range(n):
            started = time.perf_counter()
            run(label, path)
            spent[label].append((time.perf_counter() - started) * 1000)
    return spent


def measure_in(tree: Path, url: str, calls: int, script: str = __file__) -> dict[str, list]:
    """`script`'s `measure` in a process that imports the code of `tree` (its client's too: the server imports
    its schemas)."""
    env = {**os.environ, "PYTHONPATH": f"{tree / 'client'}:{tree}"}
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run([sys.executable, script, "--measure", url, "--calls", str(calls), "--out", out.name],
                       cwd=tree, env=env, check=True)
        return json.loads(Path(out.name).read_text())


def upgrade_timed(url: str) -> dict[str, float]:
    """Seconds of each revision on the way from 0012 to head, statistics refreshed after."""
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


def upgrade_in(tree: Path, url: str, revision: str = "head") -> float:
    """Seconds to upgrade to `revision` by the migrations of `tree` (in a process that imports its code),
    statistics refreshed after."""
    code = ("import sys, time; from service.migrations import upgrade; started = time.perf_counter();"
            " upgrade(sys.argv[1], sys.argv[2]); print(time.perf_counter() - started)")
    run = subprocess.run([sys.executable, "-c", code, url, revision], cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)},
                         capture_output=True, text=True, check=True)
    from sqlalchemy import create_engine

    engine = create_engine(url)
    analyze(engine)
    engine.dispose()
    return float(run.stdout.split()[-1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def counted(values: list[float]) -> list[float]:
    """The calls after the warm ones (all of them where there are no more: retention's ticks)."""
    return values[WARM_CALLS:] or values


# ---- the command line, shared with bench/job_filter.py


def arguments(doc: str, sizes: list[int], baseline: str | None, measure_one: Callable[[str, int], dict] | None,
              own_options: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.Namespace:
    """The options of a bench that fills databases (sizes, back ends, owners, calls, baseline, PostgreSQL's url),
    and the bench's own (`own_options` adds them). Called as `measure_in`'s child (--measure URL --out FILE), it
    writes measure_one's answer and exits."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    if own_options is not None:
        own_options(parser)
    parser.add_argument("--sizes", type=int, nargs="+", default=sizes)
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"], choices=("sqlite", "postgresql"))
    parser.add_argument("--owners", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--baseline", default=baseline, help="the commit whose code is the baseline")
    parser.add_argument("--random-ids", action="store_true", help="fill with uuid4 job ids, as made before UUIDv7s")
    parser.add_argument("--postgres-url", default=os.environ.get("FITSERVE_TEST_POSTGRES_URL", DEFAULT_POSTGRES))
    parser.add_argument("--measure", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure and measure_one is not None:
        Path(args.out).write_text(json.dumps(measure_one(args.measure, args.calls)))
        sys.exit(0)
    return args


def growth_rows(measured: dict[tuple[str, int], dict], backends: list[str], sizes: list[int]) -> list[list]:
    """A row an operation and back end: p50 and p99 at each size, the growth to the largest, the targets met."""
    rows = []
    for backend in backends:
        for label, _ in OPERATIONS:
            values = [counted(measured[backend, size][label]) for size in sizes]
            p50s = [statistics.median(v) for v in values]
            p99s = [percentile(v, 0.99) for v in values]
            growth = p50s[-1] / p50s[-2] if len(sizes) > 1 else None
            limit = TARGET_P99_MS.get(label, 50.0)
            rows.append([backend, label, *(x for pair in zip(p50s, p99s, strict=True) for x in pair), growth,
                         f"{'yes' if p99s[-1] < limit else 'NO'} (<{limit:g})",
                         "-" if growth is None else "yes" if growth < TARGET_GROWTH else "NO"])
    return rows


def main() -> None:
    from bench.common import header, load_average, print_table

    args = arguments(__doc__, [10_000, 100_000, 1_000_000], None, measure)
    header(f"Flat at a million jobs: sizes {args.sizes}, {args.owners} owners, {args.calls} calls an operation")
    print(f"load average before: {load_average()}\n")
    measured, setup, ratios = {}, [], []
    for db in filled_databases(args, "scale"):
        if db.baseline is not None:
            copy = db.copy()
            base_upgrade = upgrade_in(db.baseline, copy)
            before = measure_in(db.baseline, copy, args.calls)
        migrated = upgrade_timed(db.url)
        measured[db.backend, db.size] = after = measure_in(ROOT, db.url, args.calls)
        setup.append([db.backend, db.size, db.seconds, sum(migrated.values()),
                      " ".join(f"{revision}:{seconds:.1f}" for revision, seconds in migrated.items())])
        if db.baseline is not None:
            setup[-1].insert(3, base_upgrade)
            for label, _ in OPERATIONS:
                old, new = (statistics.median(counted(values[label])) for values in (before, after))
                ratios.append([db.backend, db.size, label, old, new, old / new])
    sizes = [f"{size} {which}" for size in args.sizes for which in ("p50", "p99")]
    print_table(["back end", "operation (ms)", *sizes, "growth", "p99 target", "growth < 1.5"],
                growth_rows(measured, args.backends, args.sizes))
    print()
    upgrades = [f"{args.baseline}: upgrade from 0012 s"] if args.baseline else []
    print_table(["back end", "jobs", "fill s", *upgrades, "now: upgrade from 0012 s", "now: each revision s"], setup)
    if ratios:
        print()
        print_table(["back end", "jobs", "operation", f"{args.baseline} p50 ms", "now p50 ms", "ratio"], ratios)
    print(f"\nload average after: {load_average()}")


if __name__ == "__main__":
    main()
