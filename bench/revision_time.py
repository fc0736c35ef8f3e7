"""One migration alone at N stored jobs: --baseline's against this checkout's, on copies of one database, each
back end.

    .venv/bin/python -m bench.revision_time --revision 0037 [--sizes 100000] [--backends sqlite postgresql]
        [--baseline main] [--check SQL]

The database is bench/fill.py's (bench/scale.py's fill), upgraded by this checkout to the revision before
--revision, then copied: the copy is upgraded to --revision by the baseline's migrations, the original by this
checkout's, each timed in a process of its own. ratio = baseline seconds / now seconds. --check: a query whose
rows both upgrades must leave the same (printed with the table).
"""

from __future__ import annotations

from bench.fill import filled_databases
from bench.scale import ROOT, arguments, upgrade_in


def rows_of(url: str, sql: str) -> list[tuple]:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as conn:
        rows = [tuple(row) for row in conn.execute(text(sql))]
    engine.dispose()
    return rows


def own_options(parser) -> None:
    parser.add_argument("--revision", required=True, help="the migration timed, e.g. 0037")
    parser.add_argument("--check", help="a query whose rows both upgrades must leave the same")


def main() -> None:
    from alembic.script import ScriptDirectory

    from bench.common import header, load_average, print_table
    from service.migrations import alembic_config, upgrade

    args = arguments(__doc__, [100_000], "main", None, own_options)
    before_revision = ScriptDirectory.from_config(alembic_config("sqlite://")).get_revision(args.revision).down_revision
    header(f"Migration {args.revision} alone at {args.sizes} jobs: {args.baseline} against this checkout")
    print(f"load average before: {load_average()}\n")
    rows = []
    for db in filled_databases(args, "revision"):
        upgrade(db.url, before_revision)
        copy = db.copy()
        before = upgrade_in(db.baseline, copy, args.revision)
        after = upgrade_in(ROOT, db.url, args.revision)
        checked = [rows_of(url, args.check) for url in (copy, db.url)] if args.check else None
        rows.append([db.backend, db.size, before, after, before / after,
                     "-" if checked is None else f"{checked[1]} ({'same' if checked[0] == checked[1] else 'DIFFER'})"])
    print_table(["back end", "jobs", f"{args.baseline}: {args.revision} s", f"now: {args.revision} s", "ratio",
                 "check (now)"], rows)
    print(f"\nload average after: {load_average()}")


if __name__ == "__main__":
    main()
