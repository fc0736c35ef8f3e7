"""GET /v1/jobs/{id}/events: a job's status changes and new curve points as Server-Sent Events.

A reconnect (Last-Event-ID) to a finished job whose closing event the client has seen is answered 204 No
Content, which the WHATWG EventSource standard makes the end of reconnecting.

Streams and long-polls (`GET /v1/jobs/{id}?wait=`) are watchers: each takes a slot under the caps
FITSERVE_MAX_WATCHERS_PER_OWNER and FITSERVE_MAX_WATCHERS (429 past them), given back when it ends or
its client goes away.
"""

import re
from collections.abc import Callable
from typing import Annotated

import anyio
from fastapi import APIRouter, Header, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from fitserve.schemas import JobPublic
from service.api.deps import ERROR_RESPONSES, OwnerDep, SessionDep
from service.errors import InvalidField
from service.models import JobStatus
from service.schemas.limits import LIMITS
from service.services import events
from service.services import jobs as job_service
from service.services.watchers import Watchers

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=ERROR_RESPONSES)
EVENT_STREAM = "text/event-stream"
EVENT_ID = re.compile(r"[0-9]{1,10}")  # ASCII digits only: str.isdigit() also takes '²', which int() refuses


def parse_event_id(last_event_id: str | None) -> int:
    if last_event_id is None:
        return 0
    # one past the last step: a final job's closing event (the stream clamps it before SQL compares it with
    # INTEGER step columns, which PostgreSQL refuses past LIMITS.max_step: a 500)
    if not EVENT_ID.fullmatch(last_event_id) or int(last_event_id) > LIMITS.max_step + 1:
        raise InvalidField(
            ("Last-Event-ID",),
            f"must be an event id this stream sent: from 0 to {LIMITS.max_step + 1}",
            where="header",
        )
    return int(last_event_id)


def watchers_of(request: Request) -> Watchers:
    return request.app.state.watchers


def caller_of(request: Request, owner: str | None) -> str:
    """Whom a watcher counts against: its owner, or its address while keys are not required."""
    return owner if owner is not None else f"anonymous@{request.client.host if request.client else '-'}"


async def until_disconnected(request: Request) -> None:
    """Returns once the client has gone (a GET's body, if any, is read and dropped meanwhile)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def long_poll(request: Request, owner: str | None, seconds: float, read: Callable[[], JobPublic]) -> JobPublic:
    """The job `read` returns, once it changes or after `seconds`; cut short if the client goes away.

    The watcher's slot is taken before `read` (a refusal costs no database work) and held until the answer;
    a final job, which never changes, is answered at once.
    """
    watchers = watchers_of(request)
    slot = watchers.caps.take(caller_of(request, owner))
    try:
        answer = first = await run_in_threadpool(read)
        if JobStatus(first.status).is_final:
            return first
        async with anyio.create_task_group() as tasks:

            async def wait() -> None:
                nonlocal answer
                answer = await events.wait_for_change(first, owner, seconds, watchers)
                tasks.cancel_scope.cancel()

            tasks.start_soon(wait)
            await until_disconnected(request)
            tasks.cancel_scope.cancel()
        return answer
    finally:
        slot.release()


def check_job(session: Session, job_id: str, owner: str | None) -> JobPublic:
    """The job, 404 unless it is the owner's; then the request's transaction ends, in the same thread hop."""
    job = job_service.public_job(session, job_service.get_job(session, job_id, owner))
    session.commit()
    return job


STREAM_RESPONSES: dict[int | str, dict] = {
    200: {"content": {EVENT_STREAM: {}}, "description": "the job's events, from a `status` event to its closing one"},
    204: {"description": "the client has seen the whole stream of this finished job: an EventSource stops here"},
}


@router.get("/{job_id}/events", response_class=StreamingResponse, responses=STREAM_RESPONSES)
async def job_events(
    job_id: str,
    request: Request,
    session: SessionDep,
    owner: OwnerDep,
    last_event_id: Annotated[
        str | None, Header(description="resume after this event id: a step, or a finished job's closing id")
    ] = None,
):
    after_step = parse_event_id(last_event_id)
    watchers = watchers_of(request)
    slot = watchers.caps.take(caller_of(request, owner))  # before any database work: a refusal costs nothing
    try:
        # a missing job is a 404 before the stream starts; the stream itself holds no connection
        job = await run_in_threadpool(check_job, session, job_id, owner)
    except BaseException:
        slot.release()
        raise
    if events.has_ended(job, after_step):
        # what the EventSource standard gives a server to stop a client reconnecting: 204 No Content
        slot.release()
        return Response(status_code=204)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    stream = events.job_events(job_id, owner, after_step, watchers, slot)
    return StreamingResponse(stream, media_type=EVENT_STREAM, headers=headers)
