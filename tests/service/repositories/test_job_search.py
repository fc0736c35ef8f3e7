"""An owner's pages, plain, filtered by a tag or a name, or sorted by a metric, are read from an index in page order
(SQLite never sorts the owner's rows: its plans do not depend on statistics, so the plan is the test; PostgreSQL's
do, so there the test is that the index can give the order), and hold what reading every job would."""

import random
from datetime import timedelta

import pytest
from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from service.db import make_engine
from service.models import Job, Sweep, utcnow
from service.repositories import job_search
from service.repositories import jobs as job_repo
from service.repositories.job_search import JobFilter, list_jobs, sort_value, update_job, write_tags
from tests.conftest import query_plans

NAMES = ["Needle one", "hay", "needle TWO", "hay 100%_x", 'say "needle"', None, "straw", "Straw needles"]


@pytest.fixture
def engine(tmp_path, databases):
    """300 jobs of alice and bob: named (some not), tagged, a third still queued (no metric), some with early
    stopping's best metrics, half with a validation loss, losses in tenths (ties, broken by id)."""
    engine = make_engine(databases.create(tmp_path / "search.db"))
    rng, start = random.Random(7), utcnow() - timedelta(days=1)
    jobs = []
    for i in range(300):
        ran = i % 3 != 0
        latest = {"loss": round(rng.random(), 1), **({"val_loss": round(rng.random(), 1)} if i % 2 else {})}
        jobs.append(Job(
            owner_id="alice" if i % 2 else "bob", spec={}, epochs=1, created_at=start + timedelta(seconds=i),
            name=NAMES[i % len(NAMES)], tags={"team": "vision" if i % 3 else "speech"},
            status="succeeded" if ran else "queued", latest_metrics=latest if ran else None,
            best_metrics={"loss": round(rng.random(), 1)} if ran and i % 4 == 1 else None,
        ))
    with Session(engine) as s, s.begin():
        for job in jobs:
            job_repo.add_job(s, job)
        write_tags(s, jobs)
    yield engine
    engine.dispose()


def sqlite_only(engine) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL's plans follow its statistics: test_postgresql_can_read_a_metric_in_order")


def planned(engine, where: JobFilter, after=None) -> tuple[list[str], list[Job]]:
    """The query plans of the statements that read alice's page, and the page."""

    def page():
        with Session(engine) as s:
            return list_jobs(s, "alice", where, after, 20)

    return query_plans(engine, page, reads="jobs.spec")


def every_page(engine, where: JobFilter, owner="alice", limit=7) -> list[str]:
    """Ids of all pages, each after the last job of the one before (as the API's cursor carries it)."""
    ids, after = [], None
    with Session(engine) as s:
        while True:
            page = list_jobs(s, owner, where, after, limit)
            ids += [job.id for job in page]
            if len(page) < limit:
                return ids
            after = (sort_value(page[-1], where.sort_name), page[-1].id)


def all_jobs(engine, owner="alice") -> list[Job]:
    with Session(engine) as s:
        return list(s.scalars(select(Job).where(Job.owner_id == owner)))


def assert_names_found(engine) -> None:
    """Each part's pages hold the jobs whose names hold it (any case), newest first, as reading every name finds."""
    newest_first = sorted(all_jobs(engine), key=lambda job: (job.created_at, job.id), reverse=True)
    for part in ("needle", "NEEDLE", "ne", "hay 100%_", "100%", '"needle"', "e t", "absent", "straw"):
        expected = [job.id for job in newest_first if part.lower() in (job.name or "").lower()]
        assert every_page(engine, JobFilter(name=part)) == expected, part
    vision = [job.id for job in newest_first if "needle" in (job.name or "").lower() and job.tags["team"] == "vision"]
    assert every_page(engine, JobFilter(name="needle", tags=[("team", "vision")])) == vision


@pytest.mark.parametrize("sort", ["-created_at", "created_at"])
@pytest.mark.parametrize("tags", [[], [("team", "vision")]])
def test_a_page_reads_an_index_in_order_and_sorts_nothing(engine, sort, tags):
    sqlite_only(engine)
    plan, page = planned(engine, JobFilter(tags=tags, sort=sort))
    assert not any("TEMP B-TREE" in step for step in plan), plan
    assert any("ix_jobs_owner_id_created_at_id" in step or "ix_job_tags_owner_id_key_value" in step for step in plan)
    assert len(page) == 20 and all(job.owner_id == "alice" for job in page)
    assert all(job.tags["team"] == "vision" for job in page) if tags else True
    times = [job.created_at for job in page]
    assert times == sorted(times, reverse=sort.startswith("-"))
    plan, after = planned(engine, JobFilter(tags=tags, sort=sort), (page[-1].created_at, page[-1].id))
    assert not any("TEMP B-TREE" in step for step in plan), plan
    assert any("created_at<?" in step or "created_at>?" in step for step in plan), plan  # seeks to the cursor
    assert {job.id for job in after}.isdisjoint(job.id for job in page)
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM job_tags WHERE owner_id IS NULL")) == 0


@pytest.mark.parametrize("sort", ["loss", "-loss", "val_loss", "-val_loss", "-val_accuracy"])
def test_a_metric_sort_pages_through_the_jobs_in_the_kept_metric_order(engine, sort):
    name, descending = sort.lstrip("-"), sort.startswith("-")
    jobs = all_jobs(engine)
    present = sorted((job for job in jobs if sort_value(job, name) is not None),
                     key=lambda job: (sort_value(job, name), job.id), reverse=descending)
    missing = sorted((job.id for job in jobs if sort_value(job, name) is None), reverse=descending)
    assert every_page(engine, JobFilter(sort=sort)) == [job.id for job in present] + missing
    vision = [job.id for job in present if job.tags["team"] == "vision"]
    assert every_page(engine, JobFilter(sort=sort, tags=[("team", "vision")])) == vision + [
        job_id for job_id in missing if next(j for j in jobs if j.id == job_id).tags["team"] == "vision"]


@pytest.mark.parametrize("sort", ["loss", "-loss", "-val_loss"])
def test_a_metric_page_reads_its_index_in_order_and_sorts_nothing(engine, sort):
    sqlite_only(engine)
    name = sort.lstrip("-")
    plan, page = planned(engine, JobFilter(sort=sort))
    assert not any("TEMP B-TREE" in step for step in plan), plan
    assert all(f"ix_jobs_owner_id_{name} (owner_id=? AND <expr>" in step for step in plan), plan  # a range each
    unvalued = [job for job in all_jobs(engine) if sort_value(job, name) is None]
    for after in ((sort_value(page[-1], name), page[-1].id), (None, min(job.id for job in unvalued))):
        plan, _ = planned(engine, JobFilter(sort=sort), after)
        assert not any("TEMP B-TREE" in step for step in plan), plan
        assert all(f"ix_jobs_owner_id_{name} (owner_id=? AND <expr>" in step for step in plan), plan


def test_postgresql_can_read_a_metric_in_order(engine):
    """The index's expression is the query's: with sorts priced out, the plan still needs none."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite's plans: test_a_metric_page_reads_its_index_in_order_and_sorts_nothing")

    def pages():  # its metric's range, then the NULL one
        with Session(engine) as s:
            return list_jobs(s, "alice", JobFilter(sort="-val_loss"), None, 200)

    plan, _ = query_plans(engine, pages, "jobs.spec", settings=("SET enable_sort = off", "SET enable_seqscan = off"))
    assert any("ix_jobs_owner_id_val_loss" in step for step in plan) and not any("Sort" in step for step in plan), plan


@pytest.mark.parametrize("few", [1000, 2])  # SQLite: the trigram index's matches, or (past `few`) the walk
def test_a_name_filter_finds_what_reading_every_name_finds(engine, monkeypatch, few):
    monkeypatch.setattr(job_search, "NAME_MATCHES_BY_INDEX", few)
    assert_names_found(engine)


def test_a_rare_name_is_read_from_the_trigram_index(engine):
    sqlite_only(engine)
    plan, page = planned(engine, JobFilter(name="needleS"))
    assert [job.name for job in page] == ["Straw needles"] * len(page) and page
    assert plan[0].startswith("MATERIALIZE") and any("VIRTUAL TABLE" in step for step in plan), plan
    assert not any(step.startswith("SCAN jobs") or "owner_id=?" in step for step in plan), plan  # no walk


def test_a_common_name_is_checked_on_the_owners_page_index(engine, monkeypatch):
    """More names hold the part than the trigram table is read for: the owner's jobs newest first, from the index
    that carries each name (the job's row read for a match only)."""
    sqlite_only(engine)
    monkeypatch.setattr(job_search, "NAME_MATCHES_BY_INDEX", 2)
    plan, page = planned(engine, JobFilter(name="needle"))
    assert page and all("needle" in job.name.lower() for job in page)
    assert any("ix_jobs_owner_id_created_at_id_name (owner_id=?)" in step for step in plan), plan
    assert not any("TEMP B-TREE" in step or "VIRTUAL TABLE" in step for step in plan), plan
    with engine.connect() as conn:  # the name is on the index: matching it reads no job's row
        plan = [row[-1] for row in conn.exec_driver_sql(
            "EXPLAIN QUERY PLAN SELECT id FROM jobs WHERE owner_id = 'alice' AND lower(name) LIKE '%needle%'"
            " ORDER BY created_at DESC, id DESC")]
    assert plan == ["SEARCH jobs USING COVERING INDEX ix_jobs_owner_id_created_at_id_name (owner_id=?)"], plan


def test_the_name_index_follows_renames_and_deletes(engine):
    sqlite_only(engine)
    with Session(engine) as s, s.begin():
        jobs = list(s.scalars(select(Job).where(Job.owner_id == "alice").order_by(Job.created_at).limit(4)))
        renamed = jobs[0].id
        update_job(s, jobs[0], {"name": "Renamed needle"})
        update_job(s, jobs[1], {"name": None})
        update_job(s, jobs[2], {"name": "plain"})
        s.add(Sweep(id="s" * 32, owner_id="alice", request={}, size=1))
        s.flush()
        s.execute(text("UPDATE jobs SET sweep_id = :s WHERE id = :id"), {"s": "s" * 32, "id": jobs[3].id})
        s.execute(delete(Sweep).where(Sweep.id == "s" * 32))  # its member goes by the cascade
        s.execute(delete(Job).where(Job.owner_id == "bob", Job.name == "straw"))
    with engine.connect() as conn:
        named = conn.scalar(text("SELECT count(*) FROM jobs WHERE name IS NOT NULL"))
        assert conn.scalar(text("SELECT count(*) FROM job_names")) == named
        assert conn.scalar(text("SELECT count(*) FROM job_names n JOIN jobs j ON j.id = n.job_id")) == named
        conn.exec_driver_sql("INSERT INTO job_name_trigrams (job_name_trigrams) VALUES ('integrity-check')")
    assert_names_found(engine)
    with Session(engine) as s:
        assert [job.id for job in list_jobs(s, "alice", JobFilter(name="renamed"), None, 5)] == [renamed]
        assert list_jobs(s, "bob", JobFilter(name="straw"), None, 50) == []  # bob had "straw" only
        assert list_jobs(s, "alice", JobFilter(sweep_id="s" * 32), None, 5) == []
