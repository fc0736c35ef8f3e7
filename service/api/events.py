"""GET /v1/jobs/{id}/events: a job's status changes and new curve points as Server-Sent Events."""

from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from service.api.deps import ERROR_RESPONSES, OwnerDep, SessionDep
from service.errors import InvalidField
from service.services import events
from service.services import jobs as job_service

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=ERROR_RESPONSES)
EVENT_STREAM = "text/event-stream"


def parse_event_id(last_event_id: str | None) -> int:
    if last_event_id is None:
        return 0
    if not last_event_id.isdigit():
        raise InvalidField(("Last-Event-ID",), "must be an event id this stream sent (a step number)", where="header")
    return int(last_event_id)


@router.get("/{job_id}/events", response_class=StreamingResponse, responses={200: {"content": {EVENT_STREAM: {}}}})
async def job_events(
    job_id: str,
    session: SessionDep,
    owner: OwnerDep,
    last_event_id: Annotated[str | None, Header(description="resume after this event id")] = None,
):
    after_step = parse_event_id(last_event_id)
    # a missing job is a 404 before the stream starts; then the request's transaction ends, since it
    # holds SQLite's write lock and the stream may last as long as the job
    await run_in_threadpool(job_service.get_job, session, job_id, owner)
    await run_in_threadpool(session.commit)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    stream = events.job_events(job_id, owner, after_step)
    return StreamingResponse(stream, media_type=EVENT_STREAM, headers=headers)
