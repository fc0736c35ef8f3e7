"""Submitting, reading, listing and cancelling jobs; reading their curves."""

import base64
import binascii
import json
import math
import re
from datetime import datetime

from sqlalchemy.orm import Session

from fitserve.schemas import JobPage, JobPublic, MetricPointPublic, MetricsPage
from modelzoo.memory import TrainingEstimate, estimate_training, format_bytes
from service.errors import Conflict, InvalidField, NotFound, TooManyRequests
from service.models import Job, JobStatus
from service.repositories import aliases as alias_repo
from service.repositories import datasets as dataset_repo
from service.repositories import jobs as job_repo
from service.repositories import job_params as params_repo
from service.repositories import job_search as search_repo
from service.repositories import metrics as metric_repo
from service.schemas.jobs import AliasAssignmentPublic, AliasPublic, ContinueRequest, JobUpdate, job_public
from service.schemas.data import DataShape, known_data_shape
from service.schemas.lints import DatasetMoments, moments_wanted
from service.schemas.job_filter import FilterError, Term, parse_filter
from service.schemas.spec import JobSpec, SpecError, check_spec
from service.schemas.webhooks import Notify
from service import wakeup
from service.services import starts
from service.services.gpu_budgets import GpuShare, gpu_share
from service.services.usage import check_storage
from service.services.webhook_targets import check_notify
from service.batching import batch_key
from service.settings import Settings

TAG_KEY = re.compile(r"[A-Za-z0-9_.\-/]{1,64}")  # as schemas.spec.TagKey


def data_shape(session: Session, spec: JobSpec, owner_id: str | None) -> DataShape:
    shape = known_data_shape(spec.data)
    if shape is not None:
        return shape
    dataset = dataset_repo.get_dataset(session, spec.data.dataset_id, owner_id)
    if dataset is None:
        raise InvalidField(("data", "dataset_id"), f"no dataset {spec.data.dataset_id!r}")
    return DataShape(
        sample_shape=tuple(dataset.sample_shape),
        n_rows=dataset.n_rows,
        n_classes=dataset.n_classes,
        target_width=dataset.target_width,
    )


def estimate_memory(spec: JobSpec, shape: DataShape) -> TrainingEstimate:
    """The peak memory of training the job, from its spec and its data's shape."""
    return estimate_training(spec, shape.n_rows, math.prod(shape.sample_shape), shape.target_width)


# the part of an estimate that is largest names the field to change, and how
MEMORY_FIELDS = {
    "activations": (("batch_size",), "set a smaller batch_size, or narrower layers"),
    "weights": (("model",), "use a smaller model"),
    "data": (("data",), "use fewer rows"),
}


def check_memory(estimate: TrainingEstimate, limit: int, what: str = "training", share: GpuShare | None = None) -> None:
    """SpecError naming the estimate and FITSERVE_MAX_JOB_BYTES when a job would not fit a worker; with a GPU
    `share` (whose bytes are `limit`), naming the estimate, the GPU and its share instead."""
    if estimate.total <= limit:
        return
    part = max(MEMORY_FIELDS, key=lambda name: getattr(estimate, name))
    loc, hint = MEMORY_FIELDS[part]
    budget = share.describe() if share is not None else f"the limit (FITSERVE_MAX_JOB_BYTES) is {format_bytes(limit)}"
    raise SpecError(loc, f"{what} would need {estimate.describe()}; {budget}: {hint}")


def submit_job(
    session: Session, spec: JobSpec, owner_id: str | None, settings: Settings, notify: Notify | None = None,
    continued_from: str | None = None,
) -> Job:
    """A queued job of `spec`, whose events `notify` (kept beside the spec, not in it) tells of; `continued_from`:
    the job whose final state it starts from (services/starts.py)."""
    # SQLite: a session's first statement takes the write lock (service/db.py), so what needs no database
    # (a spec on built-in or synthetic data, the webhook's host) is checked before it, not while the other writers wait
    shape = known_data_shape(spec.data)
    estimate = check_fits(spec, shape, settings) if shape is not None else None
    check_notify(notify, ("notify",), settings)
    job = Job(
        owner_id=owner_id,
        name=spec.name,
        spec=spec.model_dump(mode="json", exclude={"notify"}),
        epochs=spec.epochs,
        max_attempts=settings.MAX_ATTEMPTS,
        priority=spec.priority,
        tags=spec.tags,
        batch_key=batch_key(spec),
        notify=notify.model_dump(mode="json") if notify else None,
        notified_status=JobStatus.QUEUED if notify else None,
        continued_from=continued_from,
    )
    if estimate is None:  # an uploaded dataset's shape: read in the transaction
        estimate = check_fits(spec, data_shape(session, spec, owner_id), settings)
    check_gpu_memory(session, spec, estimate, settings)
    job.estimate_bytes = estimate.total
    starts.check_init(session, spec, owner_id)
    # after every check of the spec: a spec that can never run gets its 422, not a 429 to retry
    check_storage(session, owner_id, settings.MAX_STORED_BYTES_PER_OWNER)
    queued = job_repo.count_queued(session, owner_id)
    if queued >= settings.MAX_QUEUED_PER_OWNER:
        raise TooManyRequests(f"you have {queued} queued jobs, the most allowed; wait for some to start", 5)
    job = job_repo.add_job(session, job)
    search_repo.write_tags(session, [job])
    params_repo.write_params(session, [job])
    wakeup.work_queued(session)
    return job


def continue_job(session: Session, job_id: str, owner_id: str | None, request: ContinueRequest, settings: Settings) -> Job:
    """A queued job that trains `request.epochs` more from job_id's final weights and optimizer state."""
    spec = starts.continued_spec(session, job_id, owner_id, request)
    return submit_job(session, spec, owner_id, settings, continued_from=job_id)


def check_fits(spec: JobSpec, shape: DataShape, settings: Settings) -> TrainingEstimate:
    """422 naming the field when the spec does not fit its data, a worker's memory or the tag limit; else the
    job's memory estimate."""
    try:
        check_spec(spec, shape)
        estimate = estimate_memory(spec, shape)
        check_memory(estimate, settings.MAX_JOB_BYTES)
    except SpecError as exc:
        raise InvalidField(exc.loc, exc.msg) from None
    check_tags(spec.tags, settings)
    return estimate


def check_gpu_memory(session: Session, spec: JobSpec, estimate: TrainingEstimate, settings: Settings) -> None:
    """422 naming the estimate, the GPU and its share when a job that trains on a GPU (`gpu_share`) fits none of
    the registered ones."""
    share = gpu_share(session, spec.device, settings)
    if share is None:
        return
    try:
        check_memory(estimate, share.bytes, "training", share)
    except SpecError as exc:
        raise InvalidField(exc.loc, exc.msg) from None


def check_tags(tags: dict, settings: Settings, loc: tuple[str, ...] = ("tags",)) -> None:
    if len(tags) > settings.MAX_TAGS:
        raise InvalidField(loc, f"{len(tags)} tags; at most {settings.MAX_TAGS} (FITSERVE_MAX_TAGS)")


def lint_moments(session: Session, jobs: list[Job]) -> DatasetMoments:
    """The target moments the jobs' uncached warnings read: every dataset's in one query, none once all are
    cached; a deleted dataset has none."""
    wanted = {dataset_id for job in jobs if (dataset_id := moments_wanted(job.id, job.spec)) is not None}
    stored = dataset_repo.get_target_moments(session, wanted) if wanted else {}
    return {dataset_id: stored.get(dataset_id) for dataset_id in wanted}


def public_jobs(session: Session, jobs: list[Job]) -> list[JobPublic]:
    """The jobs as the API answers them."""
    datasets = lint_moments(session, jobs)
    return [job_public(job, datasets) for job in jobs]


def public_job(session: Session, job: Job) -> JobPublic:
    return public_jobs(session, [job])[0]


def get_job(session: Session, job_id: str, owner_id: str | None) -> Job:
    job = job_repo.get_job(session, job_id, owner_id)
    if job is None:
        raise NotFound(f"no job {job_id!r}")
    return job


def encode_cursor(row) -> str:
    """An opaque cursor for newest-first paging: the (created_at, id) of the last row of a page."""
    raw = json.dumps([row.created_at.isoformat(), row.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        created_at, job_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return datetime.fromisoformat(created_at), str(job_id)
    except (ValueError, TypeError, binascii.Error):
        raise InvalidField(("cursor",), "not a cursor this service gave out", where="query") from None


def encode_job_cursor(job: Job, sort: str) -> str:
    """A cursor for the job list in this sort: the sort, and the last job's (sort key, id)."""
    value = search_repo.sort_value(job, sort.lstrip("-"))
    raw = json.dumps([sort, value.isoformat() if isinstance(value, datetime) else value, job.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_job_cursor(cursor: str, sort: str) -> tuple[object, str]:
    """The (sort key, id) a cursor of `encode_job_cursor` carries; 422 for one of another sort."""
    try:
        given, value, job_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if given != sort:
            raise InvalidField(("cursor",), f"a cursor of sort={given}; this page is sort={sort}", where="query")
        if sort.lstrip("-") == "created_at":
            return datetime.fromisoformat(value), str(job_id)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError("not a number")
        return value, str(job_id)
    except (ValueError, TypeError, binascii.Error):
        raise InvalidField(("cursor",), "not a cursor this service gave out", where="query") from None


def parse_tag_filters(tags: list[str], settings: Settings) -> list[tuple[str, str | None]]:
    """`key:value` (that value) or `key` (any value), each; 422 naming `tag` for a malformed one."""
    if len(tags) > settings.MAX_TAGS:
        raise InvalidField(("tag",), f"{len(tags)} tag filters; at most {settings.MAX_TAGS}", where="query")
    parsed = []
    for tag in tags:
        key, sep, value = tag.partition(":")
        if not TAG_KEY.fullmatch(key) or len(value) > 256:
            raise InvalidField(
                ("tag",), f"{tag[:100]!r}: expected key:value, a key of 1-64 letters, digits or _.-/", where="query"
            )
        parsed.append((key, value if sep else None))
    return parsed


def parse_job_filter(text: str) -> list[Term]:
    """The terms of `?filter=`; 422 naming `filter`, the token and its position where it does not parse."""
    try:
        return parse_filter(text)
    except FilterError as exc:
        raise InvalidField(("filter",), str(exc), where="query") from None


def list_jobs(
    session: Session, owner_id: str | None, where: search_repo.JobFilter, cursor: str | None, limit: int
) -> JobPage:
    if where.name is not None and "\x00" in where.name:  # no text of PostgreSQL's, nor an FTS5 phrase, holds one
        raise InvalidField(("name",), "holds a NUL character", where="query")
    after = decode_job_cursor(cursor, where.sort) if cursor else None
    jobs = search_repo.list_jobs(session, owner_id, where, after, limit + 1)
    page = jobs[:limit]
    next_cursor = encode_job_cursor(page[-1], where.sort) if len(jobs) > limit else None
    return JobPage(items=public_jobs(session, page), next_cursor=next_cursor)


def update_job(session: Session, job_id: str, owner_id: str | None, change: JobUpdate, settings: Settings) -> Job:
    """PATCH: the name, and tags merged into the job's (a null value removes that key)."""
    job = get_job(session, job_id, owner_id)
    values = {}
    if "name" in change.model_fields_set:
        values["name"] = change.name
    if change.tags is not None:
        tags = {**(job.tags or {}), **change.tags}
        values["tags"] = {key: value for key, value in tags.items() if value is not None}
        check_tags(values["tags"], settings)
    if values:
        search_repo.update_job(session, job, values)
    return job


def cancel_job(session: Session, job_id: str, owner_id: str | None) -> Job:
    job = get_job(session, job_id, owner_id)
    if JobStatus(job.status).is_final:
        raise Conflict(f"job {job_id} is already {job.status}")
    job_repo.request_cancel(session, job)
    return job


def read_metrics(
    session: Session, job_id: str, owner_id: str | None, since_step: int, max_points: int | None, page_points: int
) -> MetricsPage:
    """The next `page_points` points after `since_step`, none skipped; or, asked for `max_points`, that many
    evenly spaced over all of them (at most a page), so a page never hides points the next one cannot reach."""
    job = get_job(session, job_id, owner_id)
    total = metric_repo.count_points(session, job_id, since_step)
    if max_points is None:
        points = metric_repo.list_points_after(session, job_id, since_step, page_points)
    else:
        points = metric_repo.list_points(session, job_id, since_step, min(max_points, page_points))
    return MetricsPage(
        job_id=job.id,
        status=job.status,
        points=[MetricPointPublic.model_validate(p) for p in points],
        next_since_step=points[-1].step if points else since_step,
        total_points=total,
        has_more=max_points is None and len(points) < total,
        downsampled=max_points is not None and len(points) < total,
    )


def read_weights(session: Session, job_id: str, owner_id: str | None) -> bytes:
    job = get_job(session, job_id, owner_id)
    if job.status != JobStatus.SUCCEEDED:
        raise Conflict(f"job {job_id} is {job.status}; weights exist once it has succeeded")
    blob = metric_repo.get_weights(session, job_id)
    if blob is None:
        raise NotFound(f"job {job_id} has no stored weights")
    return blob


def set_alias(session: Session, job_id: str, owner_id: str | None, alias: str | None, move: bool = False) -> Job:
    """Name a job for the v2 protocol (`/v2/models/{alias}`); an alias names one job of an owner at a time. With
    `move`, an alias that names another job moves to this one in the same transaction: a reader sees it name the
    one or the other, never none."""
    job = get_job(session, job_id, owner_id)
    if alias is not None:
        holder = alias_repo.get_job_by_alias(session, alias, owner_id)
        if holder is not None and holder.id != job.id:
            if not move:
                raise Conflict(f"alias {alias!r} already names job {holder.id}; send \"move\": true to move it")
            alias_repo.set_alias(session, holder, None)
    if not alias_repo.set_alias(session, job, alias):
        raise Conflict(f"alias {alias!r} was set on another job meanwhile; read it and try again")
    return job


def alias_history(session: Session, alias: str, owner_id: str | None, limit: int) -> AliasPublic:
    """The job the alias names now (None: none) and its assignments, newest first; 404 for an alias never set."""
    assignments = alias_repo.history(session, owner_id, alias, limit)
    if not assignments:
        raise NotFound(f"no alias {alias!r}")
    holder = alias_repo.get_job_by_alias(session, alias, owner_id)
    return AliasPublic(alias=alias, job_id=holder.id if holder else None,
                       history=[AliasAssignmentPublic.model_validate(a) for a in assignments])


def resolve_model_name(session: Session, name: str, owner_id: str | None) -> str:
    """A v2 model name: a job id, or an alias set on one of the owner's jobs."""
    job = job_repo.get_job(session, name, owner_id) or alias_repo.get_job_by_alias(session, name, owner_id)
    if job is None:
        raise NotFound(f"no model {name!r}")
    return job.id
