"""What writing a 10000-point curve costs, against the job that makes it (example 1, 10000 epochs).

    .venv/bin/python -m bench.metrics

The trainer reports every REPORT_SECONDS, and at the latest every 4096 recorded epochs; each report
is one transaction (`Ledger.report`: progress update plus one chunk row holding the points). Here the
worker's own `Ledger.report` writes 10000 points to a fresh SQLite file in reports of each size, and
the total is set against example 1's training time in this process with reports kept in memory.
"""

from __future__ import annotations

import json
import os
import tempfile
import time

import torch

from bench.common import EXAMPLES, header, print_table

POINTS = 10_000


def training_seconds() -> float:
    from modelzoo import build_network
    from service.schemas.spec import JobSpec
    from workers.data import load_data
    from workers.engines.eager import Trainer
    from workers.run import train_here

    spec = JobSpec.model_validate(json.loads(EXAMPLES[0].read_text()))
    torch.manual_seed(spec.seed)
    trainer = Trainer(spec, build_network(spec.model), load_data(spec, None), torch.device("cpu"))
    start = time.perf_counter()
    train_here(trainer)
    return time.perf_counter() - start


def writing_seconds(per_report: int) -> float:
    """Seconds for `Ledger.report` to store POINTS points, `per_report` at a time, into a new job."""
    from service.curves import Columns
    from service.db import session_scope
    from service.schemas.spec import JobSpec
    from service.services.jobs import submit_job
    from service.settings import get_settings
    from workers.claims import claim
    from workers.ledger import Ledger, Member

    settings = get_settings()
    with session_scope() as s:
        submit_job(s, JobSpec.model_validate(json.loads(EXAMPLES[0].read_text())), None, settings)
    member, ledger = Member.of(claim("bench-worker", settings)[0]), Ledger("bench-worker")
    steps = list(range(1, POINTS + 1))
    points = Columns(step=steps, epoch=steps, loss=[1.0 / i for i in steps])
    start = time.perf_counter()
    for first in range(0, POINTS, per_report):
        batch = points[first : first + per_report]
        ledger.report([{"member": member, "epoch": batch.epoch[-1], "step": batch.step[-1], "points": batch,
                        "trained_seconds": time.perf_counter() - start}])
    return time.perf_counter() - start


def main() -> None:
    torch.set_num_threads(1)
    header(f"Cost of a {POINTS}-point curve against example 1 (10000 epochs)")
    training_seconds()  # warm-up
    train_s = training_seconds()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["FITSERVE_DATABASE_URL"] = f"sqlite:///{tmp}/fitserve.db"
        from service.migrations import upgrade
        from service.settings import get_settings

        upgrade(get_settings().DATABASE_URL)
        rows = []
        for per_report in (4096, 1024, 256, 100):
            write_s = writing_seconds(per_report)
            rows.append([per_report, -(-POINTS // per_report), write_s, train_s, f"{write_s / train_s:.2%}"])
    print_table(["points per report", "reports", "write s", "training s", "write / training"], rows)


if __name__ == "__main__":
    main()
