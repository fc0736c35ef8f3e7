"""A classifier sweep with ASHA maximizing val_accuracy against the same sweep ranked by val_loss, in the same run.

Softmax regression (a linear layer, cross-entropy) on scikit-learn's digits (64 pixels, 10 classes), 60% train,
20% validation, 20% test, mini-batches of 64; `--count` members sampled from lr and weight_decay ranges by
`search_seed`, so both sweeps of a seed hold the very same members and differ only in what ASHA keeps at each
rung and what ranks the survivors. Prints, per seed and objective, the best member's val_accuracy, its
test accuracy (the final evaluation's) and val_loss, the sweep's wall time, how many of the members ASHA kept at
its first rung the val_loss sweep kept too, and whether both picked the same best member; then means and ratios.

    python -m bench.objectives [--seeds 3] [--count 16] [--epochs 90]
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench.common import Service, header, load_average, print_table

BASE = {
    "model": {"kind": "linear", "in_features": 64, "out_features": 10},
    "task": "classification",
    "data": {"source": "builtin", "name": "digits", "standardize": True, "validation_fraction": 0.2,
             "test_fraction": 0.2},
    "loss": "cross_entropy",
    "optimizer": {"kind": "sgd", "lr": 0.1, "momentum": 0.9},
    "batch_size": 64,
}
SPACE = {"lr": {"distribution": "log_uniform", "low": 1e-4, "high": 3.0},
         "weight_decay": {"distribution": "log_uniform", "low": 1e-6, "high": 0.3}}
OBJECTIVES = {"val_loss (min)": {"metric": "val_loss", "mode": "min"},
              "val_accuracy (max)": {"metric": "val_accuracy", "mode": "max"}}


def run_sweep(svc: Service, args, seed: int, objective: dict) -> dict:
    body = {"name": f"objectives {objective['metric']} {seed}", "base": {**BASE, "epochs": args.epochs},
            "space": SPACE, "search": "asha", "count": args.count, "search_seed": seed,
            "asha": {"min_epochs": args.min_epochs, "reduction_factor": 3}, "objective": objective}
    start = time.perf_counter()
    sweep = svc.client.post("/v1/sweeps", json=body).raise_for_status().json()
    while sweep["status"] not in ("succeeded", "failed", "cancelled"):
        time.sleep(0.1)
        sweep = svc.client.get(f"/v1/sweeps/{sweep['id']}").json()
    seconds = time.perf_counter() - start
    assert sweep["status"] == "succeeded", sweep["progress"]
    best = next(e for e in sweep["leaderboard"] if e["job_id"] == sweep["best_job_id"])
    evaluation = svc.get(best["job_id"])["evaluation"] or {}
    # members by their sampled values: both sweeps of a seed hold the same ones, under other ids
    values = {e["job_id"]: tuple(sorted(e["hyperparameters"].items())) for e in sweep["leaderboard"]}
    return {"val_accuracy": best["val_accuracy"], "test_accuracy": (evaluation.get("test") or {}).get("accuracy"),
            "val_loss": best["val_loss"], "seconds": seconds, "best": values[best["job_id"]],
            "first_rung": {values[j] for j in sweep["search_state"]["rungs"]["1"]["kept"]}}


def mean(runs: list[dict], key: str) -> float:
    return statistics.mean(r[key] for r in runs if r[key] is not None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=5, help="search seeds: each samples another set of members")
    parser.add_argument("--count", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=90)
    parser.add_argument("--min-epochs", type=int, default=10, help="ASHA's first rung (eta 3)")
    args = parser.parse_args()
    header(f"Sweep objectives: ASHA over {args.count} softmax members on digits, {args.epochs} epochs, one worker")
    rows, results = [], {label: [] for label in OBJECTIVES}
    with Service(workers=1, FITSERVE_TORCH_THREADS="1") as svc:
        for seed in range(args.seeds):
            for label, objective in OBJECTIVES.items():  # alternated, so both see the same load
                result = run_sweep(svc, args, seed, objective)
                results[label].append(result)
                baseline = results[next(iter(OBJECTIVES))][-1]
                shared = f"{len(result['first_rung'] & baseline['first_rung'])}/{len(result['first_rung'])}"
                rows.append([seed, label, result["val_accuracy"], result["test_accuracy"], result["val_loss"],
                             result["seconds"], shared, "yes" if result["best"] == baseline["best"] else "no"])
    for label, runs in results.items():
        rows.append(["mean", label, *(mean(runs, k) for k in ("val_accuracy", "test_accuracy", "val_loss", "seconds")),
                     "", ""])
    print_table(["search seed", "objective", "best val_accuracy", "its test accuracy", "its val_loss", "wall s",
                 "rung 1 kept as val_loss's", "same best member"], rows)
    by_loss, by_accuracy = (results[label] for label in OBJECTIVES)
    print(f"\nval_accuracy objective / val_loss objective: best val_accuracy x"
          f"{mean(by_accuracy, 'val_accuracy') / mean(by_loss, 'val_accuracy'):.3f}, test accuracy x"
          f"{mean(by_accuracy, 'test_accuracy') / mean(by_loss, 'test_accuracy'):.3f}, wall time x"
          f"{mean(by_accuracy, 'seconds') / mean(by_loss, 'seconds'):.3f}; load average {load_average()}")


if __name__ == "__main__":
    main()
