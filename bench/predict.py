"""Prediction latency and throughput: the service against a bare FastAPI endpoint holding the same model.

    .venv/bin/python -m bench.predict [--requests 400]

A job (example 3, the 1-20-1 MLP, shortened) is trained through the service; its weights are
loaded by a bare app (`bare_app`: one POST that runs the network, nothing else), served by uvicorn
like the service. Both on loopback; the clients are threads in this process, each with its own
connection. The service's cache is warmed by one request first, as it is for any model in use.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from pydantic import BaseModel

from bench.common import EXAMPLES, ROOT, Service, free_port, header, load_example, print_table


class Body(BaseModel):
    inputs: list


def bare_app():
    """The limit: FastAPI, the model in memory, one forward under inference_mode, the same JSON shape."""
    import numpy as np
    import torch
    from fastapi import FastAPI

    from modelzoo import build_network
    from modelzoo.weights import load_weights, spec_from_bytes
    from service.schemas.spec import JobSpec

    blob = Path(os.environ["BENCH_WEIGHTS"]).read_bytes()
    spec = JobSpec.model_validate(spec_from_bytes(blob))
    net = load_weights(build_network(spec.model), blob).eval()
    app = FastAPI()

    @app.post("/predict")
    def predict(body: Body) -> dict:
        x = torch.from_numpy(np.asarray(body.inputs, dtype=np.float32)).reshape(len(body.inputs), -1)
        with torch.inference_mode():
            return {"predictions": net(x)[:, 0].tolist()}

    return app


class BareServer:
    def __init__(self, weights: Path):
        self.port = free_port()
        env = {**os.environ, "BENCH_WEIGHTS": str(weights)}
        cmd = [sys.executable, "-m", "uvicorn", "bench.predict:bare_app", "--factory", "--port", str(self.port),
               "--log-level", "warning"]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}/predict"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                response = httpx.post(self.url, json={"inputs": [[0.0]]})
                if response.status_code != 200:
                    self.stop()
                    raise RuntimeError(f"bare server answered {response.status_code}: {response.text}")
                return
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("bare server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def load(url: str, body: dict, clients: int, requests: int) -> tuple[float, float, float]:
    """p50 ms, p99 ms and requests/s for `requests` requests spread over `clients` threads."""
    latencies: list[float] = []
    errors: list[Exception] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        mine = []
        try:
            with httpx.Client(timeout=60) as http:
                for _ in range(n):
                    start = time.perf_counter()
                    http.post(url, json=body).raise_for_status()
                    mine.append(time.perf_counter() - start)
        except httpx.HTTPError as exc:
            errors.append(exc)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(requests // clients,)) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    q = statistics.quantiles(latencies, n=100)
    return q[49] * 1e3, q[98] * 1e3, len(latencies) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400, help="per configuration")
    args = parser.parse_args()
    header("Predictions: service vs bare FastAPI endpoint (MLP 1-20-1)")
    spec = load_example(EXAMPLES[2], 0.01)
    rows = []
    with Service(workers=1) as service, tempfile.TemporaryDirectory() as tmp:
        job_id = service.wait(service.submit(spec))["id"]
        weights = Path(tmp) / "weights.safetensors"
        weights.write_bytes(service.client.get(f"/v1/jobs/{job_id}/weights").content)
        bare = BareServer(weights)
        try:
            service_url = f"{service.client.base_url}/v1/jobs/{job_id}/predict"
            for n_rows in (1, 1000):
                body = {"inputs": [[i / max(1, n_rows)] for i in range(n_rows)]}
                for clients in (1, 32):
                    requests = args.requests if n_rows == 1 else args.requests // 4
                    requests = max(requests, clients)
                    load(service_url, body, 1, 5)  # warm: the cache loads the model once
                    ours = load(service_url, body, clients, requests)
                    limit = load(bare.url, body, clients, requests)
                    rows.append([n_rows, clients, *ours, *limit, ours[0] / limit[0], ours[2] / limit[2]])
        finally:
            bare.stop()
    print_table(
        ["rows", "clients", "service p50 ms", "p99 ms", "req/s", "bare p50 ms", "p99 ms", "req/s",
         "p50 ratio", "req/s ratio"],
        rows,
    )


if __name__ == "__main__":
    main()
