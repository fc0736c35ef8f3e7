"""`?filter=` terms (schemas/job_filter.py) as SQL conditions on jobs: every name and value a bound parameter.

A params term reads the spec by JSON path on both back ends (SQLite's json_type/json_extract with the path bound,
PostgreSQL's jsonb_path_exists with the path and the values bound) and compares only a value of the literal's kind:
a number with a number, a string with a string, so a spec's text never meets a number (SQLite orders all text after
all numbers). A metrics term compares the metric of the weights the job kept, as `?sort=`
does (models.kept_metric: its index serves the three sortable metrics). No index on the spec: the list reads the
owner's jobs in page order and tests each (the measured cost is in bench/job_filter.py).
"""

import json
import operator
from collections.abc import Sequence

from sqlalchemy import String, bindparam, case, cast, exists, func, literal, select, true
from sqlalchemy.dialects.postgresql import DOUBLE_PRECISION, JSONB, JSONPATH
from sqlalchemy.orm import Session

from service.models import SORT_METRICS, Job, JobTag, kept_metric
from service.repositories.jobs import owned_by
from service.schemas.job_filter import Term

# SQLite: a metric term's range this many of the owner's jobs hold at most is read from the metric's index, then
# sorted; a commoner one is met soon enough reading the owner's jobs in page order (as ?name='s parts are)
METRIC_MATCHES_BY_INDEX = 1000
OPERATIONS = {
    "=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}
JSON_PATH_OPERATORS = {"=": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


def tag_equalities(terms: list[Term]) -> list[tuple[str, str]]:
    """The `tags.<key> = 'value'` terms as `?tag=key:value` pairs, which job_search reads from the tag index."""
    return [(term.path[0], term.values[0]) for term in terms if term.kind == "tags" and term.op == "="]


def term_conditions(terms: list[Term], dialect: str, off_index: Sequence[Term] = ()) -> list:
    """A condition a term, but for the tag equalities (tag_equalities), on `jobs`; the metric terms of
    `off_index` (metric_terms_off_index) written so that no index of theirs matches them."""
    conditions = []
    for term in terms:
        if term.kind == "tags" and term.op != "=":
            tagged = select(JobTag.job_id).where(JobTag.job_id == Job.id, JobTag.key == bindparam(None, term.path[0]))
            conditions.append(exists(tagged.where(compared(JobTag.value, term))))
        elif term.kind == "status":
            conditions.append(compared(Job.status, term))
        elif term.kind == "metrics":
            value = metric(term.path[0], dialect)
            conditions.append(compared(value + 0 if term in off_index else value, term))  # + 0: not the index's
        elif term.kind == "params" and dialect == "postgresql":
            conditions.append(spec_matches(term))
        elif term.kind == "params":
            number = isinstance(term.values[0], float)
            conditions.append(compared(json_value(Job.spec, term.path, number, dialect), term))
    return conditions


def spec_matches(term: Term):
    """PostgreSQL: a params term as one SQL/JSON path test of the spec, parsed once (a CASE on its type and value
    parsed the spec's text twice: 1.3-1.8x slower for a term few jobs match). `strict`: no array is unwrapped, and a
    missing key or a value of another kind is no match, as SQLite's json_type test does. The path (its names checked
    by schemas/job_filter.py) and the values (as JSON variables) are bound. PostgreSQL prices the function at a third
    of the rows, where `expression = value` was 0.5%: it reads the owner's jobs in page order until the page is full,
    not all of them to sort (25x faster at 100k for a term a third of the jobs match)."""
    steps = "".join(f"[{key}]" if key.isdigit() else f'."{key}"' for key in term.path)
    if term.op == "in":
        test = " || ".join(f"@ == $v{i}" for i in range(len(term.values)))
    else:
        test = f"@ {JSON_PATH_OPERATORS[term.op]} $v0"
    path = bindparam(None, f"strict ${steps} ? ({test})", type_=String)
    values = bindparam(None, json.dumps({f"v{i}": value for i, value in enumerate(term.values)}), type_=String)
    return func.jsonb_path_exists(cast(Job.spec, JSONB), cast(path, JSONPATH), cast(values, JSONB), true())


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
