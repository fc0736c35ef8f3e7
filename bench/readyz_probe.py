"""What /readyz's probe of a PostgreSQL disk costs (service/db_faults.py `spill`), against a plain `SELECT 1`.

Each statement runs REPEATS times on one connection, as /readyz runs it on one of the pool's: the baseline
`SELECT 1` in a transaction of its own; the probe (its settings and a sort spilled to a temporary file in the
database's tablespace); `readiness_fault` while the probe's last answer stands (PROBE_SECONDS), which is what most
/readyz calls pay.

    .venv/bin/python -m bench.readyz_probe [--url postgresql+psycopg://postgres@127.0.0.1:5432/postgres] [--repeats 200]
"""

from __future__ import annotations

import argparse
import statistics
import time

from sqlalchemy import create_engine, text

from service.db_faults import PROBE, readiness_fault, spill


def select_one(conn) -> None:
    conn.rollback()
    with conn.begin():
        conn.execute(text("SELECT 1"))


def timings(run, conn, repeats: int) -> list[float]:
    run(conn)  # the first call plans and opens what later ones reuse
    spent = []
    for _ in range(repeats):
        started = time.perf_counter()
        run(conn)
        spent.append((time.perf_counter() - started) * 1000)
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    engine = create_engine(args.url)
    with engine.connect() as conn:
        rows = [
            ("SELECT 1 (baseline)", timings(select_one, conn, args.repeats)),
            ("probe: settings + spilled sort", timings(spill, conn, args.repeats)),
        ]
        PROBE.full_disk(conn, args.url)  # probed now: the calls below find its answer standing
        rows.append(("readiness_fault, answer cached",
                     timings(lambda c: readiness_fault(c, args.url), conn, args.repeats)))
    engine.dispose()
    base = statistics.median(rows[0][1])
    print(f"{'statement':34} {'median ms':>10} {'p95 ms':>8} {'x baseline':>11}")
    for name, spent in rows:
        median, p95 = statistics.median(spent), statistics.quantiles(spent, n=20)[-1]
        print(f"{name:34} {median:10.3f} {p95:8.3f} {median / base:11.2f}")


if __name__ == "__main__":
    main()
