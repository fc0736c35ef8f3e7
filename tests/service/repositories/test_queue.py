"""The fair claim's turn order read from owner_queues (service/repositories/queue.py): with more owners than the
turn index is read for (TURNS), changes folded or pending, each claim takes the job the whole order says, and the
owner is found by ix_owner_queues_turn."""

from datetime import timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from service.db import make_engine
from service.models import NEVER_STARTED, Job, utcnow
from service.repositories import job_counts
from service.repositories import jobs as job_repo
from service.repositories.queue import TURNS
from tests.conftest import query_plans

OWNERS = 2 * TURNS + 5


@pytest.fixture
def engine(tmp_path, databases):
    """Each of OWNERS owners with two or three queued jobs (priorities mixed); some with running jobs, and
    started jobs that ended, at different moments; one job without an owner. Folded once, then one more job."""
    engine = make_engine(databases.create(tmp_path / "queue.db"))
    start = utcnow() - timedelta(days=1)
    with Session(engine) as s, s.begin():
        for i in range(OWNERS):
            owner = f"o{(i * 7) % OWNERS:02d}"  # owners made out of key order
            for n in range(2 + i % 2):
                job_repo.add_job(s, Job(owner_id=owner, spec={}, epochs=1, status="queued", priority=(n + i) % 3 - 1,
                                        created_at=start + timedelta(minutes=i * 5 + n)))
            if i % 3 == 0:  # a running job: after every owner with none
                job_repo.add_job(s, Job(owner_id=owner, spec={}, epochs=1, status="running",
                                        created_at=start, started_at=start + timedelta(minutes=i)))
            elif i % 3 == 1:  # started, then ended: its start still orders the turn
                ended = job_repo.add_job(s, Job(owner_id=owner, spec={}, epochs=1, status="running", created_at=start,
                                                started_at=start + timedelta(minutes=(i * 11) % 60)))
                s.execute(text("UPDATE jobs SET status = 'succeeded', finished_at = :at WHERE id = :id"),
                          {"at": start + timedelta(hours=1), "id": ended.id})
        job_repo.add_job(s, Job(owner_id=None, spec={}, epochs=1, status="queued", created_at=start))
    with Session(engine) as s, s.begin():
        job_counts.fold(s)
    with Session(engine) as s, s.begin():  # pending: not folded
        job_repo.add_job(s, Job(owner_id="late", spec={}, epochs=1, status="queued", created_at=start))
    yield engine
    engine.dispose()


def turn_order(engine) -> list[str]:
    """Each owner's next job, owners in fair share's turn order, from the jobs themselves: fewest running, longest
    since a start (never: first), the owner's key; within the owner, highest priority, oldest."""
    with Session(engine) as s:
        jobs = list(s.scalars(select(Job)))
    owners: dict[str, dict] = {}
    for job in jobs:
        entry = owners.setdefault(job.owner_id or "", {"running": 0, "last": NEVER_STARTED, "queued": []})
        entry["running"] += job.status == "running"
        if job.started_at is not None:
            entry["last"] = max(entry["last"], job.started_at)
        if job.status == "queued":
            entry["queued"].append(job)
    waiting = sorted((e["running"], e["last"], owner) for owner, e in owners.items() if e["queued"])
    return [min(owners[owner]["queued"], key=lambda job: (-job.priority, job.created_at, job.id)).id
            for _, _, owner in waiting]


def expected_next(engine) -> str | None:
    order = turn_order(engine)
    return order[0] if order else None


def claim(engine, max_running: int | None = None) -> str | None:
    with Session(engine) as s, s.begin():
        job = job_repo.claim_next_job(s, "w", 3600, "fair", max_running)
        return None if job is None else job.id


def test_each_claim_takes_the_job_the_whole_turn_order_gives(engine):
    with Session(engine) as s:
        queued = s.scalar(text("SELECT count(*) FROM jobs WHERE status = 'queued'"))
    claimed = []
    for n in range(queued + 1):
        if n % 9 == 4:  # some claims read folded turns, others pending ones
            with Session(engine) as s, s.begin():
                job_counts.fold(s)
        expected = expected_next(engine)
        got = claim(engine)
        assert got == expected, n
        claimed.append(got)
    assert None not in claimed[:-1] and claimed[-1] is None  # every queued job claimed, then none


def test_owners_at_the_running_cap_wait(engine):
    claimed = [claim(engine, max_running=1) for _ in range(OWNERS + 2)]
    got = [job for job in claimed if job is not None]
    # those with a running job wait; the others get one each, the anonymous owner and the late one included
    assert len(got) == OWNERS - (OWNERS + 2) // 3 + 2
    with Session(engine) as s:
        running = s.execute(text("SELECT owner_id, count(*) FROM jobs WHERE status = 'running' GROUP BY owner_id"))
        assert all(n == 1 for _, n in running)


def test_the_turn_order_and_owner_queues_agree_with_the_jobs_after_a_fold_and_a_recount(engine):
    for _ in range(5):
        claim(engine)

    def queues(s):
        return {tuple(row) for row in s.execute(text("SELECT owner_key, queued, running FROM owner_queues"
                                                     " WHERE queued > 0 OR running > 0"))}

    truth = ("SELECT coalesce(owner_id, ''), sum(CASE WHEN status = 'queued' THEN 1 ELSE 0 END),"
             " sum(CASE WHEN status = 'running' THEN 1 ELSE 0 END) FROM jobs GROUP BY coalesce(owner_id, '')")
    with Session(engine) as s, s.begin():
        job_counts.fold(s)
        expected = {tuple(row) for row in s.execute(text(truth)) if row[1] or row[2]}
        assert queues(s) == expected
        s.execute(text("UPDATE owner_queues SET running = running + 3"))  # wrong, as a repair would find them
        job_counts.recount(s)
        assert queues(s) == expected


def test_the_next_owner_is_read_from_the_turn_index(engine):
    postgresql = engine.dialect.name == "postgresql"
    settings = ("SET enable_seqscan = off",) if postgresql else ()
    plan, job_id = query_plans(engine, lambda: claim(engine), "owner_queues", settings)
    assert job_id is not None
    assert any("ix_owner_queues_turn" in step for step in plan), plan
    # walked in turn order from its first entry (SQLite: SCAN ... USING INDEX), never read whole
    walks = [step for step in plan if "SCAN owner_queues" in step or "Seq Scan on owner_queues" in step]
    assert all("ix_owner_queues_turn" in step for step in walks), plan
    assert not any("job_counts" in step for step in plan), plan  # the old order: every owner's counters


def test_owners_whose_first_jobs_other_claims_hold_are_passed_over_past_the_turn_index(engine):
    """PostgreSQL: the first TURNS + 1 owners' next jobs held by other claims (their advisory locks): the claim
    takes the next owner's, read past the turn index's first entries."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises claims: no claim holds a job while another claims")
    order = turn_order(engine)
    held = order[:TURNS + 1]
    with engine.connect() as holder:
        for job_id in held:
            holder.execute(text("SELECT pg_advisory_lock(hashtext(:id))"), {"id": job_id})
        assert claim(engine) == order[TURNS + 1]
        holder.execute(text("SELECT pg_advisory_unlock_all()"))
    assert claim(engine) == held[0]
