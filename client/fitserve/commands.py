"""The `fitserve` commands that speak to a running server through the Python client.

Exit codes: 0 done (and, for --wait and watch, the job succeeded), 1 the job failed or was cancelled,
2 bad arguments, 3 the server answered an error or could not be reached.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from fitserve import calls
from fitserve.calls import FitserveClientError
from fitserve.client import Client
from fitserve.schemas import JobPublic

EXIT_JOB_NOT_SUCCEEDED = 1
EXIT_USAGE = 2
EXIT_SERVER = 3

err = Console(stderr=True, highlight=False)


def client_from(args: argparse.Namespace) -> Client:
    return Client(args.url, args.api_key)


def cmd_submit(args: argparse.Namespace) -> int:
    with client_from(args) as fs:
        job = fs.submit(args.spec)
        print(job.id, flush=True)  # alone on its line, for `ID=$(fitserve submit spec.json)`
        return follow(fs, job.id) if args.wait else 0


def cmd_sweep(args: argparse.Namespace) -> int:
    with client_from(args) as fs:
        sweep = fs.submit_sweep(args.request, args.objective)
    print(sweep.id, flush=True)  # alone on its line, as submit prints a job's
    err.print(f"sweep ranked by {sweep.objective.metric} ({sweep.objective.mode})", markup=False)
    return 0


def cmd_continue(args: argparse.Namespace) -> int:
    with client_from(args) as fs:
        job = fs.continue_job(args.job_id, args.epochs, args.lr)
        print(job.id, flush=True)  # as submit prints it
        return follow(fs, job.id) if args.wait else 0


def cmd_jobs(args: argparse.Namespace) -> int:
    with client_from(args) as fs:
        jobs = fs.list_jobs(args.status, args.limit, args.filter)
    # plain columns, ids in full: easy to read, to copy and to cut with awk
    print(f"{'id':32}  {'status':9}  {'epoch':>13}  {'loss':>10}  {'created (UTC)':19}  name")
    for job in jobs:
        loss = f"{job.metrics.loss:.4g}" if job.metrics else "-"
        epochs = f"{job.progress.epoch}/{job.progress.epochs}"
        created = f"{job.created_at:%Y-%m-%d %H:%M:%S}"
        print(f"{job.id:32}  {job.status:9}  {epochs:>13}  {loss:>10}  {created:19}  {job.name or ''}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    """Delete each id given; a running job is stopped first (by the server)."""
    kind = "sweeps" if args.sweep else "datasets" if args.dataset else "jobs"
    with client_from(args) as fs:
        for resource_id in args.ids:
            fs.send(calls.delete(kind, resource_id))
            print(f"deleted {kind[:-1]} {resource_id}")
    return 0


def cmd_workers(args: argparse.Namespace) -> int:
    with client_from(args) as fs:
        workers = fs.workers().workers
    print(f"{'id':28}  {'kind':10}  {'host':16}  {'pid':>7}  {'device':8}  {'state':5}  {'heartbeat (UTC)':19}  job")
    for w in workers:
        beat = f"{w.heartbeat_at:%Y-%m-%d %H:%M:%S}"
        print(f"{w.id:28}  {w.kind:10}  {w.host[:16]:16}  {w.pid:>7}  {w.device:8}  {w.state:5}  {beat:19}  {w.job_id or '-'}")
    return 0


def cmd_webhook_secret(args: argparse.Namespace) -> int:
    with client_from(args) as fs:
        secret = fs.rotate_webhook_secret() if args.rotate else fs.webhook_secret()
    print(secret.secret, flush=True)  # alone on its line, for `SECRET=$(fitserve webhook-secret)`
    err.print(f"{'made' if args.rotate else 'in use since'} {secret.created_at:%Y-%m-%d %H:%M:%S} UTC", markup=False)
    return 0


def cmd_deliveries(args: argparse.Namespace) -> int:
    with client_from(args) as fs:
        deliveries = fs.deliveries(sweep_id=args.id) if args.sweep else fs.deliveries(args.id)
    print(f"{'created (UTC)':19}  {'event':9}  {'status':9}  {'attempts':>8}  {'code':>4}  {'id':32}  error")
    for d in deliveries:
        last = d.attempts[-1] if d.attempts else None
        code = str(last.status_code) if last and last.status_code is not None else "-"
        error = (last.error or "") if last else ""
        print(f"{d.created_at:%Y-%m-%d %H:%M:%S}  {d.event:9}  {d.status:9}  {len(d.attempts):>8}  {code:>4}  {d.id:32}"
              f"  {error}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    with client_from(args) as fs:
        print(fs.get(args.job_id).model_dump_json(indent=2))
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    with client_from(args) as fs:
        return follow(fs, args.job_id)


def follow(fs: Client, job_id: str) -> int:
    """A live progress bar (epoch, loss, ETA) fed by the job's events, then the final metrics."""
    columns = (
        TextColumn("{task.description:>9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("epochs  loss {task.fields[loss]}"),
        TimeRemainingColumn(),
    )
    job = None
    with Progress(*columns, console=err) as bar:
        task = bar.add_task("queued", total=None, loss="-")
        for event in fs.events(job_id):
            if event.event == "status":
                job = event.data
                bar.update(task, description=job.status, total=job.progress.epochs, completed=job.progress.epoch)
            else:
                bar.update(task, completed=event.data.epoch, loss=f"{event.data.loss:.4g}")
    print_summary(job)
    return 0 if job.status == "succeeded" else EXIT_JOB_NOT_SUCCEEDED


def print_summary(job: JobPublic) -> None:
    took = f" in {(job.finished_at - job.started_at).total_seconds():.2f} s" if job.started_at else ""
    print(f"job {job.id} {job.status}{took} after {job.progress.epoch}/{job.progress.epochs} epochs")
    if job.error:
        print(f"error: {job.error}")
    if job.metrics:
        for name, value in job.metrics.model_dump(exclude={"step", "epoch"}, exclude_none=True).items():
            print(f"{name}: {value:.6g}")


def read_inputs(value: str) -> list:
    """`--input`: a JSON file or inline JSON; a list of rows, or a body `{"inputs": [...]}`."""
    text = Path(value).read_text() if Path(value).is_file() else value
    try:
        data = json.loads(text)
    except ValueError:
        raise ValueError(f"--input: {value!r} is neither a file nor JSON") from None
    return data["inputs"] if isinstance(data, dict) and "inputs" in data else data


def cmd_predict(args: argparse.Namespace) -> int:
    inputs = read_inputs(args.input)
    with client_from(args) as fs:
        print(fs.predict(args.job_id, inputs).model_dump_json(exclude_none=True))
    return 0


def cmd_curve(args: argparse.Namespace) -> int:
    with client_from(args) as fs:
        fs.curve_png(args.job_id, args.output)
    print(f"wrote {args.output}")
    return 0


def guarded(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """The command, with the server's errors and bad arguments printed as one line and an exit code."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except FitserveClientError as exc:
            err.print(f"error: {exc}", markup=False)
            return EXIT_SERVER
        except (ValueError, OSError) as exc:
            err.print(f"error: {exc}", markup=False)
            return EXIT_USAGE

    return run


def add_client_commands(sub: argparse._SubParsersAction) -> None:
    """Add the client commands; each also takes --url and --api-key after its name."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=argparse.SUPPRESS, help="server URL (default: $FITSERVE_URL)")
    common.add_argument("--api-key", default=argparse.SUPPRESS, help="API key (default: $FITSERVE_API_KEY)")

    def add(name: str, command: Callable, help: str) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=help, parents=[common])
        parser.set_defaults(func=guarded(command))
        return parser

    submit = add("submit", cmd_submit, "submit a job spec (JSON or YAML file); prints the job id")
    submit.add_argument("spec", help="path of a JSON or YAML spec")
    submit.add_argument("--wait", action="store_true", help="then watch it until it ends")
    sweep = add("sweep", cmd_sweep, "submit a sweep request (JSON or YAML file); prints the sweep id")
    sweep.add_argument("request", help="path of a JSON or YAML sweep request (the body of POST /v1/sweeps)")
    sweep.add_argument("--objective", metavar="METRIC[:min|max]", help="rank, prune and exploit by this metric, "
                       "e.g. val_accuracy (default mode: min for losses, max for accuracies)")
    again = add("continue", cmd_continue, "train a succeeded job more, from its final weights and optimizer state")
    again.add_argument("job_id")
    again.add_argument("--epochs", type=int, required=True, help="how many epochs more")
    again.add_argument("--lr", type=float, help="a new learning rate")
    again.add_argument("--wait", action="store_true", help="then watch it until it ends")
    jobs = add("jobs", cmd_jobs, "list jobs, newest first")
    jobs.add_argument("--status", choices=["queued", "running", "succeeded", "failed", "cancelled"])
    jobs.add_argument("--limit", type=int, default=20)
    jobs.add_argument("--filter", help="terms joined by `and`, e.g. \"params.optimizer.lr > 0.01 and metrics.val_loss"
                      " < 0.2\" (README: Finding jobs by what they were)")
    add("status", cmd_status, "print a job as JSON").add_argument("job_id")
    delete = add("delete", cmd_delete, "delete jobs (or sweeps, or datasets) with their curves, weights, checkpoints")
    delete.add_argument("ids", nargs="+", metavar="id")
    what = delete.add_mutually_exclusive_group()
    what.add_argument("--sweep", action="store_true", help="the ids are sweeps: each is deleted with its members")
    what.add_argument("--dataset", action="store_true", help="the ids are datasets (409 while a job trains on one)")
    add("workers", cmd_workers, "list the live workers: where they run, their last heartbeat and job")
    secret = add("webhook-secret", cmd_webhook_secret, "print the key your webhooks are signed with (HMAC-SHA256)")
    secret.add_argument("--rotate", action="store_true", help="make a new one in its place: the old signs nothing more")
    deliveries = add("deliveries", cmd_deliveries, "list a job's webhook deliveries: event, status, attempts, error")
    deliveries.add_argument("id", help="a job's id (a sweep's with --sweep)")
    deliveries.add_argument("--sweep", action="store_true", help="the id is a sweep's: its own deliveries")
    add("watch", cmd_watch, "a live progress bar until the job ends, then its final metrics").add_argument("job_id")
    predict = add("predict", cmd_predict, "predict with a succeeded job")
    predict.add_argument("job_id")
    predict.add_argument("--input", required=True, help="a JSON file or inline JSON: rows, or {'inputs': rows}")
    curve = add("curve", cmd_curve, "save a job's training curve as a PNG")
    curve.add_argument("job_id")
    curve.add_argument("-o", "--output", default="curve.png")
