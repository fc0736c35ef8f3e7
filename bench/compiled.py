"""The compiled engine option (workers/engines/compiled.py) against the plain engines, on this machine's CPU.

    python -m bench.compiled [--epochs-scale 1.0] [--threads 1] [--members 16]

Jobs: example 2 (linear regression, 100k points), the cubic MLP (example 3, 10k points; with SGD and with
Adam) and a stacked sweep of the cubic MLP (`--members` members, 1000 points, rates apart). Each trains in this
process through the run (workers/run.py `train_here`) on the plain engine and with its step compiled, after a
hand-written eager loop (bench/loops.py, the baseline) and a hand-written compiled functional step. Each engine
trains a short job (SHORT epochs) and the full one: per-epoch time is their difference over the epochs between,
and the rest of the short job's time over its epochs' share is the one-time cost (set-up, compilation). The
compiled step is timed on two short jobs in a row: the first compiles cold, the second finds this process's
caches. Last, the full job as a worker trains it by default (FITSERVE_COMPILE=auto: the run's measured choice,
engines/compile_choice.py), with what it wrote in `execution`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

from bench.common import EXAMPLES, header, load_average, load_example, print_table
from bench.loops import hand_compiled_loop, hand_loop
from service.schemas.spec import JobSpec
from service.settings import get_settings
from workers.attempt import prepare
from workers.engines.eager import Trainer
from workers.engines.stacked import StackedTrainer
from workers.run import train_here

SHORT = 20  # epochs of the short job


def example(stem: str, epochs_scale: float, **changes) -> dict:
    return {**load_example(next(p for p in EXAMPLES if p.stem == stem), epochs_scale), **changes}


def jobs(scale: float, members: int) -> list[tuple[str, list[dict]]]:
    """(label, member specs): one spec for a single job."""
    cubic = example("3_nonlinear_mlp", scale)
    small = {**cubic["data"], "n": 1000}
    lrs = [0.001, 0.003, 0.01, 0.03]
    sweep = [{**cubic, "data": small, "epochs": round(2000 * scale), "seed": k,
              "optimizer": {"kind": "sgd", "lr": lrs[k % 4]}} for k in range(members)]
    return [
        ("example 2, linear regression", [example("2_linear_regression", scale)]),
        ("cubic MLP, sgd", [cubic]),
        ("cubic MLP, adam", [{**cubic, "optimizer": {"kind": "adam", "lr": 0.01}}]),
        (f"cubic MLP sweep, {members} members stacked", sweep),
    ]


def engine_seconds(specs: list[dict], compiled: bool, mode: str) -> tuple[float, float, str]:
    """Seconds to build and train the members through the run with FITSERVE_COMPILE=`mode`, the first member's final
    loss, and what the run added to its `execution`."""
    device = torch.device("cpu")
    start = time.perf_counter()
    parsed = [JobSpec.model_validate(s) for s in specs]
    nets, datas = zip(*(prepare(s, device) for s in parsed))
    if len(specs) == 1:
        engine = Trainer(parsed[0], nets[0], datas[0], device, compiled=compiled)
    else:
        engine = StackedTrainer(parsed, list(nets), list(datas), device, compiled=compiled)
    ledger = train_here(engine, get_settings().model_copy(update={"COMPILE": mode}))
    note = ledger.ended["0"].get("execution", "").lstrip("; ")
    return time.perf_counter() - start, ledger.points["0"][-1].loss, note


def timed(specs: list[dict], compiled: bool) -> dict:
    """Per-epoch seconds and one-time costs of a path, from SHORT-epoch jobs and a full one; compiled, the first
    short job compiles cold and the next ones find this process's caches."""
    epochs, short = specs[0]["epochs"], [{**s, "epochs": SHORT} for s in specs]
    mode = "on" if compiled else "off"
    first = engine_seconds(short, compiled, mode)[0]
    again = engine_seconds(short, compiled, mode)[0] if compiled else first
    full, loss, _ = engine_seconds(specs, compiled, mode)
    per_epoch = (full - again) / (epochs - SHORT)
    return {"seconds": full, "per_epoch": per_epoch, "cold": first - SHORT * per_epoch,
            "warm": again - SHORT * per_epoch, "loss": loss}


def measure(label: str, specs: list[dict]) -> list[list]:
    """Rows: the hand-written loops, the plain engine, the compiled step from the start, and the run's own choice
    (FITSERVE_COMPILE=auto)."""
    rows = []
    if len(specs) == 1:
        seconds, loss = hand_loop(specs[0])
        rows.append(["hand-written eager loop", seconds, None, None, None, loss])
        if specs[0]["optimizer"]["kind"] == "sgd":
            seconds, loss, compile_s = hand_compiled_loop(specs[0], torch.device("cpu"))
            rows.append(["hand-written compiled step", seconds, None, compile_s, None, loss])
    plain, compiled = timed(specs, False), timed(specs, True)
    for name, t in (("plain engine", plain), ("compiled from the start (warm caches)", compiled)):
        rows.append([name, t["seconds"], t["per_epoch"] * 1e3, t["cold"], t["warm"], t["loss"]])
    seconds, loss, note = engine_seconds(specs, True, "auto")
    rows.append([f"FITSERVE_COMPILE=auto: {note or 'plain (too short to repay a compile)'}", seconds, None, None, None,
                 loss])
    saving = plain["per_epoch"] - compiled["per_epoch"]
    repaid = f"{(compiled['cold'] - plain['cold']) / saving:.0f} epochs" if saving > 0 else "never"
    rows.append([f"a cold compile is repaid after {repaid}", None, None, None, None, None])
    base = rows[0][1]
    return [[label if i == 0 else "", *row, row[1] / base if row[1] else None,
             row[2] / (plain["per_epoch"] * 1e3) if row[2] else None]
            for i, row in enumerate(rows)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs-scale", type=float, default=1.0, help="of the examples' epochs (the sweep: 2000)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a worker's share)")
    parser.add_argument("--members", type=int, default=16)
    parser.add_argument("--only", default="", help="the jobs whose label holds this")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # cold means cold: inductor keeps compiled kernels on disk, across processes, where a worker's next start finds them
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="fitserve-inductor-")
    header(f"Compiled step vs plain engines on the CPU, {args.threads} torch thread(s); load {load_average()}")
    rows = []
    for label, specs in [job for job in jobs(args.epochs_scale, args.members) if args.only in job[0]]:
        rows += measure(f"{label}, {specs[0]['epochs']} epochs", specs)
    print_table(["job", "path", "seconds", "ms / epoch", "one-time s, cold", "one-time s, warm", "final loss",
                 "/ hand-written eager", "per epoch / plain"], rows)


if __name__ == "__main__":
    main()
