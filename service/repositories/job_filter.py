"""`?filter=` terms (schemas/job_filter.py) as SQL conditions on jobs: every name and value a bound parameter.

A params term reads job_params (repositories/job_params.py: the spec's numbers and strings, a row each, written
with the job), the same way on both back ends, and compares only a value of the literal's kind: a number with a
number, a string with a string. The page reads the owner's jobs in page order, each tested by its key in
job_params, unless a params term matches few of the owner's jobs (counted in ix_job_params_owner_id_path_value):
those then drive the page, and are sorted (bench/job_filter.py). A metrics term compares the metric of the weights
the job kept, as `?sort=` does (models.kept_metric: its index serves the three sortable metrics).
"""

import operator
from collections.abc import Sequence

from sqlalchemy import String, bindparam, case, cast, exists, func, literal, select
from sqlalchemy.dialects.postgresql import DOUBLE_PRECISION
from sqlalchemy.orm import Session

from service.models import SORT_METRICS, Job, JobParam, JobTag, kept_metric
from service.repositories.jobs import owned_by
from service.schemas.job_filter import Term

# SQLite: a metric term's range this many of the owner's jobs hold at most is read from the metric's index, then
# sorted; a commoner one is met soon enough reading the owner's jobs in page order (as ?name='s parts are)
METRIC_MATCHES_BY_INDEX = 1000
# a params term at most this many of the owner's jobs match drives the page: its matches are read from the index,
# then sorted; a commoner one is met soon enough testing the owner's jobs in page order
PARAM_MATCHES_BY_INDEX = 1000
OPERATIONS = {
    "=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}


def tag_equalities(terms: list[Term]) -> list[tuple[str, str]]:
    """The `tags.<key> = 'value'` terms as `?tag=key:value` pairs, which job_search reads from the tag index."""
    return [(term.path[0], term.values[0]) for term in terms if term.kind == "tags" and term.op == "="]


def term_conditions(terms: list[Term], dialect: str, off_index: Sequence[Term] = ()) -> list:
    """A condition a term, but for the tag equalities (tag_equalities) and the params term that drives the page
    (driving_param_term), on `jobs`; the metric terms of `off_index` (metric_terms_off_index) written so that no
    index of theirs matches them."""
    conditions = []
    for term in terms:
        if term.kind == "params":
            held = select(JobParam.job_id).where(JobParam.job_id == Job.id, JobParam.path == param_path(term))
            # OFFSET: PostgreSQL keeps the test a subplan run for each job the page reads, not a semi-join that
            # reads every job_params row of the path and value (a third of the jobs': 336 ms against 9 at 100k)
            conditions.append(exists(held.where(param_value_test(term)).offset(0)))
        elif term.kind == "tags" and term.op != "=":
            tagged = select(JobTag.job_id).where(JobTag.job_id == Job.id, JobTag.key == bindparam(None, term.path[0]))
            conditions.append(exists(tagged.where(compared(JobTag.value, term))))
        elif term.kind == "status":
            conditions.append(compared(Job.status, term))
        elif term.kind == "metrics":
            value = metric(term.path[0], dialect)
            conditions.append(compared(value + 0 if term in off_index else value, term))  # + 0: not the index's
    return conditions


def param_path(term: Term) -> str:
    """The job_params path a params term names (a list index as job_params.spec_params writes it: `007` is 7)."""
    return ".".join(str(int(segment)) if segment.isdigit() else segment for segment in term.path)


def param_value_test(term: Term):
    """The term's comparison on a job_params row: of num_value for a number; of text_value for a string, whose
    num_value is NULL (so that the index's next column, text_value, is one range too)."""
    if isinstance(term.values[0], float):
        return compared(JobParam.num_value, term)
    return JobParam.num_value.is_(None) & compared(JobParam.text_value, term)


def param_matches(owner_id: str | None, term: Term):
    """The ids of the owner's jobs a params term matches: a range of ix_job_params_owner_id_path_value a value."""
    return select(JobParam.job_id).where(
        owned_by(JobParam.owner_id, owner_id), JobParam.path == param_path(term), param_value_test(term)
    )


def driving_param_term(session: Session, owner_id: str | None, terms: list[Term]) -> Term | None:
    """The params term (but a `!=`, seldom rare) the fewest of the owner's jobs match, if at most
    PARAM_MATCHES_BY_INDEX do (each counted in the index, up to one more than that); else None."""
    counts = []
    for at, term in enumerate(terms):
        if term.kind == "params" and term.op != "!=":
            matching = param_matches(owner_id, term).limit(PARAM_MATCHES_BY_INDEX + 1).subquery()
            counts.append((session.scalar(select(func.count()).select_from(matching)), at))
    found, at = min(counts, default=(PARAM_MATCHES_BY_INDEX + 1, None))
    return terms[at] if found <= PARAM_MATCHES_BY_INDEX else None


def driving_matches(session: Session, owner_id: str | None, term: Term):
    """The ids of the owner's jobs the driving params term matches (driving_param_term), as a subquery to read the
    jobs from. SQLite: its LIMIT, which the count of the same read transaction bounds, keeps the subquery from being
    flattened into the page's (whose plan would test the owner's jobs one by one instead)."""
    matches = param_matches(owner_id, term)
    if session.get_bind().dialect.name == "sqlite":
        matches = matches.limit(PARAM_MATCHES_BY_INDEX + 1)
    return matches.subquery("params")


def metric_terms_off_index(session: Session, owner_id: str | None, terms: list[Term]) -> list[Term]:
    """SQLite: the sortable-metric terms whose index (ix_jobs_owner_id_<metric>) the page should not read, being
    too common: SQLite, without statistics, reads such a range whole and sorts it, where the page is soon full
    reading the owner's jobs in order. A term of a range at most METRIC_MATCHES_BY_INDEX of the owner's jobs hold
    (counted in the index) keeps it; PostgreSQL decides by its statistics (none here)."""
    if session.get_bind().dialect.name != "sqlite":
        return []
    off = []
    for term in terms:
        if term.kind == "metrics" and term.path[0] in SORT_METRICS and term.op != "!=":
            matching = select(Job.id).where(owned_by(Job.owner_id, owner_id), compared(kept_metric(term.path[0]), term))
            matching = matching.limit(METRIC_MATCHES_BY_INDEX + 1).subquery()
            found = session.scalar(select(func.count()).select_from(matching))
            if found > METRIC_MATCHES_BY_INDEX:
                off.append(term)
    return off


def compared(expression, term: Term):
    values = [bindparam(None, value) for value in term.values]
    if term.op == "in":
        return expression.in_(values)
    return expression.operate(OPERATIONS[term.op], values[0])


def metric(name: str, dialect: str):
    """The metric of the kept weights (best epoch's, else latest): for a sortable one, as its index is written."""
    if name in SORT_METRICS:
        return kept_metric(name)
    return func.coalesce(json_value(Job.best_metrics, (name,), True, dialect),
                         json_value(Job.latest_metrics, (name,), True, dialect))


def json_value(column, path: tuple[str, ...], number: bool, dialect: str):
    """The number (or string) at `path` of a JSON column; NULL where it holds none, or a value of another kind."""
    if dialect == "postgresql":
        keys = [bindparam(None, key, type_=String) for key in path]
        kind = func.json_typeof(func.json_extract_path(column, *keys))
        text = func.json_extract_path_text(column, *keys)
        if number:
            return case((kind == literal("number"), cast(text, DOUBLE_PRECISION)))
        return case((kind == literal("string"), text))
    json_path = bindparam(None, "$" + "".join(f"[{key}]" if key.isdigit() else f'."{key}"' for key in path))
    kind = func.json_type(column, json_path)
    kinds = ("integer", "real") if number else ("text",)
    return case((kind.in_([literal(k) for k in kinds]), func.json_extract(column, json_path)))
