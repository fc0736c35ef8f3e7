"""Dependencies the routers share, as `Annotated` aliases."""

from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from service.api.intake import OWNER_KEY, client_address
from service.db import get_sessionmaker
from service.schemas.jobs import ErrorResponse
from service.services.predictions import ModelCache
from service.settings import Settings, get_settings

bearer = HTTPBearer(
    auto_error=False,
    description="an API key made with `fitserve keys create`. FITSERVE_AUTH=required: always needed; auto (the "
    "default): needed once any key exists or when serving beyond loopback; off: never. The document lists `{}` "
    "(no key) beside it unless FITSERVE_AUTH=required.",
)


async def get_session(request: Request) -> AsyncIterator[Session]:
    """One session per request: committed when the endpoint returns (before the response is sent), or rolled
    back if it raised.

    GET requests only read, so theirs never takes SQLite's write lock. Opening a session does no I/O, so it
    happens on the event loop; so does closing one with no transaction left (an endpoint that committed its
    own work, as the creating POSTs do). Only a commit or rollback still to do goes to a worker thread:
    each thread hop costs a request about as much as its database work.
    """
    session = get_sessionmaker(read_only=request.method == "GET")()
    try:
        yield session
    except BaseException:
        with anyio.CancelScope(shield=True):
            await run_in_threadpool(end_session, session, False)
        raise
    if session.in_transaction():
        with anyio.CancelScope(shield=True):
            await run_in_threadpool(end_session, session, True)
    else:
        session.close()


def end_session(session: Session, commit: bool) -> None:
    try:
        if commit:
            session.commit()
        else:
            session.rollback()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


async def get_settings_now() -> Settings:
    """The settings, read on the event loop: a plain function would be run in a worker thread."""
    return get_settings()


async def get_owner(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str | None:
    """The caller's owner id (None: the anonymous local owner, while keys are not required).

    The intake middleware has already authenticated every request under its prefixes (before the body
    was read) and left the owner in the scope; any other route that needs an owner authenticates here,
    the same way. `credentials` is declared so the OpenAPI document shows the bearer scheme.
    """
    if OWNER_KEY in request.scope:
        return request.scope[OWNER_KEY]
    authenticator = request.app.state.authenticator
    return await authenticator.authenticate(request.headers.get("authorization"), client_address(request.scope))


async def get_model_cache(request: Request) -> ModelCache:
    return request.app.state.model_cache


_error = {"model": ErrorResponse}
# what any /v1 endpoint may answer besides its own codes, so the OpenAPI document says so
ERROR_RESPONSES: dict[int | str, dict] = {
    400: {**_error, "description": "the body could not be parsed (not JSON, or broken multipart)"},
    401: {**_error, "description": "a missing, malformed or revoked API key"},
    403: {**_error, "description": "the owner's storage budget is spent (FITSERVE_MAX_STORED_BYTES_PER_OWNER)"},
    404: {**_error, "description": "no such resource for this owner"},
    409: {**_error, "description": "the resource is not in a state that allows this"},
    413: {**_error, "description": "the request body is too large"},
    422: {**_error, "description": "a field is invalid; `detail` names it"},
    429: {**_error, "description": "rate or queue limit reached; see Retry-After"},
    503: {**_error, "description": "no database connection came free in time, or the database is corrupt (`detail` "
          "says which, and how to restore it)"},
    507: {**_error, "description": "the database's disk is full: nothing can be written until space is freed "
          "(reads go on; DELETE frees space where the database can still log it)"},
}

SessionDep = Annotated[Session, Depends(get_session, scope="function")]
OwnerDep = Annotated[str | None, Depends(get_owner)]
SettingsDep = Annotated[Settings, Depends(get_settings_now)]
ModelCacheDep = Annotated[ModelCache, Depends(get_model_cache)]
