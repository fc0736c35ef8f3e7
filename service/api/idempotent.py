"""Creating endpoints that honour an Idempotency-Key header."""

from collections.abc import Callable
from typing import Annotated

from fastapi import Header
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from service.services import idempotency
from service.settings import Settings

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(alias="Idempotency-Key", min_length=1, max_length=255, description="retries with the same key create nothing new"),
]


def create_once(
    session: Session,
    settings: Settings,
    owner: str | None,
    scope: str,
    key: str | None,
    content,
    create: Callable[[], tuple[dict | Callable[[], dict], str]],
) -> JSONResponse:
    """201 with what `create` made; with a key, the first response again for every retry.

    `create` gives the body, or a function that renders it without the database: that runs after the commit
    (unless the key must store the body), so the write lock is not held while it runs.
    """
    if key is not None:
        print_ = idempotency.fingerprint(content)
        replay = idempotency.claim(owner, scope, key, print_, settings.IDEMPOTENCY_TTL_SECONDS)
        if replay is not None:
            headers = {"Location": replay.location, "Idempotent-Replayed": "true"} if replay.location else None
            return JSONResponse(replay.body, status_code=replay.status_code, headers=headers)
    try:
        body, location = create()
        if key is not None:
            body = body() if callable(body) else body
            idempotency.complete(session, owner, scope, key, 201, body, location)
        # commit here, in the endpoint's thread: the write lock is let go now, not after a hop back through the
        # event loop to the session's clean-up (under concurrent submitters that hop was most of a POST's hold)
        session.commit()
    except BaseException:
        if key is not None:
            session.rollback()  # let go of the write lock before freeing the key in a session of its own
            idempotency.release(owner, scope, key)
        raise
    return JSONResponse(body() if callable(body) else body, status_code=201, headers={"Location": location})
