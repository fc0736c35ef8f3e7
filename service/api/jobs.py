"""/v1/jobs: submit, read, list, cancel; curves, weights and predictions."""

from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic_core import to_json
from sqlalchemy.orm import Session

from fitserve.schemas import JobPage, JobPublic, MetricsPage, PredictResponse
from service.api.deps import ERROR_RESPONSES, ModelCacheDep, OwnerDep, SessionDep, SettingsDep
from service.api.events import long_poll
from service.api.idempotent import IdempotencyKeyHeader, create_once
from service.api.routing import OffLoopJSONRoute
from service.repositories.job_search import JobFilter
from service.schemas.job_filter import MAX_FILTER_CHARS
from service.schemas.jobs import AliasUpdate, ContinueRequest, JobCreate, JobUpdate, PredictRequest, job_public
from service.schemas.evaluation import EvaluateRequest
from service.schemas.limits import LIMITS
from service.services import evaluation, events, lifecycle, predictions
from service.services import jobs as job_service
from service.services.plots import draw_curve
from service.services.predictions import AnswerLimits
from service.settings import get_settings

POINT_JSON_BYTES = 256  # one curve point as JSON, every field set, names included

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=ERROR_RESPONSES, route_class=OffLoopJSONRoute)

StatusFilter = Literal["queued", "running", "succeeded", "failed", "cancelled"]
WaitSeconds = Annotated[
    float, Query(ge=0, le=events.MAX_WAIT_SECONDS, description="long-poll: answer once the job changes, or after this")
]
# compared with INTEGER columns in SQL: past their range the database errs (a 500); here it is a 422
SinceStep = Annotated[int, Query(ge=0, le=LIMITS.max_step, description="only points after this step")]


@router.post("", status_code=201, response_model=JobPublic)
def submit_job(
    spec: JobCreate, session: SessionDep, owner: OwnerDep, settings: SettingsDep, idempotency_key: IdempotencyKeyHeader = None
):
    def create() -> tuple[Callable[[], dict], str]:
        job = job_service.submit_job(session, spec, owner, settings, spec.notify)
        datasets = job_service.lint_moments(session, [job])  # read now: the answer renders after the commit
        return lambda: job_public(job, datasets).model_dump(mode="json"), f"/v1/jobs/{job.id}"

    content = spec.model_dump(mode="json") if idempotency_key is not None else None  # only a key's fingerprint reads it
    return create_once(session, settings, owner, "POST /v1/jobs", idempotency_key, content, create)


@router.post("/{job_id}/continue", status_code=201, response_model=JobPublic)
def continue_job(
    job_id: str, body: ContinueRequest, session: SessionDep, owner: OwnerDep, settings: SettingsDep,
    idempotency_key: IdempotencyKeyHeader = None,
):
    """A new job that trains `epochs` more from this succeeded job's final weights and optimizer state."""
    def create() -> tuple[Callable[[], dict], str]:
        job = job_service.continue_job(session, job_id, owner, body, settings)
        datasets = job_service.lint_moments(session, [job])
        return lambda: job_public(job, datasets).model_dump(mode="json"), f"/v1/jobs/{job.id}"

    content = body.model_dump(mode="json") if idempotency_key is not None else None
    return create_once(session, settings, owner, f"POST /v1/jobs/{job_id}/continue", idempotency_key, content, create)


FILTER_HELP = (
    "terms joined by `and`: `params.<spec path>`, `metrics.<name>`, `tags.<key>` or `status`, compared (= != < <= > >=)"
    " with a 'string' or a number, or `in ('a', 'b')`; e.g. `params.optimizer.lr > 0.01 and metrics.val_loss < 0.2`"
)
SortOrder = Literal[
    "-created_at", "created_at", "loss", "-loss", "val_loss", "-val_loss", "val_accuracy", "-val_accuracy"
]


@router.get("", response_model=JobPage)
def list_jobs(
    session: SessionDep,
    owner: OwnerDep,
    settings: SettingsDep,
    status: StatusFilter | None = None,
    name: Annotated[str | None, Query(max_length=200, description="a part of the name, any case")] = None,
    tag: Annotated[
        list[str] | None, Query(description="key:value, or key for any value; repeat for all of several")
    ] = None,
    sweep_id: Annotated[str | None, Query(max_length=32)] = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    sort: Annotated[SortOrder, Query(description="`-` first: descending; metrics of the kept weights, none last")] = (
        "-created_at"
    ),
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
    limit: Annotated[int, Query(ge=1, le=LIMITS.max_page_size)] = 50,
    filter_: Annotated[str | None, Query(alias="filter", max_length=MAX_FILTER_CHARS, description=FILTER_HELP)] = None,
):
    """The owner's jobs, filtered and sorted; pages continue with `next_cursor` (it carries the sort)."""
    where = JobFilter(
        status=status, name=name, tags=job_service.parse_tag_filters(tag or [], settings), sweep_id=sweep_id,
        created_after=as_utc(created_after), created_before=as_utc(created_before), sort=sort,
        terms=job_service.parse_job_filter(filter_) if filter_ is not None else [],
    )
    return job_service.list_jobs(session, owner, where, cursor, limit)


@router.patch("/{job_id}", response_model=JobPublic)
def update_job(job_id: str, body: JobUpdate, session: SessionDep, owner: OwnerDep, settings: SettingsDep):
    """Rename, and set or remove tags (`{"tags": {"k": null}}` removes k); nothing else may change (422)."""
    return job_service.public_job(session, job_service.update_job(session, job_id, owner, body, settings))


def as_utc(moment: datetime | None) -> datetime | None:
    """A time without a zone is UTC."""
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


@router.get("/{job_id}", response_model=JobPublic)
async def get_job(job_id: str, request: Request, session: SessionDep, owner: OwnerDep, wait: WaitSeconds = 0):
    """With `wait`, a long-poll: one of the owner's watchers (FITSERVE_MAX_WATCHERS_PER_OWNER, 429 past it)."""
    read = partial(read_job_and_commit, session, job_id, owner)
    return await run_in_threadpool(read) if wait == 0 else await long_poll(request, owner, wait, read)


def read_job_and_commit(session: Session, job_id: str, owner: str | None) -> JobPublic:
    """The job, the request's transaction ended in the same thread hop: its connection never waits for a thread.

    (With every thread blocked on a busy pool, a connection held until a later hop would never come back.)
    """
    job = job_service.public_job(session, job_service.get_job(session, job_id, owner))
    session.commit()
    return job


@router.post("/{job_id}/cancel", response_model=JobPublic)
def cancel_job(job_id: str, session: SessionDep, owner: OwnerDep):
    return job_service.public_job(session, job_service.cancel_job(session, job_id, owner))


@router.delete("/{job_id}", status_code=204, response_class=Response)
def delete_job(job_id: str, session: SessionDep, owner: OwnerDep, cache: ModelCacheDep):
    """The job and its curve, weights, checkpoint and alias; a running one stops at its next report (README)."""
    cache.forget(lifecycle.delete_job(session, job_id, owner))
    return Response(status_code=204)


@router.put("/{job_id}/alias", response_model=JobPublic)
def set_alias(job_id: str, body: AliasUpdate, session: SessionDep, owner: OwnerDep):
    """Name the job's model for the v2 protocol: `/v2/models/{alias}` then answers for it. An alias that names
    another job is 409, or with `"move": true` moves here in one step (`/v2` never misses it meanwhile)."""
    return job_service.public_job(session, job_service.set_alias(session, job_id, owner, body.alias, body.move))


@router.delete("/{job_id}/alias", response_model=JobPublic)
def remove_alias(job_id: str, session: SessionDep, owner: OwnerDep):
    return job_service.public_job(session, job_service.set_alias(session, job_id, owner, None))


@router.get("/{job_id}/metrics", response_model=MetricsPage)
def get_metrics(
    job_id: str,
    session: SessionDep,
    owner: OwnerDep,
    settings: SettingsDep,
    since_step: SinceStep = 0,
    max_points: Annotated[
        int | None, Query(ge=1, le=100_000, description="downsample: this many evenly spaced points (at most a page)")
    ] = None,
):
    """Pages of consecutive points (`FITSERVE_CURVE_PAGE_POINTS` each, fewer if FITSERVE_MAX_RESPONSE_BYTES would
    not hold them), or `max_points` evenly spaced ones."""
    page_points = min(settings.CURVE_PAGE_POINTS, settings.MAX_RESPONSE_BYTES // POINT_JSON_BYTES)
    return job_service.read_metrics(session, job_id, owner, since_step, max_points, page_points)


@router.get("/{job_id}/metrics.png", response_class=Response, responses={200: {"content": {"image/png": {}}}})
def get_metrics_png(
    job_id: str,
    session: SessionDep,
    owner: OwnerDep,
    settings: SettingsDep,
    max_points: Annotated[int, Query(ge=2, le=100_000)] = 2000,
):
    page = job_service.read_metrics(session, job_id, owner, 0, max_points, settings.CURVE_PAGE_POINTS)
    job = job_service.get_job(session, job_id, owner)
    return Response(draw_curve(job.name or job.id, page.points), media_type="image/png")


@router.get("/{job_id}/weights", response_class=Response)
def get_weights(job_id: str, session: SessionDep, owner: OwnerDep):
    blob = job_service.read_weights(session, job_id, owner)
    headers = {"Content-Disposition": f'attachment; filename="{job_id}.safetensors"'}
    return Response(blob, media_type="application/octet-stream", headers=headers)


@router.post("/{job_id}/evaluate")
def evaluate(job_id: str, body: EvaluateRequest, session: SessionDep, owner: OwnerDep, cache: ModelCacheDep):
    """The measures of the job's `evaluation` on `{"x", "y"}` or `{"dataset_id"}`; limits as for /predict."""
    return evaluation.evaluate(session, cache, job_id, owner, body, AnswerLimits.of(get_settings()))


@router.post("/{job_id}/predict", response_model=PredictResponse, response_model_exclude_none=True)
async def predict(job_id: str, body: PredictRequest, owner: OwnerDep, cache: ModelCacheDep):
    """413 when the rows' forward pass would need more than FITSERVE_MAX_PREDICT_BYTES, or their answer more than
    FITSERVE_MAX_RESPONSE_BYTES (the detail says how many rows fit)."""
    # the settings object itself, not SettingsDep: a sync dependency would cost the quick path a thread hop
    model, limits = cache.find(job_id, owner), AnswerLimits.of(get_settings())
    if model is not None and len(body.inputs) <= model.quick_rows:  # a few multiply-adds: no hop to a thread
        answer = predictions.predict_loaded(model, body.inputs, limits)
    else:
        answer = await run_in_threadpool(predictions.predict, cache, job_id, owner, body.inputs, limits)
    # lists of numbers in PredictResponse's shape: serialized as is, not validated again (run_network refuses
    # an answer that is not finite, so inf_nan_mode is a guard)
    return Response(to_json(answer, inf_nan_mode="null"), media_type="application/json")
