"""/v1/workers: the worker registry."""

from fastapi import APIRouter

from fitserve.schemas import WorkerList
from service.api.deps import ERROR_RESPONSES, OwnerDep, SessionDep, SettingsDep
from service.services import workers as worker_service

router = APIRouter(prefix="/v1/workers", tags=["workers"], responses=ERROR_RESPONSES)


@router.get("", response_model=WorkerList)
def list_workers(session: SessionDep, owner: OwnerDep, settings: SettingsDep):
    """Workers that heartbeated within a lease, oldest first; job ids only of the caller's own jobs."""
    return worker_service.list_workers(session, owner, settings)
