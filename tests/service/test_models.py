"""Ids the models make."""

import uuid
from datetime import UTC, datetime, timedelta

from service.models import new_job_id
from tests.specs import tiny_regression


def test_job_ids_are_uuid7s_in_the_order_they_were_made(make_app):
    """Every index keyed by a job's id keeps the jobs in the order they were made (retention deletes the oldest):
    ids of jobs made a millisecond apart sort as they were made, as 32 hex digits (a UUIDv7)."""
    at = datetime(2026, 12, 7, tzinfo=UTC)
    made = [new_job_id(at=at + timedelta(milliseconds=i)) for i in range(200)]
    assert sorted(made) == made and len(set(made)) == 200
    app = make_app(workers=0).start()
    first, second = (app.submit(tiny_regression())["id"] for _ in range(2))
    for job_id in (made[0], first):
        assert len(job_id) == 32 and uuid.UUID(hex=job_id).version == 7
    assert first[:12] <= second[:12]  # milliseconds first
