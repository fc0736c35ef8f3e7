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


def forked(pid: int) -> bool:
    """multiprocessing's fork server, or a process it forked (both run its command line)."""
    return b"multiprocessing.forkserver" in Path(f"/proc/{pid}/cmdline").read_bytes()


def pss_mib(pids: list[int]) -> float:
    """The processes' proportional set size together: shared pages (torch's, between a fork server and its
    workers) counted once, as the host's memory holds them."""
    total = 0
    for pid in pids:
        line = next(x for x in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines() if x.startswith("Pss:"))
        total += int(line.split()[1])
    return total / 1024


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU the processes have used so far."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def workers_of(pool: int) -> tuple[list[int], int | None]:
    """The pool's workers and its fork server (None for a tree whose workers are spawned)."""
    servers = [p for p in child_pids(pool) if forked(p)]
    if servers:
        return child_pids(servers[0]), servers[0]
    return [p for p in child_pids(pool) if spawned(p)], None


def one_start(tree: Path, workers: int) -> dict[str, float]:
    """Start `serve` from `tree`, wait for ready, read its processes' memory, stop it."""
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        env = {**os.environ, "PYTHONPATH": str(tree), "FITSERVE_DATABASE_URL": f"sqlite:///{tmp}/fitserve.db",
               "FITSERVE_DATA_DIR": tmp, "FITSERVE_TORCH_THREADS": "1"}
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "fitserve.cli", "serve", "--port", str(port), "--workers", str(workers)],
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
            found, server = workers_of(pool)
            # /readyz asks for one registered worker: the others may still be starting
            while len(found) < workers:
                time.sleep(0.02)
                found, server = workers_of(pool)
            tree = [proc.pid, pool, *found, *([server] if server else [])]
            out.update({"api MiB": rss_mib(proc.pid), "pool MiB": rss_mib(pool), "worker MiB": rss_mib(found[0]),
                        "fork server MiB": rss_mib(server) if server else 0.0, "CPU s at ready": cpu_seconds(tree),
                        "all processes PSS MiB": pss_mib(tree)})
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
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    other = Path(args.other).resolve()
    header(f"serve, start to ready: this tree against {other}, {args.rounds} rounds, {args.workers} worker(s), SQLite")
    print(f"load average before: {load_average()}\n")
    runs: dict[str, list[dict]] = {"this": [], "other": []}
    one_start(ROOT, args.workers)  # the first start pays the disk cache's misses: unmeasured
    for r in range(args.rounds):
        for name, tree in [("this", ROOT), ("other", other)][:: 1 if r % 2 == 0 else -1]:
            runs[name].append(one_start(tree, args.workers))
    rows = []
    for key in ("http s", "ready s", "CPU s at ready", "api MiB", "pool MiB", "worker MiB", "fork server MiB",
                "all processes PSS MiB", "stop s"):
        best = {n: min(r[key] for r in rounds) for n, rounds in runs.items()}
        median = {n: statistics.median(r[key] for r in rounds) for n, rounds in runs.items()}
        rows.append([key, best["other"], median["other"], best["this"], median["this"],
                     best["this"] / (best["other"] or 1), median["this"] / (median["other"] or 1)])
    print_table(["measure", "other best", "other median", "this best", "this median", "this / other (best)",
                 "this / other (median)"], rows)
    print(f"\nload average after: {load_average()}")


if __name__ == "__main__":
    main()
