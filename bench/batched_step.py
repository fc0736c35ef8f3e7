"""One full-batch training step of K members: batched paths against K solo steps, in the same run.

The tutorial's cubic MLP (1-20-1 ReLU, MSE) and softmax model (2-20-3, cross-entropy) on 1000 points
(`--points`), one torch thread (a worker's default). Per model and K, back to back in alternating
rounds, best round of each kept:
- vmap: `StackedTrainer.step` as it was, `vmap(functional_call)` + `torch.autograd.grad` + a Python
  loop of per-parameter updates;
- solo x K: one member's `Trainer.train_epoch` (one step) times K, the work of K separate jobs;
- hand, 1 group: `workers.engines.dense` forward/backward over all K at once, the per-parameter update loop;
- hand+flat, 1 group: the same with the one flat update over all parameters;
- hand+flat, G=g: members in groups of g (`--groups`), and "auto", the default group size;
- compiled (`--compile`): `torch.compile` of vmap(grad_and_value) + SGD; its compile time is printed.
Ratios are solo x K over each path: how many times faster than one by one.

    .venv/bin/python -m bench.batched_step [--sizes 16,64,256] [--groups 4,8,16,32] [--optimizer sgd]
        [--points 1000] [--compile]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from torch.func import functional_call, grad_and_value, vmap

from bench.common import header, print_table
from bench.sweeps import base_spec
from service.schemas.spec import JobSpec
from workers.attempt import prepare
from workers.engines.eager import Trainer
from workers.engines.stacked import StackedTrainer
from workers.engines.steps import transform_rows

MODELS = {"cubic MLP": "3_nonlinear_mlp", "softmax": "5_softmax_classification"}
CPU = torch.device("cpu")


def member_specs(name: str, k: int, optimizer: str, points: int) -> list[JobSpec]:
    base = base_spec(name, 200)
    if "n" in base["data"]:
        base["data"]["n"] = points
    else:
        for cluster in base["data"]["clusters"]:
            cluster["n"] = points // len(base["data"]["clusters"]) + 1
    lrs = [0.001, 0.003, 0.01, 0.03]
    opt = {"kind": optimizer, "momentum": 0.9 if optimizer == "sgd" else 0.0, "weight_decay": 0.01}
    return [JobSpec.model_validate({**base, "seed": i, "optimizer": {**opt, "lr": lrs[i % 4]}}) for i in range(k)]


def trainer(specs, nets, datas, hand_written=True, group=None) -> StackedTrainer:
    t = StackedTrainer(specs, [copy.deepcopy(n) for n in nets], datas, CPU, hand_written=hand_written)
    if t.dense is not None:
        t.dense.group = group
    return t


def loop_update_step(t: StackedTrainer):
    """Hand-written forward/backward, then StackedTrainer.update's loop over parameters."""
    def step():
        t.dense.step(t.x, t.x_dim, t.y, t.y_dim)
        with torch.no_grad():
            t.update({name: g.clone() for name, g in t.dense.grads.items()})
        t.optimizer_steps += 1
    return step


def compiled_step(t: StackedTrainer):
    """torch.compile of the functional step (SGD without momentum); returns the step and its compile seconds."""
    params = {k: v.detach().clone() for k, v in t.params.items()}

    def member_loss(p, x, y):
        return t.loss_fn(functional_call(t.layers, p, (x,)), y)

    def step(params, x, y):
        grads, losses = vmap(grad_and_value(member_loss), in_dims=(0, t.x_dim, t.y_dim))(params, x, y)
        return {k: p - t.lr.view(-1, *[1] * (p.dim() - 1)) * grads[k] for k, p in params.items()}, losses

    fn = torch.compile(step)
    started = time.perf_counter()
    fn(params, t.x, t.y)
    return (lambda: fn(params, t.x, t.y)), time.perf_counter() - started


def candidates(specs, nets, datas, groups: list[int], compile_too: bool) -> tuple[dict, float | None]:
    solo = Trainer(specs[0], copy.deepcopy(nets[0]), datas[0], CPU)
    solo.x, solo.y = transform_rows(solo.net, datas[0].x_train), datas[0].y_train
    k = len(specs)
    vm = trainer(specs, nets, datas, hand_written=False)
    one = trainer(specs, nets, datas, group=k)
    paths = {
        "vmap": lambda: vm.train_epoch(False),
        "solo x K": lambda: [solo.train_epoch(False) for _ in range(k)],
        "hand, 1 group": loop_update_step(trainer(specs, nets, datas, group=k)),
        "hand+flat, 1 group": lambda: one.train_epoch(False),
    }
    for g in [g for g in groups if g < k]:
        paths[f"hand+flat, G={g}"] = (lambda t: lambda: t.train_epoch(False))(trainer(specs, nets, datas, group=g))
    auto = trainer(specs, nets, datas)
    paths[f"hand+flat, auto G={auto.dense.group_size(auto.n)}"] = lambda: auto.train_epoch(False)
    compile_s = None
    if compile_too:
        paths["compiled"], compile_s = compiled_step(trainer(specs, nets, datas, hand_written=False))
    return paths, compile_s


def time_paths(paths: dict, rounds: int, seconds: float) -> dict[str, float]:
    """Best milliseconds per step of each path, timed in alternating rounds of about `seconds` each."""
    best = {name: float("inf") for name in paths}
    reps = {}
    for name, fn in paths.items():  # warm-up, and how many calls make a round
        fn()
        started = time.perf_counter()
        fn()
        reps[name] = max(1, int(seconds / max(time.perf_counter() - started, 1e-6)))
    for _ in range(rounds):
        for name, fn in paths.items():
            started = time.perf_counter()
            for _ in range(reps[name]):
                fn()
            best[name] = min(best[name], (time.perf_counter() - started) / reps[name] * 1e3)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="16,64,256")
    parser.add_argument("--groups", default="4,8,16,32", help="group sizes measured besides the default")
    parser.add_argument("--optimizer", default="sgd", choices=["sgd", "adam", "adamw"],
                        help="sgd has momentum 0.9; all have weight decay 0.01")
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--round-seconds", type=float, default=0.1)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (~20 s cold, per model and K)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    header(f"One full-batch step, K members on {args.points} points, {args.optimizer}, one torch thread")
    groups = [int(g) for g in args.groups.split(",") if g]
    rows = []
    for label, name in MODELS.items():
        for k in [int(s) for s in args.sizes.split(",") if s]:
            specs = member_specs(name, k, args.optimizer, args.points)
            nets, datas = zip(*(prepare(spec, CPU) for spec in specs))
            paths, compile_s = candidates(specs, list(nets), list(datas), groups, args.compile)
            best = time_paths(paths, args.rounds, args.round_seconds)
            for path, ms in best.items():
                note = f"compile {compile_s:.1f} s" if path == "compiled" else ""
                rows.append([label, k, path, ms, best["solo x K"] / ms, best["vmap"] / ms, note])
    print_table(["model", "K", "path", "ms per step", "x vs solo x K", "x vs vmap", "note"], rows)


if __name__ == "__main__":
    main()
