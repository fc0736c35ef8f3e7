"""`delete` and `usage` in the Python client, and `fitserve delete`, against the shared served process."""

import asyncio
import os
import subprocess
import sys

import pytest

from fitserve.client import ApiError, AsyncClient, Client
from tests.conftest import ROOT
from tests.specs import tiny_regression


def test_the_client_deletes_a_job_and_usage_counts_one_fewer(served):
    with Client(str(served.client.base_url)) as fs:
        job = fs.wait(fs.submit(tiny_regression(epochs=5)), timeout=120)
        before = fs.usage()
        assert before.jobs.total >= 1 and before.stored_bytes.weights > 0
        fs.delete(job)
        with pytest.raises(ApiError) as gone:
            fs.get(job)
        assert gone.value.status_code == 404
        assert fs.usage().jobs.total == before.jobs.total - 1
        with pytest.raises(ApiError) as again:
            fs.delete(job)
        assert again.value.status_code == 404


def test_the_async_client_deletes_too(served):
    async def scenario() -> int:
        async with AsyncClient(str(served.client.base_url)) as fs:
            job = await fs.submit(tiny_regression(epochs=1_000_000))
            await fs.delete(job)
            try:
                await fs.get(job)
            except ApiError as exc:
                return exc.status_code
        return 200

    assert asyncio.run(scenario()) == 404


def test_fitserve_delete_prints_each_id_and_fails_on_an_unknown_one(served):
    job = served.submit(tiny_regression(epochs=5))
    env = {**os.environ, "FITSERVE_URL": str(served.client.base_url)}

    def fitserve(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "fitserve.cli", *args]
        return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)

    done = fitserve("delete", job["id"])
    assert done.returncode == 0 and done.stdout.strip() == f"deleted job {job['id']}"
    assert served.client.get(f"/v1/jobs/{job['id']}").status_code == 404
    missing = fitserve("delete", job["id"])
    assert missing.returncode == 3 and "404" in missing.stderr
