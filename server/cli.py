"""The server's commands of `fitserve`: serve the API and its workers, run a pool alone, migrate and check the
database, manage keys. The `fitserve` command itself is the client's (client/fitserve/cli.py); it adds these through
the `fitserve.commands` entry point (pyproject.toml).

This is the one place that starts both the API (service/) and the workers (workers/).
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import sys
from collections.abc import Callable

from server.supervision import Supervised
from service.logs import configure_logging


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.connections import allow_open_files, uvicorn_options
    from service.db import exit_without_teardown
    from service.settings import get_settings

    if not is_loopback(args.host) and os.environ.get("FITSERVE_AUTH", "auto") == "auto":
        # never open to the network by accident: beyond loopback, every request needs a key
        os.environ["FITSERVE_AUTH"] = "required"
        get_settings.cache_clear()
    use_workers_flag(args.workers)
    settings = get_settings()
    if (problem := open_database(settings.DATABASE_URL)) is not None:
        print(f"fitserve: {problem}", file=sys.stderr)
        return 1
    warn_if_no_keys(settings)
    announce_addresses(settings, args.host, args.port)
    allow_open_files(settings)
    n_workers = args.workers if args.workers is not None else settings.WORKERS
    if n_workers != 0:
        os.environ["FITSERVE_READY_REQUIRES_WORKER"] = "true"  # this API's readiness includes its workers
        get_settings.cache_clear()
    executor = executor_process(settings, n_workers).start().watch_in_background() if n_workers != 0 else None
    # uvicorn re-raises the signal that stopped it once it has shut down; with these handlers that
    # lands here, so the pool below is stopped cleanly and the exit status is 0
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    try:
        uvicorn.run(
            "service.app:create_app", factory=True, host=args.host, port=args.port, log_level="info",
            **uvicorn_options(settings),
        )
    finally:
        if executor is not None:
            executor.stop(settings.SHUTDOWN_SECONDS + 10)  # workers hand their jobs back first
    exit_without_teardown(0)
    return 0


def open_database(url: str) -> str | None:
    """The check at start (service/db_check.py), then the migrations; why the database cannot be used, in one
    line, or None."""
    from sqlalchemy.exc import DBAPIError

    from service.db_check import CheckFailed, check_database
    from service.db_faults import database_fault
    from service.migrations import upgrade

    try:
        logging.getLogger("fitserve").info(check_database(url, missing_ok=True))
        upgrade(url)
    except CheckFailed as exc:
        return str(exc)
    except DBAPIError as exc:
        if (fault := database_fault(exc, url)) is None:
            raise
        return fault.detail
    return None


def executor_process(settings, n_workers: int | None) -> Supervised:
    """The child process that runs jobs, restarted whenever it dies: the local worker pool, or (FITSERVE_EXECUTOR=ray)
    the Ray dispatcher."""
    if settings.EXECUTOR == "ray":
        from workers.executors.ray import require_ray_address, run_dispatcher

        require_ray_address()  # here, so a missing address stops `serve` instead of only its dispatcher
        return Supervised("fitserve-dispatcher", run_dispatcher, (os.getpid(),))
    from workers.pool import run_pool

    return Supervised("fitserve-pool", run_pool, (n_workers, os.getpid()))


def use_workers_flag(workers: int | None) -> None:
    """`--workers N` wins over FITSERVE_WORKERS, here and in every child: memory caps are shared out by it."""
    from service.settings import get_settings

    if workers is not None:
        os.environ["FITSERVE_WORKERS"] = str(workers)
        get_settings.cache_clear()


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def warn_if_no_keys(settings) -> None:
    from service.db import session_scope
    from service.repositories.keys import any_active_key

    with session_scope() as s:
        if settings.AUTH == "required" and not any_active_key(s):
            logging.getLogger("fitserve").warning(
                "API keys are required but none exists: create one with `fitserve keys create --owner NAME`"
            )


def announce_addresses(settings, host: str, port: int) -> None:
    """Log once, at start, where the dashboard, the API docs and the key instructions are."""
    from service.db import session_scope
    from service.repositories.keys import any_active_key

    with session_scope() as s:
        required = settings.AUTH == "required" or (settings.AUTH == "auto" and any_active_key(s))
    shown = "localhost" if host in ("0.0.0.0", "::", "") else f"[{host}]" if ":" in host else host
    base = f"http://{shown}:{port}"
    create = "create one with `fitserve keys create --owner NAME`"
    keys = (
        f"required: send `Authorization: Bearer <key>`; {create}"
        if required
        else f"none needed on loopback until one exists ({create}; then send `Authorization: Bearer <key>`)"
    )
    log = logging.getLogger("fitserve")  # a record a line: every log line keeps the one format
    log.info("dashboard: %s/", base)
    log.info("API docs: %s/docs (the OpenAPI document at %s/openapi.json)", base, base)
    log.info("API keys: %s (README: Operations)", keys)


def cmd_keys(args: argparse.Namespace) -> int:
    from service.db import session_scope
    from service.migrations import upgrade
    from service.repositories import keys as key_repo
    from service.services.auth import create_key
    from service.settings import get_settings

    upgrade(get_settings().DATABASE_URL)
    with session_scope() as s:
        if args.action == "create":
            key, token = create_key(s, args.owner, args.name)
            print(f"created key {key.id} for owner {key.owner_id}; it is shown only now:\n{token}")
        elif args.action == "list":
            for key in key_repo.list_keys(s):
                state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
                print(f"{key.id}  owner={key.owner_id}  name={key.name or '-'}  {state}")
        elif not key_repo.revoke_key(s, args.key_id):
            print(f"no active key {args.key_id}", file=sys.stderr)
            return 1
        else:
            print(f"revoked key {args.key_id}")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """A supervised worker pool: this process restarts the pool's supervisor if it dies, until SIGTERM or SIGINT."""
    from service.db import exit_without_teardown
    from service.settings import get_settings

    use_workers_flag(args.workers)
    settings = get_settings()
    if (problem := open_database(settings.DATABASE_URL)) is not None:
        print(f"fitserve: {problem}", file=sys.stderr)
        return 1
    pool = executor_process(settings.model_copy(update={"EXECUTOR": "local"}), args.workers).start()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: pool.stopping.set())
    pool.watch()
    pool.stop(settings.SHUTDOWN_SECONDS + 10)
    exit_without_teardown(0)
    return 0


def cmd_dispatcher(args: argparse.Namespace) -> int:
    from service.migrations import upgrade
    from service.settings import get_settings
    from workers.executors.ray import run_dispatcher

    upgrade(get_settings().DATABASE_URL)
    run_dispatcher()
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    from service.migrations import downgrade, upgrade
    from service.settings import get_settings

    url = get_settings().DATABASE_URL
    if args.action == "backup":
        return backup_database(url, args.path)
    if args.action == "recount":
        return recount_jobs()
    if args.action == "check":
        return print_database_check(url)
    if args.action == "upgrade":
        upgrade(url, args.revision or "head")
    else:
        downgrade(url, args.revision or "-1")
    print(f"database {args.action}d: {url}")
    return 0


def print_database_check(url: str) -> int:
    """One line: OK (exit 0), or what is wrong with the database and what to do (exit 1)."""
    from service.db_check import CheckFailed, check_database

    try:
        print(check_database(url))
    except CheckFailed as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


def recount_jobs() -> int:
    """Rebuild the job counters (/metrics, /v1/usage, fair share) from the jobs, curves, weights, checkpoints and
    datasets."""
    from service.db import session_scope
    from service.repositories import job_counts

    with session_scope() as s:
        job_counts.recount(s)
    print("job counters rebuilt from the history")
    return 0


def backup_database(url: str, path: str) -> int:
    """A copy of the live SQLite database; for PostgreSQL, advice on pg_dump and exit status 2."""
    from pathlib import Path

    from service.backup import BackupError, backup

    try:
        jobs = backup(url, Path(path))
    except BackupError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"backed up {jobs} jobs to {path}")
    return 0


def cmd_usage(args: argparse.Namespace) -> int:
    """Each owner's usage (or one's, with --owner), read from the database: for operators."""
    from modelzoo.memory import format_bytes
    from service.db import session_scope
    from service.migrations import upgrade
    from service.services.usage import measure_all
    from service.settings import get_settings

    upgrade(get_settings().DATABASE_URL)
    with session_scope(read_only=True) as s:
        usages = measure_all(s, args.owner, every_owner=args.owner is None)
    print(f"{'owner':20}  {'queued':>6}  {'running':>7}  {'ended':>7}  {'curves':>10}  {'weights':>10}  "
          f"{'checkpoints':>11}  {'datasets':>10}  {'trained today':>13}  {'trained':>10}")
    for u in usages:
        ended = u.jobs.succeeded + u.jobs.failed + u.jobs.cancelled
        b, t = u.stored_bytes, u.training_seconds
        print(f"{u.owner or '(anonymous)':20}  {u.jobs.queued:>6}  {u.jobs.running:>7}  {ended:>7}  "
              f"{format_bytes(b.curves):>10}  {format_bytes(b.weights):>10}  {format_bytes(b.checkpoints):>11}  "
              f"{format_bytes(b.datasets):>10}  {t.today:>12.1f}s  {t.total:>9.1f}s")
    return 0


def add_server_commands(sub: argparse._SubParsersAction) -> None:
    """Add serve, worker, dispatcher, db, usage and keys to the `fitserve` command's subcommands."""
    serve = sub.add_parser("serve", help="run the API and a local worker pool")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=None, help="worker processes (0: API only)")
    serve.set_defaults(func=logged(cmd_serve))

    worker = sub.add_parser("worker", help="run a worker pool alone against the same database")
    worker.add_argument("--workers", type=int, default=None)
    worker.set_defaults(func=logged(cmd_worker))

    dispatcher = sub.add_parser("dispatcher", help="place queued jobs on the Ray cluster at $RAY_ADDRESS, alone")
    dispatcher.set_defaults(func=logged(cmd_dispatcher))

    db = sub.add_parser("db", help="apply or roll back migrations; check or back up the database")
    db_actions = db.add_subparsers(dest="action", required=True)
    for action in ("upgrade", "downgrade"):
        db_actions.add_parser(action, help=f"{action} the schema").add_argument("revision", nargs="?", default=None)
    backup = db_actions.add_parser("backup", help="copy the live SQLite database to PATH (PostgreSQL: pg_dump advice)")
    backup.add_argument("path", metavar="PATH")
    db_actions.add_parser("check", help="is the database whole (SQLite: quick_check) and at the schema head? one line")
    db_actions.add_parser("recount", help="rebuild the job counters from the history (a repair; never needed)")
    db.set_defaults(func=logged(cmd_db))

    usage = sub.add_parser("usage", help="each owner's jobs, stored bytes and training time (reads the database)")
    usage.add_argument("--owner", default=None, help="only this owner")
    usage.set_defaults(func=logged(cmd_usage))

    keys = sub.add_parser("keys", help="create, list and revoke API keys")
    key_actions = keys.add_subparsers(dest="action", required=True)
    create = key_actions.add_parser("create", help="make a key; the token is printed once")
    create.add_argument("--owner", required=True, help="whose jobs the key reaches")
    create.add_argument("--name", default=None, help="a label, e.g. the machine it is for")
    key_actions.add_parser("list", help="every key, active or revoked")
    revoke = key_actions.add_parser("revoke", help="stop a key from working (within seconds)")
    revoke.add_argument("key_id")
    keys.set_defaults(func=logged(cmd_keys))


def logged(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """The command, with this process's log lines set up first (FITSERVE_LOG_LEVEL; libraries' chatter left out)."""

    def run(args: argparse.Namespace) -> int:
        configure_logging(os.environ.get("FITSERVE_LOG_LEVEL", "INFO"))
        for noisy in ("alembic", "matplotlib", "httpx"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        return command(args)

    return run
