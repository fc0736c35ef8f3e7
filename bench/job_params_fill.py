"""Migration 0038's fill of job_params at N stored jobs: --baseline's (each spec read into Python, rows written by
INSERT or COPY) against this checkout's (a SQL walk of the specs), on copies of one database, each back end.

    .venv/bin/python -m bench.job_params_fill [--sizes 100000] [--backends sqlite postgresql] [--baseline bb483ef]

The database is bench/fill.py's (bench/scale.py's fill: the template jobs' specs, ~25 values each), upgraded to
0037 by this checkout (0013-0037 are the same in both trees), then copied: the copy is upgraded to head by the
baseline's migrations, the original by this checkout's; each upgrade is 0038 alone, timed. ratio = baseline
seconds / now seconds. The two fills' rows are compared by count and sums (tests/test_migrations.py compares
them row by row on specs made to differ).
"""

from __future__ import annotations

import math

from bench.fill import filled_databases
from bench.scale import ROOT, arguments, upgrade_in

BEFORE_SQL_WALK = "bb483ef"  # 0038 read each spec into Python
SUMMARY = ("SELECT count(*), count(DISTINCT job_id), sum(num_value), sum(length(path)), sum(length(text_value))"
           " FROM job_params")


def summary(url: str) -> tuple:
    """What the fill wrote, in numbers that do not depend on the order of its rows."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as conn:
        rows, jobs, numbers, paths, texts = conn.execute(text(SUMMARY)).one()
    engine.dispose()
    return rows, jobs, numbers, paths, texts


def same(one: tuple, other: tuple) -> bool:
    """Equal, the sums of the numbers to 12 places: a float sum depends on the order of its terms."""
    return all(math.isclose(a, b, rel_tol=1e-12) if isinstance(a, float) else a == b for a, b in zip(one, other))


def main() -> None:
    from bench.common import header, load_average, print_table
    from service.migrations import upgrade

    args = arguments(__doc__, [100_000], BEFORE_SQL_WALK, None)
    header(f"0038's fill of job_params at {args.sizes} jobs: {args.baseline} against this checkout")
    print(f"load average before: {load_average()}\n")
    rows = []
    for db in filled_databases(args, "params"):
        upgrade(db.url, "0037")
        copy = db.copy()
        before = upgrade_in(db.baseline, copy)
        after = upgrade_in(ROOT, db.url)
        written = summary(db.url)
        rows.append([db.backend, db.size, before, after, before / after, written[0], same(summary(copy), written)])
    print_table(["back end", "jobs", f"{args.baseline}: 0038 s", "now: 0038 s", "ratio", "rows", "same rows"], rows)
    print(f"\nload average after: {load_average()}")


if __name__ == "__main__":
    main()
