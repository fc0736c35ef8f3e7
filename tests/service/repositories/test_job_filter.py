"""`?filter=` terms as SQL: the jobs each filter finds are those a reading of every job in Python finds, on both back
ends; names and values are bound, never written into the statement; a filtered page reads the owner's jobs in order."""

import random
from datetime import timedelta
from functools import partial

import pytest
from sqlalchemy.orm import Session

from service.db import make_engine
from service.models import Job, utcnow
from service.repositories import job_filter, job_params
from service.repositories import jobs as job_repo
from service.repositories.job_search import JobFilter, list_jobs, sort_value, write_tags
from service.schemas.job_filter import parse_filter
from tests.conftest import query_plans
from tests.harness.calls import statements_run

KINDS = ["sgd", "adam", "adamw"]


@pytest.fixture
def engine(tmp_path, databases):
    """120 jobs of alice and bob, specs of several optimizers and lrs, a list of layers, a flag, a numeric string."""
    engine = make_engine(databases.create(tmp_path / "filter.db"))
    rng, start = random.Random(32), utcnow() - timedelta(days=1)
    jobs = []
    for i in range(120):
        spec = {"optimizer": {"kind": KINDS[i % 3], "lr": rng.choice([0.001, 0.01, 0.1])},
                "layers": [{"units": rng.choice([8, 16])}], "flag": bool(i % 2), "label": "7", "epochs": i % 5 + 1}
        ran = i % 4 != 0
        latest = {"loss": round(rng.random(), 2), **({"f1": round(rng.random(), 2)} if i % 3 else {})}
        jobs.append(Job(
            owner_id="alice" if i % 2 else "bob", spec=spec, epochs=spec["epochs"],
            created_at=start + timedelta(seconds=i), tags={"team": rng.choice(["vision", "nlp"])} if i % 5 else {},
            status="succeeded" if ran else "queued", latest_metrics=latest if ran else None,
            best_metrics={"loss": round(rng.random(), 2)} if ran and i % 7 == 1 else None,
        ))
    with Session(engine) as s, s.begin():
        for job in jobs:
            job_repo.add_job(s, job)
        write_tags(s, jobs)
        job_params.write_params(s, jobs)
    yield engine
    engine.dispose()


def every_page(engine, where: JobFilter, owner: str = "alice", limit: int = 7) -> list[str]:
    ids, after = [], None
    with Session(engine) as s:
        while True:
            page = list_jobs(s, owner, where, after, limit)
            ids += [job.id for job in page]
            if len(page) < limit:
                return ids
            after = (sort_value(page[-1], where.sort_name), page[-1].id)


def first_page(engine, where: JobFilter) -> list[Job]:
    with Session(engine) as s:
        return list_jobs(s, "alice", where, None, 10)


def kept(job: Job, name: str):
    best = (job.best_metrics or {}).get(name)
    return best if best is not None else (job.latest_metrics or {}).get(name)


# (filter, the same in Python on a job)
CASES = [
    ("params.optimizer.kind = 'adam'", lambda j: j.spec["optimizer"]["kind"] == "adam"),
    ("params.optimizer.lr >= 0.01 and params.optimizer.kind != 'sgd'",
     lambda j: j.spec["optimizer"]["lr"] >= 0.01 and j.spec["optimizer"]["kind"] != "sgd"),
    ("params.layers.0.units in (16, 32)", lambda j: j.spec["layers"][0]["units"] in (16, 32)),
    ("params.layers.1.units > 0", lambda j: False),  # no second layer
    ("params.epochs < 3", lambda j: j.spec["epochs"] < 3),
    ("params.flag = 1", lambda j: False),  # a JSON true is no number
    ("params.label = 7", lambda j: False),  # nor is a string of digits
    ("params.label = '7'", lambda j: True),
    ("metrics.loss < 0.5", lambda j: kept(j, "loss") is not None and kept(j, "loss") < 0.5),
    ("metrics.f1 >= 0.3", lambda j: kept(j, "f1") is not None and kept(j, "f1") >= 0.3),
    ("tags.team = 'vision' and status = 'succeeded'",
     lambda j: j.tags.get("team") == "vision" and j.status == "succeeded"),
    ("tags.team != 'vision'", lambda j: "team" in j.tags and j.tags["team"] != "vision"),
    ("tags.team in ('nlp')", lambda j: j.tags.get("team") == "nlp"),
    ("status in ('queued', 'failed')", lambda j: j.status in ("queued", "failed")),
]


@pytest.mark.parametrize("sort", ["-created_at", "loss", "-val_accuracy"])
def test_each_filter_finds_what_reading_every_job_finds(engine, sort):
    with Session(engine) as s:
        alices = [job for job in s.query(Job).filter(Job.owner_id == "alice")]
    for text, matches in CASES:
        found = every_page(engine, JobFilter(terms=parse_filter(text), sort=sort))
        assert len(found) == len(set(found)), text
        assert set(found) == {job.id for job in alices if matches(job)}, text


def test_names_and_values_are_bound_never_written_into_the_statement(engine):
    text = ("params.zqpath.zqdeeper = 'zq''value' and tags.`zq.key` != 'zqtag' and metrics.zqmetric < 1"
            " and status in ('failed') and params.zqnumber > 12345.5")
    with statements_run(engine) as statements:
        assert every_page(engine, JobFilter(terms=parse_filter(text))) == []
    sql = " ".join(statement for statement, _ in statements)
    bound = " ".join(str(value) for _, params in statements
                     for value in (params.values() if isinstance(params, dict) else params))
    for marker in ("zqpath", "zqdeeper", "zq'value", "zq.key", "zqtag", "zqmetric", "zqnumber", "12345.5", "failed"):
        assert marker not in sql, marker
        assert marker in bound, marker


@pytest.mark.parametrize("text", ["params.optimizer.lr > 0.05", "tags.team != 'vision'", "status = 'succeeded'"])
def test_a_filtered_page_reads_the_owners_jobs_in_order_and_sorts_nothing(engine, text, monkeypatch):
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL's plans follow its statistics")
    monkeypatch.setattr(job_filter, "PARAM_MATCHES_BY_INDEX", 5)  # each term here matches more of alice's jobs
    where = JobFilter(terms=parse_filter(text))
    plan, jobs = query_plans(engine, partial(first_page, engine, where), reads="jobs.spec")
    assert any("ix_jobs_owner_id_created_at_id" in step for step in plan), plan
    assert not any("TEMP B-TREE" in step for step in plan), plan
    assert jobs and all(job.owner_id == "alice" for job in jobs)


def test_sqlite_reads_the_metric_index_for_a_rare_range_and_the_owners_jobs_for_a_common_one(engine, monkeypatch):
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL's plans follow its statistics")
    monkeypatch.setattr(job_filter, "METRIC_MATCHES_BY_INDEX", 5)
    with Session(engine) as s:
        alices = s.query(Job).filter(Job.owner_id == "alice")
        losses = sorted(kept(job, "loss") for job in alices if kept(job, "loss") is not None)
    for bound, index in ((losses[2] + 1e-9, "ix_jobs_owner_id_loss"), (losses[-3], "ix_jobs_owner_id_created_at_id")):
        where = JobFilter(terms=parse_filter(f"metrics.loss < {bound!r}"))
        plan, jobs = query_plans(engine, partial(first_page, engine, where), reads="jobs.spec")
        assert any(index in step for step in plan), (bound, plan)
        assert len(jobs) == min(10, sum(loss < bound for loss in losses))
        assert all(kept(job, "loss") < bound for job in jobs)
