"""Finding an owner's jobs: filters on name, tags, sweep and dates; sorted by time or a metric; keyset pages."""

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, delete, exists, func, insert, or_, select, update
from sqlalchemy.orm import Session, aliased

from service.models import Job, JobTag
from service.repositories.jobs import owned_by

METRICS = ("loss", "val_loss", "val_accuracy")
SORTS = ("created_at", *METRICS)


@dataclass(frozen=True)
class JobFilter:
    status: str | None = None
    name: str | None = None  # a part of the name, any case
    tags: list[tuple[str, str | None]] = field(default_factory=list)  # (key, value); None: any value
    sweep_id: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    sort: str = "-created_at"  # a name of SORTS, `-` first for descending

    @property
    def sort_name(self) -> str:
        return self.sort.lstrip("-")

    @property
    def descending(self) -> bool:
        return self.sort.startswith("-")


def sort_expression(name: str):
    """The column a sort orders by; a metric is that of the weights the job kept (its best epoch's, with
    early stopping, else its latest), as the sweep leaderboard ranks them."""
    if name == "created_at":
        return Job.created_at
    return func.coalesce(Job.best_metrics[name].as_float(), Job.latest_metrics[name].as_float())


def sort_value(job: Job, name: str):
    """What `sort_expression` reads, from a loaded job: the sort key a cursor carries."""
    if name == "created_at":
        return job.created_at
    best = (job.best_metrics or {}).get(name)
    return best if best is not None else (job.latest_metrics or {}).get(name)


def _conditions(owner_id: str | None, where: JobFilter, tags: list[tuple[str, str | None]]) -> list:
    conditions = [owned_by(Job.owner_id, owner_id)]
    if where.status is not None:
        conditions.append(Job.status == where.status)
    if where.name is not None:
        conditions.append(Job.name.icontains(where.name, autoescape=True))
    for key, value in tags:
        tagged = select(JobTag.job_id).where(JobTag.job_id == Job.id, JobTag.key == key)
        conditions.append(exists(tagged if value is None else tagged.where(JobTag.value == value)))
    if where.sweep_id is not None:
        conditions.append(Job.sweep_id == where.sweep_id)
    if where.created_after is not None:
        conditions.append(Job.created_at > where.created_after)
    if where.created_before is not None:
        conditions.append(Job.created_at < where.created_before)
    return conditions


def _after(expression, id_, descending: bool, value, job_id: str, nullable: bool):
    """Rows past (value, id) in the page order; rows without a value (no metric yet) come last."""
    if not nullable:
        return or_(expression < value, and_(expression == value, id_ < job_id)) if descending else or_(
            expression > value, and_(expression == value, id_ > job_id)
        )
    if value is None:
        return and_(expression.is_(None), id_ < job_id if descending else id_ > job_id)
    beyond = expression < value if descending else expression > value
    tie = and_(expression == value, id_ < job_id if descending else id_ > job_id)
    return or_(beyond, tie, expression.is_(None))


def list_jobs(
    session: Session, owner_id: str | None, where: JobFilter, after: tuple[object, str] | None, limit: int
) -> list[Job]:
    """One page in the filter's order; `after` is the (sort value, id) of the last job of the previous page.

    Newest or oldest first, a page is one range of an index in its order: the owner's jobs
    (ix_jobs_owner_id_created_at_id), or with `?tag=key:value` the owner's rows of that tag
    (ix_job_tags_owner_id_key_value, which copies the job's created_at), each job then read by its key.
    """
    expression, id_ = sort_expression(where.sort_name), Job.id
    nullable = where.sort_name != "created_at"  # a metric: jobs without one yet come last, either way
    valued = next(((key, value) for key, value in where.tags if value is not None), None)
    tags = where.tags
    query = select(Job)
    if valued is not None and not nullable:
        tag = aliased(JobTag)
        query = query.join(tag, tag.job_id == Job.id).where(
            owned_by(tag.owner_id, owner_id), tag.key == valued[0], tag.value == valued[1]
        )
        expression, id_ = tag.created_at, tag.job_id
        tags = [entry for entry in tags if entry != valued]
    query = query.where(*_conditions(owner_id, where, tags))
    if after is not None:
        query = query.where(_after(expression, id_, where.descending, *after, nullable))
    if where.descending:
        order = (expression.desc().nulls_last() if nullable else expression.desc(), id_.desc())
    else:
        order = (expression.asc().nulls_last() if nullable else expression.asc(), id_.asc())
    return list(session.scalars(query.order_by(*order).limit(limit)))


def write_tags(session: Session, jobs: list[Job], tags: list[dict[str, str]] | None = None) -> None:
    """Index these jobs' tags (their own, or `tags`, one dict a job): one job_tags row per tag, for `?tag=` to find."""
    tags = [job.tags for job in jobs] if tags is None else tags
    rows = [
        {"job_id": job.id, "key": key, "value": value, "owner_id": job.owner_id, "created_at": job.created_at}
        for job, its in zip(jobs, tags) for key, value in its.items()
    ]
    if rows:
        session.execute(insert(JobTag), rows)


def update_job(session: Session, job: Job, values: dict) -> None:
    """Set the job's name and/or tags (`values` holds those to change); its job_tags rows follow its tags."""
    session.execute(update(Job).where(Job.id == job.id).values(**values))
    if "tags" in values:
        session.execute(delete(JobTag).where(JobTag.job_id == job.id))
        write_tags(session, [job], [values["tags"]])
    session.refresh(job)
