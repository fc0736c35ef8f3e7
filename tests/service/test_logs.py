"""Worker log lines carry the id of the job they were written for, in a served process's log (the pool's lines too)."""

import re

from tests.conftest import processes_only
from tests.specs import tiny_regression


@processes_only
def test_every_worker_line_of_a_job_carries_its_id(served):
    job = served.train(tiny_regression(epochs=20))
    lines = [line for line in served.read_log().splitlines() if job["id"] in line]
    assert any("claimed by" in line for line in lines) and any("succeeded in" in line for line in lines)
    worker_lines = [line for line in lines if "logger=fitserve.worker" in line]
    assert worker_lines and all(f"job_id={job['id']}" in line for line in worker_lines)
    idle = [line for line in served.read_log().splitlines() if "logger=fitserve.pool" in line]
    assert idle and all(re.search(r"job_id=- ", line) for line in idle)  # lines outside a job say so
