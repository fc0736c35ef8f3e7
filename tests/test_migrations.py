"""The schema comes only from the migrations: they match the models and run down and up again, on each back end."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from service.db import make_engine
from service.migrations import downgrade, upgrade
from service.models import Base


def test_migrations_match_the_models(tmp_path, databases):
    url = databases.create(tmp_path / "schema.db")
    upgrade(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []


def test_migrations_go_down_to_nothing_and_up_again(tmp_path, databases):
    url = databases.create(tmp_path / "updown.db")
    upgrade(url)
    downgrade(url, "base")
    engine = make_engine(url)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()
    upgrade(url)
    engine = make_engine(url)
    assert {"jobs", "metric_points", "job_weights", "checkpoints", "datasets"} <= set(inspect(engine).get_table_names())
    engine.dispose()
