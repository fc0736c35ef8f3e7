"""/v1/aliases: which job an alias names, and which it named before (aliases are set on jobs: PUT /v1/jobs/{id}/alias)."""

from typing import Annotated

from fastapi import APIRouter, Path, Query

from service.api.deps import ERROR_RESPONSES, OwnerDep, SessionDep
from service.schemas.jobs import ALIAS_PATTERN, AliasPublic
from service.schemas.limits import LIMITS
from service.services import jobs as job_service

router = APIRouter(prefix="/v1/aliases", tags=["jobs"], responses=ERROR_RESPONSES)


@router.get("/{alias}", response_model=AliasPublic)
def get_alias(
    alias: Annotated[str, Path(pattern=ALIAS_PATTERN)],
    session: SessionDep,
    owner: OwnerDep,
    limit: Annotated[int, Query(ge=1, le=LIMITS.max_page_size)] = 50,
):
    """The job the alias names now and its `limit` latest assignments, newest first."""
    return job_service.alias_history(session, alias, owner, limit)
