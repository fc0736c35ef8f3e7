"""`fitserve serve` from start to ready, what each of its processes holds, and SIGTERM to exit: this tree against
another.

    git worktree add /tmp/before <commit>
    .venv/bin/python -m bench.startup --other /tmp/before [--rounds 5]

Each round starts `serve` (one worker, a fresh SQLite file) from each tree in turn, the order swapped every
round so a slow moment of a shared machine falls on both, and measures: seconds from the start to the first
HTTP answer, and to `/readyz` 200 (the API up and a worker registered), then the resident memory (VmRSS) of
the API process, the pool's own process and the worker, and the seconds from SIGTERM to the exit of `serve` (after
its pool and worker). Prints each tree's best and median, and their ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import ROOT, child_pids, free_port, header, load_average, print_table


def rss_mib(pid: int) -> float:
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def spawned(pid: int) -> bool:
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    return b"spawn_main" in cmdline and b"resource_tracker" not in cmdline


def one_start(tree: Path) -> dict[str, float]:
    """Start `serve` from `tree`, wait for ready, read its processes' memory, stop it."""
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        env = {**os.environ, "PYTHONPATH": str(tree), "FITSERVE_DATABASE_URL": f"sqlite:///{tmp}/fitserve.db",
               "FITSERVE_DATA_DIR": tmp, "FITSERVE_TORCH_THREADS": "1"}
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "fitserve.cli", "serve", "--port", str(port), "--workers", "1"],
                                cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out: dict[str, float] = {}
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                while True:
                    if proc.poll() is not None:
                        raise RuntimeError(f"serve from {tree} exited with {proc.returncode}")
                    try:
                        status = client.get("/readyz").status_code
                    except httpx.TransportError:
                        status = None
                    now = time.perf_counter() - start
                    if status is not None:
                        out.setdefault("http s", now)
                    if status == 200:
                        out["ready s"] = now
                        break
                    time.sleep(0.02)
            [pool] = [p for p in child_pids(proc.pid) if spawned(p)]
            [worker] = [p for p in child_pids(pool) if spawned(p)]
            out.update({"api MiB": rss_mib(proc.pid), "pool MiB": rss_mib(pool), "worker MiB": rss_mib(worker)})
            stopping = time.perf_counter()
            proc.terminate()  # SIGTERM: the worker hands back (nothing to hand here), the pool and the API stop
            proc.wait(60)
            out["stop s"] = time.perf_counter() - stopping
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--other", required=True, help="the other source tree (e.g. a git worktree of an earlier commit)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    other = Path(args.other).resolve()
    header(f"serve, start to ready: this tree against {other}, {args.rounds} rounds, 1 worker, SQLite")
    print(f"load average before: {load_average()}\n")
    runs: dict[str, list[dict]] = {"this": [], "other": []}
    one_start(ROOT)  # the first start pays the disk cache's misses: unmeasured
    for r in range(args.rounds):
        for name, tree in [("this", ROOT), ("other", other)][:: 1 if r % 2 == 0 else -1]:
            runs[name].append(one_start(tree))
    rows = []
    for key in ("http s", "ready s", "api MiB", "pool MiB", "worker MiB", "stop s"):
        best = {n: min(r[key] for r in rounds) for n, rounds in runs.items()}
        median = {n: statistics.median(r[key] for r in rounds) for n, rounds in runs.items()}
        rows.append([key, best["other"], median["other"], best["this"], median["this"],
                     best["this"] / best["other"], median["this"] / median["other"]])
    print_table(["measure", "other best", "other median", "this best", "this median", "this / other (best)",
                 "this / other (median)"], rows)
    print(f"\nload average after: {load_average()}")


if __name__ == "__main__":
    main()
