"""An owner's pages, plain or filtered by a tag, are read from an index in page order: SQLite never sorts the
owner's rows (its plans do not depend on statistics, so the plan is the test)."""

from datetime import timedelta

import pytest
from sqlalchemy import event, text
from sqlalchemy.orm import Session

from service.db import make_engine
from service.migrations import upgrade
from service.models import Job, utcnow
from service.repositories import jobs as job_repo
from service.repositories.job_search import JobFilter, list_jobs, write_tags


@pytest.fixture
def engine(tmp_path, databases, backend):
    if backend != "sqlite":
        pytest.skip("PostgreSQL's plans follow its statistics; bench/million_jobs.py measures them")
    url = databases.create(tmp_path / "search.db")
    upgrade(url)
    engine = make_engine(url)
    start = utcnow() - timedelta(days=1)
    with Session(engine) as s, s.begin():
        jobs = [Job(owner_id=("alice" if i % 2 else "bob"), spec={}, epochs=1, created_at=start + timedelta(seconds=i),
                    tags={"team": "vision" if i % 3 else "speech"}) for i in range(300)]
        for job in jobs:
            job_repo.add_job(s, job)
        write_tags(s, jobs)
    yield engine
    engine.dispose()


def planned(engine, where: JobFilter, after=None) -> tuple[list[str], list[Job]]:
    """The query plan of the page's statement, and the page."""
    statements = []
    listen = lambda conn, cursor, statement, params, context, many: statements.append((statement, params))
    event.listen(engine, "before_cursor_execute", listen)
    try:
        with Session(engine) as s:
            page = list_jobs(s, "alice", where, after, 20)
    finally:
        event.remove(engine, "before_cursor_execute", listen)
    [(statement, params)] = [entry for entry in statements if "FROM jobs" in entry[0]]
    with engine.connect() as conn:
        plan = [row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params)]
    return plan, page


@pytest.mark.parametrize("sort", ["-created_at", "created_at"])
@pytest.mark.parametrize("tags", [[], [("team", "vision")]])
def test_a_page_reads_an_index_in_order_and_sorts_nothing(engine, sort, tags):
    plan, page = planned(engine, JobFilter(tags=tags, sort=sort))
    assert not any("TEMP B-TREE" in step for step in plan), plan
    assert any("ix_jobs_owner_id_created_at_id" in step or "ix_job_tags_owner_id_key_value" in step for step in plan)
    assert len(page) == 20 and all(job.owner_id == "alice" for job in page)
    assert all(job.tags["team"] == "vision" for job in page) if tags else True
    times = [job.created_at for job in page]
    assert times == sorted(times, reverse=sort.startswith("-"))
    plan, after = planned(engine, JobFilter(tags=tags, sort=sort), (page[-1].created_at, page[-1].id))
    assert not any("TEMP B-TREE" in step for step in plan), plan
    assert {job.id for job in after}.isdisjoint(job.id for job in page)
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM job_tags WHERE owner_id IS NULL")) == 0
