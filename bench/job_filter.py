"""`GET /v1/jobs?filter=` on a large owner at 100k (or 1M) stored jobs: the code of --baseline (params terms read
each spec) against this checkout's (job_params, alembic 0038) on the same database, and each against the plain
first page in the same process.

    .venv/bin/python -m bench.job_filter [--sizes 100000] [--backends sqlite postgresql] [--calls 20]

Each database is filled as bench/scale.py fills it (bench/fill.py: jobs copied from rows a served API wrote, over 1,000
owners, `big` with 10% of them, 5% queued, a uniform random loss), then each job's spec is given an optimizer of its
own: `kind` one of sgd, adam, adamw (a third each) and `lr` one of 1,000 values 0.0001-0.1 (a thousandth each).
A copy is upgraded by the baseline's migrations and measured by its code; the original is upgraded to head (0038
fills job_params from the specs: timed) and measured by this checkout's. Each operation runs --calls times in one
process on one pooled connection (as a server's), through the real app in process as the `big` owner; p50 and p99
are of the calls after the 10th, where psycopg prepares the statement and PostgreSQL could switch to a generic plan
(service/db.py forces custom plans). speed-up = baseline p50 / now p50; "/ page 1" = an operation's p50 / the plain
first page's p50, in the same process.
"""

from __future__ import annotations

import statistics
import time

from bench.fill import ROOT, analyze, filled_databases
from bench.scale import WARM_CALLS, arguments, big_owner_client, measure_in, percentile, upgrade_in

BEFORE_JOB_PARAMS = "d9b6164"  # params terms read each spec of the owner

BASELINE = "GET /v1/jobs first page"
OPERATIONS = [  # (label, query parameters)
    (BASELINE, {}),
    ("?tag=team:t3 (10%)", {"tag": "team:t3"}),
    ("filter tags.team = 't3' (10%)", {"filter": "tags.team = 't3'"}),
    ("filter tags.team != 't3' (90%)", {"filter": "tags.team != 't3'"}),
    ("?status=queued (5%)", {"status": "queued"}),
    ("filter status = 'queued' (5%)", {"filter": "status = 'queued'"}),
    ("filter params.optimizer.kind = 'adam' (1/3)", {"filter": "params.optimizer.kind = 'adam'"}),
    ("filter params.optimizer.lr > 0.05 (1/2)", {"filter": "params.optimizer.lr > 0.05"}),
    ("filter params.optimizer.lr = 0.0005 (1/1000)", {"filter": "params.optimizer.lr = 0.0005"}),
    ("filter params.optimizer.lr > 1 (none)", {"filter": "params.optimizer.lr > 1"}),
    ("filter metrics.loss < 0.5 (1/2)", {"filter": "metrics.loss < 0.5"}),
    ("filter metrics.loss < 0.001 (1/1000)", {"filter": "metrics.loss < 0.001"}),
    ("filter kind = 'adam' and metrics.loss < 0.5 (1/6)",
     {"filter": "params.optimizer.kind = 'adam' and metrics.loss < 0.5"}),
    ("filter tags.team = 't3' and lr > 0.09 (1/100)",
     {"filter": "tags.team = 't3' and params.optimizer.lr > 0.09"}),
    ("filter params.optimizer.lr = 0.0005, sort=loss", {"filter": "params.optimizer.lr = 0.0005", "sort": "loss"}),
]


def vary_specs(url: str) -> float:
    """Each job's optimizer: kind by a third, lr one of 1,000 values, from the job's id (random hex; SQLite: its
    rowid); seconds."""
    from sqlalchemy import create_engine

    started = time.perf_counter()
    engine = create_engine(url)
    if engine.dialect.name == "postgresql":
        number = "abs(('x' || substr(id, 1, 8))::bit(32)::int)"
        sql = (f"UPDATE jobs SET spec = jsonb_set(jsonb_set(spec::jsonb, '{{optimizer,lr}}',"
               f" to_jsonb((mod({number}, 1000) + 1) / 10000.0)), '{{optimizer,kind}}',"
               f" to_jsonb((ARRAY['sgd', 'adam', 'adamw'])[mod({number}, 3) + 1]))::json")
    else:
        number = "(rowid * 7919)"  # 7919 is prime to 1000 and 3: neighbours get values far apart
        sql = (f"UPDATE jobs SET spec = json_set(spec, '$.optimizer.lr', ({number} % 1000 + 1) / 10000.0,"
               f" '$.optimizer.kind', CASE {number} % 3 WHEN 0 THEN 'sgd' WHEN 1 THEN 'adam' ELSE 'adamw' END)")
    with engine.begin() as conn:
        conn.exec_driver_sql(sql)
    analyze(engine)
    engine.dispose()
    return time.perf_counter() - started


def measure(url: str, calls: int) -> dict[str, list]:
    """Milliseconds of each call of each operation, and the number of jobs its first page held."""
    client, headers = big_owner_client(url)
    spent: dict[str, list] = {}
    for label, params in OPERATIONS:
        spent[label] = []
        for _ in range(calls):
            started = time.perf_counter()
            response = client.get("/v1/jobs", params=params, headers=headers)
            spent[label].append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (label, response.status_code, response.text[:200])
        spent[f"{label} found"] = [len(response.json()["items"])]
    return spent


def measured_rows(backend: str, size: int, before: dict, after: dict) -> list[list]:
    """A row an operation: how many its first page held, p50 before and now, the speed-up, now's p99, and each p50
    over the plain first page's."""
    warm = {which: {label: values[WARM_CALLS:] or values for label, values in spent.items()}
            for which, spent in (("before", before), ("after", after))}
    base = {which: statistics.median(spent[BASELINE]) for which, spent in warm.items()}
    rows = []
    for label, _ in OPERATIONS:
        old, new = statistics.median(warm["before"][label]), statistics.median(warm["after"][label])
        found = {before[f"{label} found"][0], after[f"{label} found"][0]}  # two answers would be a bug: shown
        rows.append([backend, size, label, " != ".join(map(str, sorted(found))), old, new, old / new,
                     percentile(warm["after"][label], 0.99), old / base["before"], new / base["after"]])
    return rows


def main() -> None:
    from bench.common import header, load_average, print_table

    args = arguments(__doc__, [100_000], BEFORE_JOB_PARAMS, measure)
    header(f"?filter= at {args.sizes} jobs, {args.owners} owners, the `big` owner (10%), {args.calls} calls each")
    print(f"load average before: {load_average()}\n")
    rows, setup = [], []
    for db in filled_databases(args, "filter"):
        varied = vary_specs(db.url)
        copy = db.copy()
        base_upgrade = upgrade_in(db.baseline, copy)
        before = measure_in(db.baseline, copy, args.calls, __file__)
        upgraded = upgrade_in(ROOT, db.url)
        after = measure_in(ROOT, db.url, args.calls, __file__)
        setup.append([db.backend, db.size, db.seconds, varied, base_upgrade, upgraded])
        rows += measured_rows(db.backend, db.size, before, after)
    print_table(["back end", "jobs", "operation, big owner", "on page 1", f"{args.baseline} p50 ms", "now p50 ms",
                 "speed-up", "now p99 ms", f"{args.baseline} / page 1", "now / page 1"], rows)
    print()
    print_table(["back end", "jobs", "fill s", "specs varied s", f"{args.baseline}: upgrade to head s",
                 "now: upgrade to head s (0038 fills job_params)"], setup)
    print(f"\nload average after: {load_average()}")


if __name__ == "__main__":
    main()
