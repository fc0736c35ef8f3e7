"""Adaptive search, fitserve against Ray Tune (ASHA) and Optuna (TPE + Hyperband), in one run, on this machine.

Two problems, the tutorial's cubic MLP and softmax blobs on 1000 points with a 20% validation split; one
space over lr, momentum, weight decay and hidden width; the same budget for every tool: N trials of at most
E epochs (ASHA and Hyperband spend less by stopping trials). fitserve runs `asha`, `pbt` (which may not vary
the width: its members copy each other's weights), `tpe` (rounds, ASHA inside) and `random` through the real
service (one worker); Ray Tune's ASHAScheduler and Optuna's TPESampler + HyperbandPruner train the same
PyTorch network on the same tensors in trials, as their users write them. Each run's best validation loss
is followed over time; the target is 5% above the best loss any run reached. Prints, per run: wall time,
time to the target, best validation loss, epochs spent, and the time to the target over fitserve's fastest.

    python -m bench.search [--trials 27] [--epochs 300] [--problems cubic,blobs] [--device cpu|cuda]
                           [--seeds 5] [--report-seconds 0.05] [--anchors optuna]
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import statistics
import tempfile
import time

import torch
from torch import nn

from bench.common import Service, header, print_table
from bench.sweeps import base_spec as sweep_base_spec

PROBLEMS = {"cubic": "3_nonlinear_mlp", "blobs": "5_softmax_classification"}
WIDTHS = [8, 16, 32]
SPACE = {
    "lr": {"distribution": "log_uniform", "low": 0.001, "high": 0.3},
    "momentum": {"distribution": "uniform", "low": 0.0, "high": 0.95},
    "weight_decay": {"distribution": "log_uniform", "low": 1e-6, "high": 1e-2},
    "hidden": [[w] for w in WIDTHS],
}


def base_spec(problem: str, epochs: int, device: str) -> dict:
    spec = sweep_base_spec(PROBLEMS[problem], epochs)  # 1000 points, as bench/sweeps.py
    spec["device"] = device
    spec["data"]["validation_fraction"] = 0.2
    return spec


class Timeline:
    """The best validation loss seen so far, over time since the run started."""

    def __init__(self):
        self.start = time.perf_counter()
        self.points: list[tuple[float, float]] = []  # (seconds, best so far)
        self.epochs = 0

    def see(self, value: float | None, at: float | None = None) -> None:
        if value is None or not math.isfinite(value):
            return
        t = (at if at is not None else time.perf_counter()) - self.start
        if not self.points or value < self.points[-1][1]:
            self.points.append((t, value))

    def best(self) -> float:
        return self.points[-1][1] if self.points else math.inf

    def reached(self, target: float) -> float | None:
        return next((t for t, v in sorted(self.points) if v <= target), None)


# ---------------------------------------------------------------- fitserve, through the service


def run_fitserve(svc: Service, base: dict, search: str, trials: int, epochs: int, seed: int,
                 tpe_rounds: int = 3) -> tuple[Timeline, float]:
    space = dict(SPACE)
    body = {"name": f"bench {search}", "base": base, "space": space, "search": search, "search_seed": seed,
            "count": trials}
    rungs = {"min_epochs": max(1, epochs // 9), "reduction_factor": 3}
    if search == "asha":
        body["asha"] = rungs
    elif search == "pbt":
        space.pop("hidden")  # members copy each other's weights: one width
        body["pbt"] = {"interval_epochs": max(1, epochs // 10), "quantile": 0.25}
    elif search == "tpe":
        body.update(count=trials // tpe_rounds, tpe={"rounds": tpe_rounds}, asha=rungs)
    line = Timeline()
    sweep = svc.client.post("/v1/sweeps", json=body).raise_for_status().json()
    while True:
        sweep = svc.client.get(f"/v1/sweeps/{sweep['id']}").json()
        for entry in sweep["leaderboard"]:
            line.see(entry["val_loss"])
        if sweep["status"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.1)
    line.epochs = sweep["progress"]["epochs_done"]
    return line, time.perf_counter() - line.start


# ---------------------------------------------------------------- the same network and data, in trials


def tensors(base: dict):
    """The service's own data for this spec: the same rows, the same split."""
    from service.schemas.spec import JobSpec
    from workers.data import load_data

    data = load_data(JobSpec.model_validate(base), None).to(torch.device(base["device"]))
    return data.x_train, data.y_train, data.x_val, data.y_val


def network(base: dict, width: int) -> nn.Sequential:
    """fitserve's own network for the spec with this width (output softmax included, for the blobs)."""
    from modelzoo import build_network
    from service.schemas.spec import JobSpec

    return build_network(JobSpec.model_validate({**base, "model": {**base["model"], "hidden": [width]}}).model)


def train_trial(base: dict, data, config: dict, report) -> None:
    """Full-batch SGD as the spec says; `report(epoch, val_loss)` after each epoch returns False to stop."""
    torch.set_num_threads(1)
    x, y, xv, yv = data
    net = network(base, config["hidden"]).to(x.device)
    opt = torch.optim.SGD(net.parameters(), lr=config["lr"], momentum=config["momentum"],
                          weight_decay=config["weight_decay"])
    from service.schemas.spec import JobSpec
    from workers.engines.steps import make_loss

    loss_fn = make_loss(JobSpec.model_validate(base))  # fitserve's loss for the spec, as its trainer computes it
    for epoch in range(1, base["epochs"] + 1):
        opt.zero_grad()
        loss_fn(net(x), y).backward()
        opt.step()
        with torch.no_grad():
            val = loss_fn(net(xv), yv).item()
        if not report(epoch, val if math.isfinite(val) else 1e30):
            return


def run_ray_tune(base: dict, trials: int, epochs: int, seed: int) -> tuple[Timeline, float]:
    # a loopback-only cluster of this run's own: no auth token written to ~/.ray for later clusters to pick up
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    line = Timeline()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    data = tensors(base)

    def trainable(config):
        train_trial(base, data, config, lambda epoch, val: tune.report({"val_loss": val, "at": time.perf_counter()})
                    or True)

    resources = {"cpu": 1, "gpu": 1 / os.cpu_count()} if base["device"] != "cpu" else {"cpu": 1}

    space = {"lr": tune.loguniform(0.001, 0.3), "momentum": tune.uniform(0.0, 0.95),
             "weight_decay": tune.loguniform(1e-6, 1e-2), "hidden": tune.choice(WIDTHS)}
    scheduler = ASHAScheduler(max_t=epochs, grace_period=max(1, epochs // 9), reduction_factor=3)
    with tempfile.TemporaryDirectory() as storage:
        tuner = tune.Tuner(
            tune.with_resources(trainable, resources), param_space=space,
            tune_config=tune.TuneConfig(metric="val_loss", mode="min", scheduler=scheduler, num_samples=trials,
                                        search_alg=tune.search.BasicVariantGenerator(random_state=seed)),
            run_config=tune.RunConfig(storage_path=storage, verbose=0),
        )
        results = tuner.fit()
        wall = time.perf_counter() - line.start
        for result in results:
            frame = result.metrics_dataframe
            line.epochs += len(frame)
            for at, val in zip(frame["at"], frame["val_loss"]):
                line.see(val, at)
    ray.shutdown()
    return line, wall


def run_optuna(base: dict, trials: int, epochs: int, seed: int) -> tuple[Timeline, float]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    line = Timeline()
    data = tensors(base)

    def objective(trial):
        config = {"lr": trial.suggest_float("lr", 0.001, 0.3, log=True),
                  "momentum": trial.suggest_float("momentum", 0.0, 0.95),
                  "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
                  "hidden": trial.suggest_categorical("hidden", WIDTHS)}
        last = []

        def report(epoch, val):
            line.epochs += 1
            line.see(val)
            last.append(val)
            trial.report(val, epoch)
            return not trial.should_prune()

        train_trial(base, data, config, report)
        if trial.should_prune():
            raise optuna.TrialPruned()
        return last[-1]

    pruner = optuna.pruners.HyperbandPruner(min_resource=max(1, epochs // 9), max_resource=epochs, reduction_factor=3)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed), pruner=pruner)
    study.optimize(objective, n_trials=trials)
    return line, time.perf_counter() - line.start


def installed(anchor: str) -> bool:
    module = {"ray": "ray.tune", "optuna": "optuna"}[anchor]
    try:
        __import__(module)
    except ImportError:
        print(f"{anchor}: not installed here ({module} does not import); its rows are skipped")
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=27)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--problems", default="cubic,blobs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=1,
                        help="run every tool with seeds seed .. seed+N-1 and report medians: which tool reaches the "
                             "target first is partly the luck of its first samples")
    parser.add_argument("--report-seconds", type=float, default=None,
                        help="the service's FITSERVE_REPORT_SECONDS (how often running members write their curves; "
                             "the service's default when not given)")
    parser.add_argument("--device", default="cpu", help="where every tool trains: cpu or cuda")
    parser.add_argument("--tpe-rounds", type=int, default=3, help="fitserve tpe: rounds of trials/rounds members")
    parser.add_argument("--anchors", default="ray,optuna",
                        help="the other tools to run (ray, optuna); one not installed here is skipped, saying so")
    args = parser.parse_args()
    anchors = [name for name in args.anchors.split(",") if name and installed(name)]
    seeds = range(args.seed, args.seed + args.seeds)
    load_before = open("/proc/loadavg").read().split()[:3]
    header(f"Adaptive search: {args.trials} trials of at most {args.epochs} epochs each, one worker, "
           f"seeds {seeds.start}-{seeds.stop - 1}")
    rows = []
    env = {"FITSERVE_TORCH_THREADS": "1", "FITSERVE_MAX_QUEUED_PER_OWNER": "100000"}
    if args.report_seconds is not None:
        env["FITSERVE_REPORT_SECONDS"] = str(args.report_seconds)
    for problem in args.problems.split(","):
        base = base_spec(problem, args.epochs, args.device)
        runs: dict[str, list[tuple[Timeline, float]]] = {}
        with Service(workers=1, **env) as svc:
            for seed in seeds:
                for search in ("asha", "pbt", "tpe", "random"):
                    runs.setdefault(f"fitserve {search}", []).append(
                        run_fitserve(svc, copy.deepcopy(base), search, args.trials, args.epochs, seed, args.tpe_rounds))
        for seed in seeds:
            if "ray" in anchors:
                runs.setdefault("Ray Tune ASHA", []).append(run_ray_tune(base, args.trials, args.epochs, seed))
            if "optuna" in anchors:
                runs.setdefault("Optuna TPE + Hyperband", []).append(run_optuna(base, args.trials, args.epochs, seed))
        # one target for every run and seed: 5% above the best loss any of them reached
        target = 1.05 * min(line.best() for seeded in runs.values() for line, _ in seeded)
        median_to_target = {name: median_reached(seeded, target) for name, seeded in runs.items()}
        anchor = min((t for name, t in median_to_target.items() if name.startswith("fitserve")), default=math.inf)
        for name, seeded in runs.items():
            reached = median_to_target[name]
            spread = [line.reached(target) for line, _ in seeded]
            hits = [t for t in spread if t is not None]
            rows.append([
                problem, name, f"{len(hits)}/{len(seeded)}", statistics.median([wall for _, wall in seeded]),
                reached if math.isfinite(reached) else "not reached",
                f"{min(hits):.3f}-{max(hits):.3f}" if hits else "-",
                statistics.median([line.best() for line, _ in seeded]), target,
                statistics.median([line.epochs for line, _ in seeded]),
                reached / anchor if math.isfinite(reached) and math.isfinite(anchor) else "-",
            ])
    load_after = open("/proc/loadavg").read().split()[:3]
    print_table(["problem", "run", "seeds reaching target", "median wall s", "median to target s", "to target s, range",
                 "median best val loss", "target", "median epochs spent", "median to target / fitserve's fastest"],
                rows)
    print("\n(a seed that never reached the target counts as never in the median)")
    print(f"load average (1, 5, 15 min): before {' '.join(load_before)}, after {' '.join(load_after)}")


def median_reached(seeded: list[tuple[Timeline, float]], target: float) -> float:
    """The median over seeds of the time to the target; a seed that never reached it counts as infinitely late."""
    return statistics.median([t if (t := line.reached(target)) is not None else math.inf for line, _ in seeded])


if __name__ == "__main__":
    main()
