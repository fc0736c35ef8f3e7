"""Finding an owner's jobs: filters on name, tags, sweep, dates and `?filter=` terms; sorted by time or a metric;
keyset pages.

Every page is one range of an index read in page order, from the cursor on: the owner's jobs by time
(ix_jobs_owner_id_created_at_id_name), the owner's rows of a tag (ix_job_tags_owner_id_key_value, which copies the
job's created_at), or by a metric (ix_jobs_owner_id_<metric>, on the metric's expression). `?name=` is a
trigram index's: PostgreSQL's on lower(name) (pg_trgm), SQLite's FTS5 table of the names (alembic 0022). A rare
`?filter=` params term's matches are read from ix_job_params_owner_id_path_value, then sorted (job_filter.py).
"""

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import String, and_, delete, exists, func, insert, or_, select, text, update
from sqlalchemy.orm import Session, aliased

from service.models import SORT_METRICS, Job, JobTag, kept_metric
from service.repositories.job_filter import (
    driving_matches,
    driving_param_term,
    metric_terms_off_index,
    tag_equalities,
    term_conditions,
)
from service.repositories.jobs import owned_by
from service.schemas.job_filter import Term

SORTS = ("created_at", *SORT_METRICS)
# SQLite: a `?name=` part at most this many names hold is found through the trigram index, each match then
# read by its key; one more common is met soon enough by reading the owner's jobs in page order, each name
# checked on its entry of ix_jobs_owner_id_created_at_id_name (only a match's row is read)
NAME_MATCHES_BY_INDEX = 1000
INFINITY = float("inf")


@dataclass(frozen=True)
class JobFilter:
    status: str | None = None
    name: str | None = None  # a part of the name, any case
    tags: list[tuple[str, str | None]] = field(default_factory=list)  # (key, value); None: any value
    sweep_id: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    sort: str = "-created_at"  # a name of SORTS, `-` first for descending
    terms: list[Term] = field(default_factory=list)  # ?filter=, all of them (repositories/job_filter.py)

    @property
    def sort_name(self) -> str:
        return self.sort.lstrip("-")

    @property
    def descending(self) -> bool:
        return self.sort.startswith("-")


def sort_value(job: Job, name: str):
    """The sort key a cursor carries, from a loaded job: its created_at, or the metric of the weights it kept (its
    best epoch's, with early stopping, else its latest: models.kept_metric), as the sweep leaderboard ranks them."""
    if name == "created_at":
        return job.created_at
    best = (job.best_metrics or {}).get(name)
    return best if best is not None else (job.latest_metrics or {}).get(name)


def name_pattern(part: str):
    """`lower(name) LIKE '%part%'`, part's % _ and / plain: on PostgreSQL the trigram index on lower(name) answers
    it (the pattern is a constant to the planner, which plans each statement for its values: service/db.py)."""
    escaped = part.replace("/", "//").replace("%", "/%").replace("_", "/_")
    return func.lower(Job.name).like(func.lower(f"%{escaped}%"), escape="/")


def _conditions(
    owner_id: str | None, where: JobFilter, tags: list[tuple[str, str | None]], terms: list[Term], session: Session
) -> list:
    dialect = session.get_bind().dialect.name
    off_index = metric_terms_off_index(session, owner_id, terms) if where.sort_name == "created_at" else []
    conditions = [owned_by(Job.owner_id, owner_id), *term_conditions(terms, dialect, off_index)]
    if where.status is not None:
        conditions.append(Job.status == where.status)
    if where.name is not None:
        conditions.append(name_pattern(where.name))
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


def _past(key, id_, after: tuple[object, str], descending: bool):
    """Rows past the cursor's (value, id) in page order, as `key >= value AND (key > value OR id > id0)`: both back
    ends seek to the bound on the key (SQLite not to a row comparison's on an expression), then read on in order."""
    value, job_id = after
    if descending:
        return and_(key <= value, or_(key < value, id_ < job_id))
    return and_(key >= value, or_(key > value, id_ > job_id))


def _ordered(query, keys: tuple, descending: bool, limit: int):
    return query.order_by(*(key.desc() if descending else key.asc() for key in keys)).limit(limit)


def _named_matches(session: Session, part: str):
    """SQLite: the ids of the jobs whose names may hold `part`, from the trigram index, as a subquery to read
    the jobs from; None where the index does not narrow them enough (a part of under 3 characters, or one more
    than NAME_MATCHES_BY_INDEX names hold): the owner's jobs are then read in page order."""
    if session.get_bind().dialect.name != "sqlite" or len(part) < 3:
        return None
    phrase = '"' + part.replace('"', '""') + '"'  # an FTS5 phrase: the part's trigrams, one after the other
    # the LIMIT keeps SQLite from flattening the subquery into the page's: it is read first, whole
    matches = text("SELECT n.job_id FROM job_name_trigrams t JOIN job_names n ON n.id = t.rowid"
                   " WHERE job_name_trigrams MATCH :phrase LIMIT :most")
    matches = matches.bindparams(phrase=phrase, most=NAME_MATCHES_BY_INDEX + 1).columns(job_id=String)
    found = session.scalar(select(func.count()).select_from(matches.subquery()))
    return matches.subquery("named") if found <= NAME_MATCHES_BY_INDEX else None


def list_jobs(
    session: Session, owner_id: str | None, where: JobFilter, after: tuple[object, str] | None, limit: int
) -> list[Job]:
    """One page in the filter's order; `after` is the (sort value, id) of the last job of the previous page."""
    query, terms = select(Job), where.terms
    all_tags = [*where.tags, *tag_equalities(where.terms)]  # filter's tags.k = 'v' read as ?tag=k:v is
    few = _named_matches(session, where.name) if where.name is not None else None
    driving = driving_param_term(session, owner_id, terms) if few is None else None
    if driving is not None:
        few, terms = driving_matches(session, owner_id, driving), [t for t in terms if t is not driving]
    if few is not None:  # the few matches drive the query, then are sorted (SQLite reads them first)
        query = query.select_from(few).join(Job, Job.id == few.c.job_id)
    if where.sort_name != "created_at":
        query = query.where(*_conditions(owner_id, where, all_tags, terms, session))
        return _by_metric(session, query, where, after, limit)
    order, tags = (Job.created_at, Job.id), all_tags
    valued = next(((key, value) for key, value in all_tags if value is not None), None)
    if valued is not None and few is None:
        tag = aliased(JobTag)
        query = query.join(tag, tag.job_id == Job.id).where(
            owned_by(tag.owner_id, owner_id), tag.key == valued[0], tag.value == valued[1]
        )
        order, tags = (tag.created_at, tag.job_id), [entry for entry in all_tags if entry != valued]
    query = query.where(*_conditions(owner_id, where, tags, terms, session))
    if after is not None:
        query = query.where(_past(*order, after, where.descending))
    return list(session.scalars(_ordered(query, order, where.descending, limit)))


def _by_metric(session: Session, query, where: JobFilter, after: tuple[object, str] | None, limit: int) -> list[Job]:
    """Jobs with the metric in its order, then those without it (by id, the same way): each part one range of
    ix_jobs_owner_id_<metric>, whose NULL range holds the jobs without it."""
    metric, descending = kept_metric(where.sort_name), where.descending
    jobs = []
    if after is None or after[0] is not None:
        # past -inf (or short of inf): every job with the metric (JSON holds no infinity), a bound SQLite seeks
        # to, as it does not to IS NOT NULL on an expression
        valued = query.where(metric < INFINITY if descending else metric > -INFINITY)
        if after is not None:
            valued = valued.where(_past(metric, Job.id, after, descending))
        jobs = list(session.scalars(_ordered(valued, (metric, Job.id), descending, limit)))
    if len(jobs) < limit:
        unvalued = query.where(metric.is_(None))
        if after is not None and after[0] is None:
            unvalued = unvalued.where(Job.id < after[1] if descending else Job.id > after[1])
        # in id order: SQLite reads the NULL range so, PostgreSQL only when told (metric, id), the index's order
        order = (Job.id,) if session.get_bind().dialect.name == "sqlite" else (metric, Job.id)
        jobs += session.scalars(_ordered(unvalued, order, descending, limit - len(jobs)))
    return jobs


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
