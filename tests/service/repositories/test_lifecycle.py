"""Retention's batch: the jobs that ended first, of every owner, read from ix_jobs_finished_at_id (ended jobs only)
in order, however many jobs are kept; deleting them forgets their idempotency records by an index."""

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.db import make_engine
from service.models import Checkpoint, IdempotencyKey, Job, utcnow
from service.repositories import jobs as job_repo
from service.repositories import lifecycle
from tests.conftest import query_plans


@pytest.fixture
def engine(tmp_path, databases):
    """120 jobs of three owners: every fourth still queued or running (no finished_at); the others ended in an
    order unlike the one they were made in, some at the same moment."""
    engine = make_engine(databases.create(tmp_path / "retention.db"))
    start = utcnow() - timedelta(days=10)
    with Session(engine) as s, s.begin():
        for i in range(120):
            ended = i % 4 != 0
            job_repo.add_job(s, Job(
                owner_id=f"o{i % 3}", spec={}, epochs=1, created_at=start + timedelta(hours=i),
                status=("succeeded", "failed", "cancelled")[i % 3] if ended else ("queued", "running")[i % 8 // 4],
                finished_at=start + timedelta(days=5, hours=(i * 37) % 50) if ended else None,
            ))
            s.add(IdempotencyKey(owner_id=f"o{i % 3}", scope="POST /v1/jobs", key=f"k{i}", fingerprint="f",
                                 location=f"/v1/jobs/{i}"))
    yield engine
    engine.dispose()


def test_a_batch_is_the_jobs_that_ended_first_before_the_cutoff(engine):
    cutoff = utcnow() - timedelta(days=10) + timedelta(days=5, hours=30)
    with Session(engine) as s:
        jobs = list(s.scalars(select(Job)))
        batch = lifecycle.jobs_ended_before(s, cutoff, 25)
        rest = lifecycle.jobs_ended_before(s, cutoff, 1000)
    ended = sorted((job for job in jobs if job.finished_at is not None and job.finished_at < cutoff),
                   key=lambda job: (job.finished_at, job.id))
    assert 25 < len(ended) < 90  # some ended after the cutoff, and some are not ended at all
    assert batch == [job.id for job in ended[:25]]
    assert rest == [job.id for job in ended]


def test_a_batch_reads_the_ended_jobs_in_order_and_sorts_nothing(engine):
    def batch():
        with Session(engine) as s:
            return lifecycle.jobs_ended_before(s, utcnow(), 10)

    postgresql = engine.dialect.name == "postgresql"  # its plans follow statistics: priced out, sorts must not be needed
    settings = ("SET enable_sort = off", "SET enable_seqscan = off") if postgresql else ()
    plan, ids = query_plans(engine, batch, "FROM jobs", settings)
    assert len(ids) == 10
    assert any("ix_jobs_finished_at_id" in step for step in plan), plan
    assert not any("TEMP B-TREE" in step or "Sort" in step for step in plan), plan


def test_deleting_jobs_forgets_their_records_by_the_location_index(engine):
    with Session(engine) as s:
        ids = lifecycle.jobs_ended_before(s, utcnow(), 5)
        positions = [i for i, job in enumerate(s.scalars(select(Job).order_by(Job.created_at))) if job.id in ids]
    locations = [f"/v1/jobs/{i}" for i in positions]

    def forget():
        with Session(engine) as s, s.begin():
            lifecycle.delete_idempotency_records(s, locations)

    postgresql = engine.dialect.name == "postgresql"
    plan, _ = query_plans(engine, forget, "idempotency_keys", ("SET enable_seqscan = off",) if postgresql else ())
    assert any("ix_idempotency_keys_location" in step for step in plan), plan
    with Session(engine) as s:
        left = set(s.scalars(select(IdempotencyKey.location)))
    assert left == {f"/v1/jobs/{i}" for i in range(120)} - set(locations)


def test_checkpoints_dropped_are_those_of_failed_and_cancelled_jobs_read_without_the_final_states(engine):
    """Every succeeded job keeps its final state as long as the job: retention's first rule reads only the other
    checkpoints (ix_checkpoints_not_final), however many final states are kept."""
    with Session(engine) as s, s.begin():
        for job in s.scalars(select(Job).where(Job.finished_at.is_not(None))):
            s.add(Checkpoint(job_id=job.id, attempt=1, epoch=1, data=b"state", final=job.status == "succeeded"))
    with Session(engine) as s:
        expected = set(s.scalars(select(Job.id).where(Job.status.in_(["failed", "cancelled"]),
                                                      Job.finished_at.is_not(None))))
        finals = set(s.scalars(select(Job.id).where(Job.status == "succeeded", Job.finished_at.is_not(None))))
    assert expected and finals

    def drop():
        with Session(engine) as s, s.begin():
            return lifecycle.drop_checkpoints_ended_before(s, utcnow(), 1000)

    postgresql = engine.dialect.name == "postgresql"
    plan, dropped = query_plans(engine, drop, "FROM checkpoints", ("SET enable_seqscan = off",) if postgresql else ())
    assert any("ix_checkpoints_not_final" in step for step in plan), plan
    assert dropped == len(expected)
    with Session(engine) as s:
        assert set(s.scalars(select(Checkpoint.job_id))) == finals
