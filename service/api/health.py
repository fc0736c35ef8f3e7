"""Liveness and readiness."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from service.db import get_engine

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz():
    return {"status": "ok"}


@router.get("/readyz")
def readyz():
    try:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1 FROM jobs LIMIT 1"))
    except Exception as exc:  # any failure to reach the schema means not ready
        return JSONResponse({"status": "unavailable", "detail": str(exc)[:200]}, status_code=503)
    return {"status": "ready"}
