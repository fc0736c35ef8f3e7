"""Log lines as `key=value` fields, with the id of the job being run on every line written for it."""

import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager

JOB_ID = contextvars.ContextVar("job_id", default="-")
FORMAT = "%(asctime)s level=%(levelname)s logger=%(name)s job_id=%(job_id)s %(message)s"


class JobIdFilter(logging.Filter):
    """Stamps each record with the current job's id, whichever logger (ours, torch's) wrote it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.job_id = JOB_ID.get()
        return True


def configure_logging(level: str | int = logging.INFO) -> None:
    """The root handler of this process, in FORMAT; safe to call more than once."""
    logging.basicConfig(level=level, format=FORMAT)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, JobIdFilter) for f in handler.filters):
            handler.addFilter(JobIdFilter())


@contextmanager
def job_logging(job_id: str) -> Iterator[None]:
    """Lines logged inside carry `job_id=<job_id>`."""
    token = JOB_ID.set(job_id)
    try:
        yield
    finally:
        JOB_ID.reset(token)
