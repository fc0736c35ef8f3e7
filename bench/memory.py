"""Peak memory (VmHWM) of the API process and of a worker, after the six tutorial jobs and some predictions.

    .venv/bin/python -m bench.memory [--epochs-scale 0.05]

Baselines in the same run: a process that imports torch and FastAPI and does nothing else, and one
that trains the same six jobs with the hand-written loop.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from bench.common import EXAMPLES, ROOT, Service, header, load_example, print_table

HAND = """
import json, sys, torch
from bench.loops import hand_loop
torch.set_num_threads(1)
for spec in json.loads(sys.argv[1]):
    hand_loop(spec)
print(open('/proc/self/status').read())
"""
IMPORTS = "import torch, fastapi, numpy; print(open('/proc/self/status').read())"


def status_mib(text: str) -> tuple[float, float]:
    """(peak, current) resident set in MiB from /proc/<pid>/status."""
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return tuple(int(fields[k].split()[0]) / 1024 for k in ("VmHWM", "VmRSS"))


def of_process(pid: int) -> tuple[float, float]:
    return status_mib(Path(f"/proc/{pid}/status").read_text())


def of_script(code: str, *args: str) -> tuple[float, float]:
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, check=True)
    return status_mib(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs-scale", type=float, default=0.05)
    args = parser.parse_args()
    specs = [load_example(path, args.epochs_scale) for path in EXAMPLES]
    header(f"Peak memory after the six tutorial jobs (epochs x {args.epochs_scale})")
    with Service(workers=1) as service:
        for spec in specs:
            job = service.wait(service.submit(spec))
            inputs = [[[[0.0] * 8] * 8]] if spec["model"]["kind"] == "cnn" else [[0.0] * spec["model"]["in_features"]]
            service.client.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": inputs * 1000}).raise_for_status()
        pids = service.pids()
        rows = [["API process (uvicorn + app)", *of_process(pids["api"][0])]]
        rows += [[f"worker process {i + 1}", *of_process(pid)] for i, pid in enumerate(pids["workers"])]
    rows.append(["baseline: import torch, fastapi, numpy", *of_script(IMPORTS)])
    rows.append(["baseline: the six jobs by the hand-written loop", *of_script(HAND, json.dumps(specs))])
    print_table(["process", "peak RSS MiB", "RSS at end MiB"], rows)


if __name__ == "__main__":
    main()
