"""Issue 30's tail on one filled database kept across runs: retention, name search, the claims and the recount, a
baseline's code against this checkout's, alternating.

    .venv/bin/python -m bench.flat_tail [--jobs 1000000] [--backend sqlite] [--keep /tmp/fitserve-flat] [--rounds 2]

The fill is bench/fill.py's, as bench/scale.py makes it (N jobs copied by SQL from rows the API wrote, over --owners
owners plus `big` with 10%), made once into --keep and reused: a copy upgraded by --baseline's migrations, another by this
checkout's (each kept too). Each round measures the baseline's copy with its code, then this checkout's copy with
its own (bench/scale.py `measure`: p50 of calls after the 10th; retention 10 ticks of 200, each deleting
the oldest ended jobs, so a later round deletes later ones), then times `fitserve db recount` on each copy.
ratio = baseline p50 / new p50. SQLite copies are files in --keep; PostgreSQL ones are databases flat_N, flat_N_base
and flat_N_new (markers in --keep), kept for the next run: drop them when done.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import header, load_average, print_table
from bench.fill import Databases, exported, fill, template_rows
from bench.scale import DEFAULT_POSTGRES, OPERATIONS, WARM_CALLS, measure_in, percentile, upgrade_in

ROOT = Path(__file__).resolve().parents[1]
RECOUNT = ("import sys, time; from service.db import make_engine; from sqlalchemy.orm import Session;"
           " from service.repositories import job_counts; e = make_engine(sys.argv[1]); t = time.perf_counter();"
           " s = Session(e); job_counts.recount(s); s.commit(); print((time.perf_counter() - t) * 1000)")


def recount_ms(tree: Path, url: str) -> float:
    run = subprocess.run([sys.executable, "-c", RECOUNT, url], cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)},
                         capture_output=True, text=True, check=True)
    return float(run.stdout.split()[-1])


def prepared(dbs: Databases, keep: Path, jobs: int, owners: int, trees: dict[str, Path]) -> dict[str, str]:
    """The filled database (made once) and a copy upgraded by each tree's migrations (made once): their urls."""
    filled = f"flat_{jobs}"
    marker = keep / f"{filled}.filled"
    if not marker.exists():
        url = dbs.create(filled)
        seconds = fill(url, jobs, owners, template_rows())
        marker.write_text(f"{seconds}\n")
        print(f"filled {jobs} jobs in {seconds:.0f} s (load {load_average()})", file=sys.stderr)
    urls = {}
    for name, tree in trees.items():
        copy = f"{filled}_{name}"
        copied = keep / f"{copy}.upgraded"
        if not copied.exists():
            dbs.create(copy, template=filled)
            seconds = upgrade_in(tree, dbs.url(copy))
            copied.write_text(f"{seconds}\n")
            print(f"{name}: upgraded in {seconds:.0f} s", file=sys.stderr)
        urls[name] = dbs.url(copy)
    return urls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--owners", type=int, default=1000)
    parser.add_argument("--backend", default="sqlite", choices=("sqlite", "postgresql"))
    parser.add_argument("--keep", type=Path, default=Path("/tmp/fitserve-flat"))
    parser.add_argument("--baseline", default="ed01371", help="the commit whose code is the baseline")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--calls", type=int, default=14)
    parser.add_argument("--postgres-url", default=os.environ.get("FITSERVE_TEST_POSTGRES_URL", DEFAULT_POSTGRES))
    args = parser.parse_args()
    args.keep.mkdir(parents=True, exist_ok=True)

    header(f"Issue 30's tail: {args.jobs} jobs on {args.backend}, {args.baseline} against this checkout, "
           f"{args.rounds} rounds alternating")
    print(f"load average before: {load_average()}\n")
    with tempfile.TemporaryDirectory(prefix="fitserve-bench-") as tmp:
        trees = {"base": exported(args.baseline, Path(tmp) / "baseline"), "new": ROOT}
        dbs = Databases(args.backend, args.postgres_url, args.keep)
        urls = prepared(dbs, args.keep, args.jobs, args.owners, trees)
        if args.rounds == 0:  # prepared only
            return
        spent = {name: {label: [] for label, _ in OPERATIONS} | {"db recount": []} for name in trees}
        for round_ in range(args.rounds):
            for name, tree in trees.items():
                for label, values in measure_in(tree, urls[name], args.calls).items():
                    spent[name][label] += values[WARM_CALLS:] or values
                spent[name]["db recount"].append(recount_ms(tree, urls[name]))
                print(f"round {round_ + 1} {name}: done (load {load_average()})", file=sys.stderr)
        shutil.rmtree(Path(tmp) / "baseline")
    rows = []
    for label in spent["new"]:
        old, new = spent["base"][label], spent["new"][label]
        rows.append([label, statistics.median(old), statistics.median(new), statistics.median(old) /
                     statistics.median(new), percentile(new, 0.99)])
    print_table(["operation", f"{args.baseline} p50 ms", "now p50 ms", "ratio", "now p99 ms"], rows)
    print(f"\nload average after: {load_average()}")


if __name__ == "__main__":
    main()
