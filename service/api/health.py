"""Liveness and readiness.

/healthz: the process answers (a liveness probe: restart the process when it fails).
/readyz: the process can get work done (a readiness probe: send it no traffic while it fails): the
database answers, and, where this API runs a pool, a worker heartbeats; queued work older than
READY_QUEUE_SECONDS with no live worker to take it fails it too.
"""

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from service.db import get_engine, session_scope
from service.services.workers import unready_reason
from service.settings import get_settings

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz():
    return {"status": "ok"}


@router.get("/readyz")
def readyz():
    try:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1 FROM jobs LIMIT 1"))
        with session_scope(read_only=True) as s:
            reason = unready_reason(s, get_settings())
    except Exception as exc:  # any failure to reach the schema means not ready
        return JSONResponse({"status": "unavailable", "detail": f"database: {str(exc)[:200]}"}, status_code=503)
    if reason is not None:
        return JSONResponse({"status": "unavailable", "detail": reason}, status_code=503)
    return {"status": "ready"}
