"""Turns: how long owner B's small job waits behind owner A's long run on the only worker, and what giving
the worker up costs A.

    .venv/bin/python -m bench.turns [--turn 5] [--epochs 40000] [--members 3]

`fitserve serve --workers 1` on SQLite with keys for A and B. A submits a sweep searched by ASHA and trained
in turn (`"execution": "one_by_one"`: every member on the one worker, an epoch each in turn), and, once it
trains, B submits one small job. Measured with FITSERVE_YIELD_SECONDS=--turn against 0 (a run keeps its worker
to its end, as before turns), in the same run: B's wait to start (its started_at - its created_at), A's sweep
from its first start to its last finish, and how many turns A's members gave up. A's members' final losses
must match between the two (a turn resumes from a checkpoint of the same state; this is checked, not assumed).
"""

from __future__ import annotations

import argparse
import time

from bench.common import Service, header, load_average, print_table, seconds_between
from bench.fairness import TINY

LONG = {
    "model": {"kind": "mlp", "in_features": 1, "hidden": [16], "out_features": 1, "activation": "tanh"},
    "task": "regression",
    "data": {"source": "synthetic", "generator": "polynomial", "coefficients": [0, -1, 0, 0.5], "n": 200},
    "loss": "mse",
    "optimizer": {"kind": "adam", "lr": 0.01},
    "metrics_every": 100,
}


def sweep_body(epochs: int, members: int) -> dict:
    return {"base": {**LONG, "epochs": epochs}, "execution": "one_by_one", "count": members, "search": "asha",
            "asha": {"min_epochs": epochs // 4, "reduction_factor": 2}, "search_seed": 0,
            "space": {"lr": {"distribution": "log_uniform", "low": 1e-3, "high": 3e-2}}}


def measure(turn: float, epochs: int, members: int) -> dict:
    with Service(workers=1, owners=("A", "B"), FITSERVE_YIELD_SECONDS=str(turn), FITSERVE_AUTO_BATCH="off") as svc:
        made = svc.client.post("/v1/sweeps", json=sweep_body(epochs, members), headers=svc.headers("A"))
        made.raise_for_status()
        sweep = made.json()
        listed = svc.client.get("/v1/jobs", params={"sweep_id": sweep["id"], "limit": 100}, headers=svc.headers("A"))
        ids = [job["id"] for job in listed.json()["items"]]
        while svc.get(ids[0], "A")["status"] != "running":
            time.sleep(0.05)
        time.sleep(1.0)  # A's run is under way before B arrives
        b = svc.wait(svc.submit({**TINY}, "B"), poll=0.05, owner="B")
        members_done = [svc.wait(job_id, poll=0.25, owner="A") for job_id in ids]
    return {
        "b_wait": seconds_between(b["created_at"], b["started_at"]),
        "a_span": seconds_between(min(m["started_at"] for m in members_done if m["started_at"]),
                                  max(m["finished_at"] for m in members_done)),
        "yields": sum(m["yields"] for m in members_done),
        "losses": [round(m["metrics"]["loss"], 6) for m in members_done],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turn", type=float, default=5.0)
    parser.add_argument("--epochs", type=int, default=40_000)
    parser.add_argument("--members", type=int, default=3)
    args = parser.parse_args()
    header(f"Turns: B's small job behind A's ASHA sweep in turn ({args.members} members x {args.epochs} epochs), "
           f"1 worker, SQLite; load before: {load_average()}")
    without = measure(0, args.epochs, args.members)
    with_turns = measure(args.turn, args.epochs, args.members)
    rows = [[f"FITSERVE_YIELD_SECONDS={name}", f"{r['b_wait']:.2f}", f"{r['a_span']:.1f}", r["yields"]]
            for name, r in (("0 (before)", without), (f"{args.turn:g}", with_turns))]
    print_table(["setting", "B waits to start (s)", "A's sweep, first start to last finish (s)", "turns A gave"], rows)
    print(f"B's wait with turns / without: {with_turns['b_wait'] / without['b_wait']:.3f}; "
          f"A's span with / without: {with_turns['a_span'] / without['a_span']:.3f}")
    same = without["losses"] == with_turns["losses"]
    print(f"A's members' final losses equal with and without turns: {same} {without['losses']} {with_turns['losses']}")
    print(f"load after: {load_average()}")


if __name__ == "__main__":
    main()
