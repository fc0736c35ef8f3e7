"""Curve chunks through the metrics repository, on a real database file: reads across chunks, downsampling, trims."""

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from service.curves import Columns
from service.db import make_engine
from service.migrations import upgrade
from service.repositories import metrics as metric_repo

JOB = "c" * 32


@pytest.fixture
def session(tmp_path):
    url = f"sqlite:///{tmp_path / 'curves.db'}"
    upgrade(url)
    engine = make_engine(url)
    with Session(engine) as s:
        s.execute(
            text("INSERT INTO jobs (id, status, spec, epochs, epoch, step, attempt, max_attempts, cancel_requested,"
                 " created_at) VALUES (:id, 'running', '{}', 9, 0, 0, 1, 3, false, '2026-11-27 00:00:00')"),
            {"id": JOB},
        )
        # two reports: the second holds out a validation loss, the first has none
        metric_repo.insert_points(s, [(JOB, Columns(step=[10, 20, 30, 40], epoch=[1, 2, 3, 4], loss=[4.0, 3.0, 2.0, 1.5]))])
        metric_repo.insert_points(
            s, [(JOB, Columns(step=[50, 60, 70], epoch=[5, 6, 7], loss=[1.2, 1.1, 1.0], val_loss=[1.3, None, 1.1]))]
        )
        s.commit()
        yield s
    engine.dispose()


def figures(points) -> list[tuple]:
    return [(p.step, p.loss, p.val_loss) for p in points]


def test_points_are_read_across_chunks_from_any_step(session):
    assert figures(metric_repo.list_points(session, JOB, 30, 100)) == [
        (40, 1.5, None), (50, 1.2, 1.3), (60, 1.1, None), (70, 1.0, 1.1)
    ]
    assert metric_repo.count_points(session, JOB, 30) == 4
    assert metric_repo.count_points(session, JOB, 0) == 7
    assert [p.step for p in metric_repo.list_points_after(session, JOB, 20, 3)] == [30, 40, 50]
    assert metric_repo.list_points(session, JOB, 70, 100) == []


def test_downsampling_keeps_the_first_and_last_points_evenly_spaced(session):
    assert [p.step for p in metric_repo.list_points(session, JOB, 0, 3)] == [10, 40, 70]
    assert [p.step for p in metric_repo.list_points(session, JOB, 0, 1)] == [70]


def test_truncating_inside_a_chunk_keeps_what_came_before(session):
    metric_repo.truncate_points(session, JOB, 50)
    assert [p.step for p in metric_repo.list_points(session, JOB, 0, 100)] == [10, 20, 30, 40, 50]
    metric_repo.insert_points(session, [(JOB, Columns(step=[60], epoch=[6], loss=[0.9]))])  # a resumed attempt
    assert figures(metric_repo.list_points(session, JOB, 40, 100)) == [(50, 1.2, 1.3), (60, 0.9, None)]
