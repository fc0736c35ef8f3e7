"""Params terms read job_params: on a mix of specs (nested paths, missing keys, strings beside numbers, lists longer
than the indexed part, three owners) each term finds what reading each spec in Python finds, whether its matches
drive the page or each job of the owner is tested; a rare term is read from the index, not from the specs."""

import operator
import random
from datetime import timedelta
from functools import partial

import pytest
from sqlalchemy.orm import Session

from service.db import make_engine
from service.models import Job, JobParam, utcnow
from service.repositories import job_filter
from service.repositories import jobs as job_repo
from service.repositories.job_params import spec_params, write_params
from service.repositories.job_search import JobFilter, list_jobs, sort_value
from service.schemas.job_filter import FilterError, parse_filter
from tests.conftest import query_plans

OWNERS = ["alice", "bob", None]  # None: the owner of every job when authentication is off
COMPARE = {"=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt,
           ">=": operator.ge}


def mixed_spec(rng: random.Random, i: int) -> dict:
    """A spec of optional parts: lr a number, a string of digits or absent; hidden of 1-3 widths; a deep path;
    a flag; inline rows longer than the indexed list indexes."""
    spec = {"optimizer": {"kind": rng.choice(["sgd", "adam", "adamw"])},
            "model": {"hidden": [rng.choice([8, 16, 32]) for _ in range(rng.randint(1, 3))], "dropout": None},
            "flag": rng.random() < 0.5, "epochs": rng.randint(1, 5), "tags": {"team.key": "x", "team": "vision"}}
    lr = rng.choice([0.001, 0.01, 0.1, "0.01", None])
    if lr is not None:
        spec["optimizer"]["lr"] = lr
    if i % 4 == 0:
        spec["a"] = {"b": {"c": {"d": {"e": {"f": {"g": {"h": rng.choice([1, 2])}}}}}}}
    if i % 5 == 0:
        spec["data"] = {"source": "inline", "x": [[float(r), float(r + 1)] for r in range(20)]}
    return spec


@pytest.fixture
def engine(tmp_path, databases):
    engine = make_engine(databases.create(tmp_path / "params.db"))
    rng, start = random.Random(7), utcnow() - timedelta(days=1)
    jobs = [Job(owner_id=OWNERS[i % 3], spec=mixed_spec(rng, i), epochs=1, created_at=start + timedelta(seconds=i),
                tags={}, status="succeeded") for i in range(150)]
    with Session(engine) as s, s.begin():
        for job in jobs:
            job_repo.add_job(s, job)
        write_params(s, jobs)
    yield engine
    engine.dispose()


def held(spec, path: tuple[str, ...], values: tuple, op: str) -> bool:
    """The term on one spec as the filter's grammar defines it: a value of the literal's kind at the path."""
    value = spec
    for segment in path:
        if isinstance(value, dict) and not segment.isdigit() and segment in value:
            value = value[segment]
        elif isinstance(value, list) and segment.isdigit() and int(segment) < len(value):
            value = value[int(segment)]
        else:
            return False
    number = isinstance(values[0], float)
    if isinstance(value, bool) or not isinstance(value, (int, float) if number else str):
        return False
    return value in values if op == "in" else COMPARE[op](value, values[0])


def every_page(engine, owner, where: JobFilter, limit: int = 7) -> list[str]:
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
        return list_jobs(s, "alice", where, None, 50)


TERMS = [
    "params.optimizer.lr = 0.01", "params.optimizer.lr = '0.01'", "params.optimizer.lr != 0.01",
    "params.optimizer.lr > 0.005", "params.optimizer.lr in (0.001, 0.1)", "params.optimizer.kind in ('adam', 'sgd')",
    "params.optimizer.kind != 'adam'", "params.model.hidden.0 >= 16", "params.model.hidden.2 = 32",
    "params.model.hidden.1 < 30 and params.optimizer.kind = 'adamw'", "params.model.dropout = 0",
    "params.flag = 1", "params.flag = 'true'", "params.epochs <= 2 and params.optimizer.lr < 0.05",
    "params.a.b.c.d.e.f.g.h = 2", "params.model = 8", "params.model.hidden = 8", "params.missing = 'x'",
    "params.tags.team = 'vision'", "params.data.x.15.`1` = 16", "params.data.source = 'inline'",
    "params.optimizer.lr = 0.0", "params.model.hidden.007 = 8",
]


@pytest.mark.parametrize("most", [0, 10_000])  # never, or always, the term's matches drive the page
def test_each_params_term_finds_what_reading_each_spec_finds(engine, monkeypatch, most):
    monkeypatch.setattr(job_filter, "PARAM_MATCHES_BY_INDEX", most)
    with Session(engine) as s:
        everyone = list(s.query(Job))
    for text in TERMS:
        terms = parse_filter(text)
        for owner in OWNERS:
            for sort in ("-created_at", "loss"):
                found = every_page(engine, owner, JobFilter(terms=terms, sort=sort))
                expected = {job.id for job in everyone if job.owner_id == owner
                            and all(held(job.spec, t.path, t.values, t.op) for t in terms)}
                assert len(found) == len(set(found)), text
                assert set(found) == expected, (text, owner, sort)


def test_values_past_the_indexed_list_indexes_are_refused_by_name():
    with pytest.raises(FilterError, match="list indexes 0-15"):
        parse_filter("params.data.x.16 = 1")


def test_a_spec_s_rows_are_its_numbers_and_strings_a_term_can_name():
    spec = {"optimizer": {"kind": "adam", "lr": 0.01, "schedule": None}, "flag": True, "tags": {"a.b": "x", "t": "y"},
            "hidden": [8, 16], "data": {"x": list(range(40))}, "n": 3}
    rows = {path: (number, text) for path, number, text in spec_params(spec)}
    assert rows == {"optimizer.kind": (None, "adam"), "optimizer.lr": (0.01, None), "tags.t": (None, "y"),
                    "hidden.0": (8.0, None), "hidden.1": (16.0, None), "n": (3.0, None),
                    **{f"data.x.{i}": (float(i), None) for i in range(16)}}


def test_a_rare_term_is_read_from_the_index_and_a_common_one_tests_the_owners_jobs_in_order(engine, monkeypatch):
    monkeypatch.setattr(job_filter, "PARAM_MATCHES_BY_INDEX", 10)
    with Session(engine) as s:
        alices = [job for job in s.query(Job).filter(Job.owner_id == "alice")]
        assert s.query(JobParam).filter(JobParam.owner_id == "alice").count() > 0
    deep = [job.id for job in alices if held(job.spec, tuple("abcdefgh"), (2.0,), "=")]
    kinds = [job.id for job in alices if job.spec["optimizer"]["kind"] == "adam"]
    assert 0 < len(deep) <= 10 < len(kinds)
    for text, matching, index in (("params.a.b.c.d.e.f.g.h = 2", deep, "ix_job_params_owner_id_path_value"),
                                  ("params.optimizer.kind = 'adam'", kinds, "ix_jobs_owner_id_created_at_id")):
        where = JobFilter(terms=parse_filter(text))
        plan, jobs = query_plans(engine, partial(first_page, engine, where), reads="jobs.spec")
        assert {job.id for job in jobs} == set(matching), text
        if engine.dialect.name == "sqlite":  # PostgreSQL's plans follow its statistics
            assert any(index in step for step in plan), (text, plan)
            assert not any("SCAN jobs" in step for step in plan), (text, plan)
