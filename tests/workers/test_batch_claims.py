"""A batch claim on PostgreSQL skips the mates another claim holds instead of waiting for them.

Two claims that each wait on a mate the other locked first would deadlock; with SKIP LOCKED each takes
what is free. The other claim here is a transaction holding one queued job's row, as a claim does
between its UPDATE and its commit. (SQLite serialises writers: no two claims overlap there.)
"""

import time

import pytest
from sqlalchemy import text

from service.db import get_engine, session_scope
from service.repositories import jobs as job_repo
from service.repositories.batches import claim_batch_mates
from tests.specs import tiny_regression


def test_a_batch_claim_skips_a_mate_whose_row_another_claim_holds(worker_here, backend):
    if backend != "postgresql":
        pytest.skip("row locks are PostgreSQL's; SQLite lets one writer in at a time")
    srv, settings = worker_here
    ids = [srv.submit(tiny_regression(seed=seed))["id"] for seed in range(4)]  # one batch key
    with get_engine().connect() as other_claim:
        other_claim.execute(text("SELECT id FROM jobs WHERE id = :id FOR UPDATE"), {"id": ids[3]})
        started = time.monotonic()
        with session_scope() as s:
            job = job_repo.claim_job(s, ids[0], "test-worker", settings.LEASE_SECONDS)
            mates = claim_batch_mates(s, job, "test-worker", settings.LEASE_SECONDS, limit=10, max_running=None)
        waited = time.monotonic() - started
        other_claim.rollback()
    # without SKIP LOCKED the claim would wait for the other transaction, here until the server ends it
    assert sorted(mates) == sorted(ids[1:3]) and waited < 5
    status = dict(srv.query("SELECT id, status FROM jobs"))
    assert [status[job_id] for job_id in ids] == ["running", "running", "running", "queued"]
