"""/v1/sweeps: submit a search over hyperparameters, read its leaderboard, cancel the rest."""

from typing import Annotated

from fastapi import APIRouter, Query, Response

from service.api.deps import ERROR_RESPONSES, ModelCacheDep, OwnerDep, SessionDep, SettingsDep
from service.api.idempotent import IdempotencyKeyHeader, create_once
from service.api.routing import OffLoopJSONRoute
from service.schemas.limits import LIMITS
from service.schemas.sweeps import SweepCreate, SweepPage, SweepPublic
from service.services import lifecycle
from service.services import sweeps as sweep_service

router = APIRouter(prefix="/v1/sweeps", tags=["sweeps"], responses=ERROR_RESPONSES, route_class=OffLoopJSONRoute)


@router.post("", status_code=201, response_model=SweepPublic)
def submit_sweep(
    request: SweepCreate,
    session: SessionDep,
    owner: OwnerDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKeyHeader = None,
):
    def create() -> tuple[dict, str]:
        sweep = sweep_service.create_sweep(session, request, owner, settings)
        return sweep_service.describe(session, sweep).model_dump(mode="json"), f"/v1/sweeps/{sweep.id}"

    content = request.model_dump(mode="json")
    return create_once(session, settings, owner, "POST /v1/sweeps", idempotency_key, content, create)


@router.get("", response_model=SweepPage)
def list_sweeps(
    session: SessionDep,
    owner: OwnerDep,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=LIMITS.max_page_size)] = 50,
):
    return sweep_service.list_sweeps(session, owner, cursor, limit)


@router.get("/{sweep_id}", response_model=SweepPublic)
def get_sweep(sweep_id: str, session: SessionDep, owner: OwnerDep):
    return sweep_service.describe(session, sweep_service.get_sweep(session, sweep_id, owner))


@router.post("/{sweep_id}/cancel", response_model=SweepPublic)
def cancel_sweep(sweep_id: str, session: SessionDep, owner: OwnerDep):
    return sweep_service.describe(session, sweep_service.cancel_sweep(session, sweep_id, owner))


@router.delete("/{sweep_id}", status_code=204, response_class=Response)
def delete_sweep(sweep_id: str, session: SessionDep, owner: OwnerDep, cache: ModelCacheDep):
    """The sweep and every member, running ones too (they stop at their next report)."""
    cache.forget(lifecycle.delete_sweep(session, sweep_id, owner))
    return Response(status_code=204)
