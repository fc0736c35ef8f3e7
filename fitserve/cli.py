"""`fitserve`: serve the API with a worker pool, run a pool alone, migrate the database."""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import os
import signal
import sys


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.migrations import upgrade
    from service.settings import get_settings
    from workers.pool import run_pool

    settings = get_settings()
    upgrade(settings.DATABASE_URL)
    n_workers = args.workers if args.workers is not None else settings.WORKERS
    pool = None
    if n_workers != 0:
        pool = mp.get_context("spawn").Process(target=run_pool, args=(n_workers, True), name="fitserve-pool")
        pool.start()
    # uvicorn re-raises the signal that stopped it once it has shut down; with these handlers that
    # lands here, so the pool below is stopped cleanly and the exit status is 0
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    try:
        uvicorn.run("service.app:create_app", factory=True, host=args.host, port=args.port, log_level="info")
    finally:
        if pool is not None:
            pool.terminate()  # SIGTERM: workers checkpoint and hand their jobs back
            pool.join(30)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from service.migrations import upgrade
    from service.settings import get_settings
    from workers.pool import run_pool

    upgrade(get_settings().DATABASE_URL)
    run_pool(args.workers)
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    from service.migrations import downgrade, upgrade
    from service.settings import get_settings

    url = get_settings().DATABASE_URL
    if args.action == "upgrade":
        upgrade(url, args.revision or "head")
    else:
        downgrade(url, args.revision or "-1")
    print(f"database {args.action}d: {url}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fitserve", description="Train small PyTorch models over HTTP.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the API and a local worker pool")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=None, help="worker processes (0: API only)")
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="run a worker pool alone against the same database")
    worker.add_argument("--workers", type=int, default=None)
    worker.set_defaults(func=cmd_worker)

    db = sub.add_parser("db", help="apply or roll back migrations")
    db.add_argument("action", choices=["upgrade", "downgrade"])
    db.add_argument("revision", nargs="?", default=None)
    db.set_defaults(func=cmd_db)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("FITSERVE_LOG_LEVEL", "INFO"), format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
