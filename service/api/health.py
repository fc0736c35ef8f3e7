"""Liveness and readiness.

/healthz: the process answers (a liveness probe: restart the process when it fails).
/readyz: the process can get work done (a readiness probe: send it no traffic while it fails): the
database answers, its disk has room (service/db_faults.py) and it is not corrupt, and, where this API runs a pool,
a worker heartbeats; queued work older than READY_QUEUE_SECONDS with no live worker to take it fails it too.
"""

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from service.db import get_engine, session_scope
from service.db_faults import FAULTS, readiness_fault
from service.services.workers import unready_reason
from service.settings import get_settings

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz():
    return {"status": "ok"}


def unready_detail() -> str | None:
    """Why this API cannot get work done now, or None; a fault of the database first, before what it causes."""
    settings = get_settings()
    try:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1 FROM jobs LIMIT 1"))
            fault = readiness_fault(conn, settings.DATABASE_URL)
        with session_scope(read_only=True) as s:
            reason = unready_reason(s, settings)
    except Exception as exc:  # any failure to reach the schema means not ready
        fault = FAULTS.meet(exc)
        return fault.detail if fault is not None else f"database: {str(exc)[:200]}"
    return fault.detail if fault is not None else reason


@router.get("/readyz")
def readyz():
    detail = unready_detail()
    if detail is not None:
        return JSONResponse({"status": "unavailable", "detail": detail}, status_code=503)
    return {"status": "ready"}
