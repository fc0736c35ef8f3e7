"""What the webhook thread asks the database each poll reads a partial index of open work, never the table: a
million ended jobs cost it nothing (SQLite's plans do not depend on statistics, so the plan is the test)."""

from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from service.db import make_engine
from service.models import Job, Sweep, WebhookDelivery, utcnow
from service.repositories import jobs as job_repo
from service.repositories import webhooks as repo
from tests.harness.calls import statements_run


@pytest.fixture
def engine(tmp_path, databases, backend):
    if backend != "sqlite":
        pytest.skip("PostgreSQL's plans follow its statistics; the README's Webhooks section gives its plans")
    engine = make_engine(databases.create(tmp_path / "hooks.db"))
    now = utcnow()
    with Session(engine) as s, s.begin():
        s.add(Sweep(id="s" * 32, request={"notify": {"url": "http://x/", "events": ["succeeded"]}}, size=1,
                    notified_status="queued", cancel_requested=True))
        for i in range(300):  # ended jobs that notify nobody, ended ones already told, and open ones
            told = None if i % 3 else ("succeeded" if i % 2 else "queued")
            job_repo.add_job(s, Job(spec={}, epochs=1, status="succeeded", notified_status=told,
                                    created_at=now - timedelta(seconds=i)))
        s.add_all(WebhookDelivery(owner_key="", event="succeeded", url="http://x/", body="{}", attempts=1,
                                  status="pending" if i % 10 == 0 else "delivered",
                                  next_attempt_at=now if i % 10 == 0 else None) for i in range(100))
    yield engine
    engine.dispose()


def plans(engine, call) -> tuple[list[list[str]], object]:
    """The query plan of each statement `call(session)` runs, and what it returned."""
    with statements_run(engine) as statements, Session(engine) as s:
        found = call(s)
    with engine.connect() as conn:
        return [[row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params)]
                for sql, params in statements], found


def test_a_poll_reads_only_the_partial_indexes_of_open_work(engine):
    [plan], moved = plans(engine, lambda s: repo.jobs_moved(s, 200))
    assert len(moved) == 50 and all(job.notified_status == "queued" for job in moved)  # seen queued, now ended
    assert all("ix_jobs_notify_open" in step for step in plan if "jobs" in step), plan

    [plan], cancelled = plans(engine, repo.cancelled_open_sweeps)
    assert cancelled == ["s" * 32] and all("ix_sweeps_notify_open" in step for step in plan), plan

    [plan], due = plans(engine, lambda s: repo.due_deliveries(s, utcnow(), ["someone"], 50))
    assert len(due) == 10 and all("ix_webhook_deliveries_due" in step for step in plan), plan
    assert not any("TEMP B-TREE" in step for step in plan)  # in due order as the index holds them
