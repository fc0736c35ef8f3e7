"""What one submit costs the API process, in CPU: `POST /v1/jobs` against `GET /healthz` of the same server.

    .venv/bin/python -m bench.submit_cost [--jobs 400] [--clients 1 4] [--repeat 2]

`fitserve serve` with one worker (auto-batching on, as by default) over its own SQLite file. `--clients`
threads of this process, one owner each, submit bench.many_jobs's tiny jobs one POST at a time; then the
same number of `GET /healthz`, the cheapest request the server answers (its floor: HTTP parsing, the
middleware, the loop). CPU seconds of the API process and of its children (the pool and its worker) are
read from /proc before and after, so the figures are what each request costs, not how long it waited;
this process's own CPU (the clients, httpx) is shown apart. Best of `--repeat` per row (the lowest API CPU).
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.common import Service, header, load_average, print_table
from bench.many_jobs import OWNERS, job_specs

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def descendants(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children = [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
        for child in children:
            found += [child, *descendants(child)]
    return found


def measure(service: Service, clients: int, requests: list, send) -> list[float]:
    """[wall ms, API CPU ms, children CPU ms, client CPU ms] per request, with `clients` threads sending."""
    api = service.proc.pid
    children = descendants(api)
    go = threading.Barrier(clients)

    def run(k: int) -> None:
        go.wait()
        for request in requests[k::clients]:
            send(request, OWNERS[k % len(OWNERS)])

    before = cpu_seconds(api), sum(map(cpu_seconds, children)), time.process_time()
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(run, range(clients)))
    wall = time.perf_counter() - start
    after = cpu_seconds(api), sum(map(cpu_seconds, children)), time.process_time()
    n = len(requests)
    return [wall / n * 1e3, *((b - a) / n * 1e3 for a, b in zip(before, after))]


def one_run(n_jobs: int, clients: int) -> list[list]:
    specs = job_specs(n_jobs, 50)
    with Service(workers=1, owners=OWNERS) as service:
        def health(_, owner: str) -> None:
            assert service.client.get("/healthz", headers=service.headers(owner)).status_code == 200

        health_row = measure(service, clients, [None] * n_jobs, health)
        submit_row = measure(service, clients, specs, lambda spec, owner: service.submit(spec, owner))
    return [[f"GET /healthz, {clients} client(s)", n_jobs, *health_row],
            [f"POST /v1/jobs, {clients} client(s)", n_jobs, *submit_row]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    header(f"CPU per request of the API process: {args.jobs} submits of a tiny job, and as many GET /healthz")
    print(f"load average before: {load_average()}\n")
    rows = []
    for clients in args.clients:
        runs = [one_run(args.jobs, clients) for _ in range(args.repeat)]
        best = [min((run[i] for run in runs), key=lambda row: row[3]) for i in range(2)]
        rows += [[*row, row[3] / best[0][3]] for row in best]
    print_table(["request", "requests", "wall ms/request", "API CPU ms", "pool + worker CPU ms", "client CPU ms",
                 "API CPU / healthz's"], rows)
    print(f"\nload average after: {load_average()}")


if __name__ == "__main__":
    main()
