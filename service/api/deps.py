"""Dependencies the routers share, as `Annotated` aliases."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from service.db import session_scope
from service.schemas.jobs import ErrorResponse
from service.services.auth import Unauthorized
from service.services.predictions import ModelCache
from service.settings import Settings, get_settings

bearer = HTTPBearer(auto_error=False, description="an API key made with `fitserve keys create`")


def get_session(request: Request) -> Iterator[Session]:
    """One session per request: committed when the endpoint returns (before the response is sent).

    GET requests only read, so theirs never takes SQLite's write lock.
    """
    with session_scope(read_only=request.method == "GET") as session:
        yield session


async def auth_required(request: Request, settings: Settings) -> bool:
    if settings.AUTH != "auto":
        return settings.AUTH == "required"
    verifier = request.app.state.key_verifier
    exists = verifier.cached_keys_exist()
    return await run_in_threadpool(verifier.keys_exist) if exists is None else exists


async def get_owner(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str | None:
    """The caller's owner id (None: the anonymous local owner, while keys are not required).

    Every request also takes a token from its caller's rate-limit bucket. Async, and off the event
    loop only for a database read (a key not checked in the last few seconds): a thread hop for
    every request costs more than the rest of this dependency.
    """
    verifier = request.app.state.key_verifier
    if credentials is not None:
        owner = verifier.cached_owner_of(credentials.credentials)
        if owner is None:
            owner = await run_in_threadpool(verifier.owner_of, credentials.credentials)
    elif await auth_required(request, get_settings()):
        raise Unauthorized("an API key is required: send `Authorization: Bearer <key>`")
    else:
        owner = None
    caller = owner if owner is not None else f"anonymous@{request.client.host if request.client else '-'}"
    request.app.state.rate_limiter.take(caller)
    return owner


async def get_model_cache(request: Request) -> ModelCache:
    return request.app.state.model_cache


_error = {"model": ErrorResponse}
# what any /v1 endpoint may answer besides its own codes, so the OpenAPI document says so
ERROR_RESPONSES: dict[int | str, dict] = {
    400: {**_error, "description": "the body could not be parsed (not JSON, or broken multipart)"},
    401: {**_error, "description": "a missing, malformed or revoked API key"},
    404: {**_error, "description": "no such resource for this owner"},
    409: {**_error, "description": "the resource is not in a state that allows this"},
    413: {**_error, "description": "the request body is too large"},
    422: {**_error, "description": "a field is invalid; `detail` names it"},
    429: {**_error, "description": "rate or queue limit reached; see Retry-After"},
}

SessionDep = Annotated[Session, Depends(get_session, scope="function")]
OwnerDep = Annotated[str | None, Depends(get_owner)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ModelCacheDep = Annotated[ModelCache, Depends(get_model_cache)]
