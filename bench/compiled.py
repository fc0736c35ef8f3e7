"""The compiled engine option (workers/engines/compiled.py) against the plain engines, on this machine's CPU.

    python -m bench.compiled [--epochs-scale 1.0] [--threads 1] [--members 16]

Jobs: example 2 (linear regression, 100k points), the cubic MLP (example 3, 10k points; with SGD and with
Adam) and a stacked sweep of the cubic MLP (`--members` members, 1000 points, rates apart). Each trains in this
process through the run (workers/run.py `train_here`) on the plain engine and with its step compiled, after a
hand-written eager loop (bench/loops.py, the baseline) and a hand-written compiled functional step. Each engine
trains a short job (SHORT epochs) and the full one: per-epoch time is their difference over the epochs between,
and the rest of the short job's time over its epochs' share is the one-time cost (set-up, compilation). The
compiled step is timed on two jobs in a row: the first compiles cold, the second finds this process's caches.
"""

from __future__ import annotations

import argparse
import time

import torch

from bench.common import EXAMPLES, header, load_average, load_example, print_table
from bench.loops import hand_compiled_loop, hand_loop
from service.schemas.spec import JobSpec
from workers.attempt import prepare
from workers.engines.eager import Trainer
from workers.engines.stacked import StackedTrainer
from workers.run import train_here

SHORT = 20  # epochs of the short job


def example(stem: str, epochs_scale: float, **changes) -> dict:
    return {**load_example(next(p for p in EXAMPLES if p.stem == stem), epochs_scale), **changes}


def jobs(scale: float, members: int) -> list[tuple[str, list[dict]]]:
    """(label, member specs): one spec for a single job."""
    cubic = example("3_nonlinear_mlp", scale * 0.2)
    small = {**cubic["data"], "n": 1000}
    lrs = [0.001, 0.003, 0.01, 0.03]
    sweep = [{**cubic, "data": small, "seed": k, "optimizer": {"kind": "sgd", "lr": lrs[k % 4]}} for k in range(members)]
    return [
        ("example 2, linear regression", [example("2_linear_regression", scale * 0.2)]),
        ("cubic MLP, sgd", [cubic]),
        ("cubic MLP, adam", [{**cubic, "optimizer": {"kind": "adam", "lr": 0.01}}]),
        (f"cubic MLP sweep, {members} members stacked", sweep),
    ]


def engine_seconds(specs: list[dict], compiled: bool) -> tuple[float, float, str | None]:
    """Seconds to build and train the members through the run, the first member's final loss, and why a compiled
    step was given up (None if it was not)."""
    device = torch.device("cpu")
    start = time.perf_counter()
    parsed = [JobSpec.model_validate(s) for s in specs]
    nets, datas = zip(*(prepare(s, device) for s in parsed))
    if len(specs) == 1:
        engine = Trainer(parsed[0], nets[0], datas[0], device, compiled=compiled)
    else:
        engine = StackedTrainer(parsed, list(nets), list(datas), device, compiled=compiled)
    ledger = train_here(engine)
    failed = engine.compiled and engine.compiled.failed
    return time.perf_counter() - start, ledger.points["0"][-1].loss, failed


def split(short: float, full: float, epochs: int) -> tuple[float, float]:
    """Per-epoch seconds, and the one-time cost, from a SHORT-epoch and an `epochs`-epoch job."""
    per_epoch = (full - short) / (epochs - SHORT)
    return per_epoch, short - SHORT * per_epoch


def measure(label: str, specs: list[dict]) -> list[list]:
    epochs = specs[0]["epochs"]
    short = [{**s, "epochs": SHORT} for s in specs]
    rows = []
    if len(specs) == 1:
        seconds, loss = hand_loop(specs[0])
        rows.append(["hand-written eager loop", seconds, None, None, loss])
        if specs[0]["optimizer"]["kind"] == "sgd":
            seconds, loss, compile_s = hand_compiled_loop(specs[0], torch.device("cpu"))
            rows.append(["hand-written compiled step", seconds, None, compile_s, loss])
    for name, compiled in (("plain engine", False), ("compiled (cold)", True), ("compiled (warm)", True)):
        short_s, _, _ = engine_seconds(short, compiled)
        full_s, loss, failed = engine_seconds(specs, compiled)
        per_epoch, once = split(short_s, full_s, epochs)
        rows.append([name + (f": {failed}" if failed else ""), full_s, per_epoch * 1e3, once, loss])
    base = rows[0][1]
    plain = next(r for r in rows if r[0] == "plain engine")
    out = []
    for row in rows:
        ratio_plain = row[2] / plain[2] if row[2] else None
        out.append([label if not out else "", *row, row[1] / base, ratio_plain])
    compiled = rows[-1]
    saving = plain[2] - compiled[2]  # ms per epoch
    breakeven = f"{(compiled[3] - plain[3]) / saving * 1e3:.0f} epochs" if saving > 0 else "never"
    out.append(["", f"compiled repays its one-time cost after: {breakeven}", None, None, None, None, None, None])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs-scale", type=float, default=1.0, help="of the examples' epochs (x 0.2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a worker's share)")
    parser.add_argument("--members", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    header(f"Compiled step vs plain engines on the CPU, {args.threads} torch thread(s); load {load_average()}")
    rows = []
    for label, specs in jobs(args.epochs_scale, args.members):
        rows += measure(f"{label}, {specs[0]['epochs']} epochs", specs)
    print_table(["job", "path", "seconds", "ms / epoch", "one-time s", "final loss", "/ hand-written",
                 "per epoch / plain"], rows)


if __name__ == "__main__":
    main()
