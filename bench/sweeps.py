"""Sweeps through the service against the same members as separate jobs, in the same run.

K members (seeds x learning rates) of the tutorial's cubic MLP and softmax models on 1000 points:
one `POST /v1/sweeps` (the worker trains them batched when its probe measures that faster) against
K `POST /v1/jobs` drained by the same single worker. Prints wall time, members per second and the ratio.

    python -m bench.sweeps [--epochs 200] [--sizes 16,64] [--batched-only 1024] [--models "cubic MLP"] [--compile on]
"""

from __future__ import annotations

import argparse
import time

from bench.common import EXAMPLES, Service, header, load_example, machine, print_table

MODELS = {"cubic MLP": "3_nonlinear_mlp", "softmax": "5_softmax_classification"}


def base_spec(name: str, epochs: int) -> dict:
    spec = load_example(next(p for p in EXAMPLES if p.stem == name))
    spec["epochs"] = epochs
    if spec["data"]["generator"] == "blobs":
        for cluster in spec["data"]["clusters"]:
            cluster["n"] = 1000 // len(spec["data"]["clusters"]) + 1
    else:
        spec["data"]["n"] = 1000
    return spec


def space(k: int) -> dict:
    lrs = [0.001, 0.003, 0.01, 0.03]
    return {"lr": lrs, "seed": list(range(k // len(lrs)))}


def member_specs(base: dict, k: int) -> list[dict]:
    sp = space(k)
    return [{**base, "seed": s, "optimizer": {**base["optimizer"], "lr": lr}} for lr in sp["lr"] for s in sp["seed"]]


def run_sweep(svc: Service, base: dict, k: int) -> tuple[float, str]:
    start = time.perf_counter()
    sweep = svc.client.post("/v1/sweeps", json={"base": base, "space": space(k)}).raise_for_status().json()
    while True:
        sweep = svc.client.get(f"/v1/sweeps/{sweep['id']}").json()
        if sweep["status"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.05)
    assert sweep["progress"]["succeeded"] == k, sweep["progress"]
    return time.perf_counter() - start, sweep["execution"]


def run_separate(svc: Service, specs: list[dict]) -> float:
    start = time.perf_counter()
    ids = [svc.submit(spec) for spec in specs]
    for job_id in ids:
        svc.wait(job_id, poll=0.05)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--sizes", default="16,64", help="sweep sizes measured both ways")
    parser.add_argument("--batched-only", default="", help="sizes measured as a sweep only (too slow one by one)")
    parser.add_argument("--models", default=",".join(MODELS), help="of: " + ", ".join(MODELS))
    parser.add_argument("--compile", default="auto", choices=["auto", "on", "off"], help="the worker's FITSERVE_COMPILE")
    args = parser.parse_args()
    header(f"Sweeps vs separate jobs, {args.epochs} epochs, 1000 points, one worker, FITSERVE_COMPILE={args.compile}: "
           f"{machine()}")
    rows = []
    # a 1024-member sweep is 1024 queued jobs: above the default per-owner cap
    limits = {"FITSERVE_MAX_QUEUED_PER_OWNER": "10000", "FITSERVE_RATE_LIMIT_PER_SECOND": "100000",
              "FITSERVE_RATE_LIMIT_BURST": "100000", "FITSERVE_TORCH_THREADS": "1", "FITSERVE_COMPILE": args.compile}
    with Service(workers=1, **limits) as svc:
        for label in args.models.split(","):
            name = MODELS[label]
            base = base_spec(name, args.epochs)
            for k in [int(s) for s in args.sizes.split(",") if s]:
                sweep_s, how = run_sweep(svc, base, k)
                separate_s = run_separate(svc, member_specs(base, k))
                rows.append([label, k, sweep_s, k / sweep_s, separate_s, k / separate_s, separate_s / sweep_s, how])
            for k in [int(s) for s in args.batched_only.split(",") if s]:
                sweep_s, how = run_sweep(svc, base, k)
                rows.append([label, k, sweep_s, k / sweep_s, "-", "-", "-", how])
    print_table(
        ["model", "K", "sweep s", "members/s", "separate jobs s", "members/s", "speed-up", "execution"], rows
    )


if __name__ == "__main__":
    main()
