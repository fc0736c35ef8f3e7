"""Dependencies the routers share, as `Annotated` aliases."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from service.db import session_scope
from service.services.predictions import ModelCache
from service.settings import Settings, get_settings


def get_session() -> Iterator[Session]:
    """One session per request: committed when the endpoint returns, rolled back if it raises."""
    with session_scope() as session:
        yield session


def get_owner() -> str | None:
    """The caller's owner id; None while authentication is off (every job is the same owner's)."""
    return None


def get_model_cache(request: Request) -> ModelCache:
    return request.app.state.model_cache


SessionDep = Annotated[Session, Depends(get_session)]
OwnerDep = Annotated[str | None, Depends(get_owner)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ModelCacheDep = Annotated[ModelCache, Depends(get_model_cache)]
