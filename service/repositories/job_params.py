"""job_params: the numbers and strings of each job's spec, a row each, written with the job, so a `?filter=` params
term is answered from an index on both back ends alike, not by parsing every spec of the owner.

A row holds a value a params term can name: a number or a string (no boolean, no null) at a path of at most
MAX_PATH_SEGMENTS keys (each a name, as the grammar's) and list indexes below LIST_INDEXES (schemas/job_filter.py).
A number is kept as a double, as a term's literal is. Strings longer than a literal may be are left out (the spec's
schema has none).
"""

from sqlalchemy.orm import Session

from service.models import Job, JobParam
from service.schemas.job_filter import LIST_INDEXES, MAX_PATH_SEGMENTS, MAX_STRING_CHARS, NAME

MAX_PATH_CHARS = 256  # the column's; the spec's keys are short
_INSERT = JobParam.__table__.insert()


def spec_params(spec: dict) -> list[tuple[str, float | None, str | None]]:
    """(path, number, string) of each value of `spec` a params term can name, one of number and string None."""
    found = []

    def visit(value, path: tuple[str, ...]) -> None:
        if isinstance(value, dict):
            items = [(key, item) for key, item in value.items() if NAME.fullmatch(key)]
        elif isinstance(value, list):
            items = [(str(index), item) for index, item in enumerate(value[:LIST_INDEXES])]
        else:
            leaf(value, ".".join(path))
            return
        if len(path) < MAX_PATH_SEGMENTS:
            for key, item in items:
                visit(item, (*path, key))

    def leaf(value, path: str) -> None:
        if len(path) > MAX_PATH_CHARS or isinstance(value, bool):  # a JSON true is no number
            return
        if isinstance(value, int | float):
            found.append((path, float(value), None))
        elif isinstance(value, str) and len(value) <= MAX_STRING_CHARS:
            found.append((path, None, value))

    visit(spec, ())
    return found


def write_params(session: Session, jobs: list[Job]) -> None:
    """Index these new jobs' specs: a job_params row per value (spec_params). A Core executemany, as jobs.add_job
    inserts: the ORM's bulk INSERT of a job's 25 rows cost twice as much (0.9 against 0.4 ms), under SQLite's write lock."""
    rows = [
        {"job_id": job.id, "path": path, "num_value": number, "text_value": text, "owner_id": job.owner_id}
        for job in jobs for path, number, text in spec_params(job.spec)
    ]
    if rows:
        session.connection().execute(_INSERT, rows)
