"""/v1/usage: what the caller's jobs and datasets use."""

from fastapi import APIRouter

from fitserve.schemas import UsagePublic
from service.api.deps import ERROR_RESPONSES, OwnerDep, SessionDep
from service.services.usage import measure_usage

router = APIRouter(prefix="/v1/usage", tags=["usage"], responses=ERROR_RESPONSES)


@router.get("", response_model=UsagePublic)
def get_usage(session: SessionDep, owner: OwnerDep):
    """The caller's jobs by status, stored bytes (curves, weights, checkpoints, datasets), training seconds."""
    return measure_usage(session, owner)
