"""The FastAPI application factory."""

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic_core import to_json

from service.api import dashboard, datasets, events, exports, health, jobs, prometheus, sweeps, v2
from service.api.limits import BodySizeLimit, RateLimiter
from service.errors import FitserveError
from service.services.auth import KeyVerifier
from service.services.predictions import ModelCache
from service.settings import get_settings


async def handle_fitserve_error(_request: Request, exc: FitserveError) -> JSONResponse:
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def handle_validation_error(_request: Request, exc: RequestValidationError) -> Response:
    """FastAPI's 422, except that a NaN or Infinity echoed as `input` is a string: JSON has no such numbers."""
    body = to_json({"detail": exc.errors()}, inf_nan_mode="strings", serialize_unknown=True)
    return Response(body, status_code=422, media_type="application/json")


def create_app() -> FastAPI:
    settings = get_settings()
    app = FastAPI(
        title="fitserve",
        summary="Train small PyTorch models over HTTP: submit, poll, plot, predict.",
        version="0.1.0",
    )
    app.state.model_cache = ModelCache(settings.MODEL_CACHE_BYTES)
    app.state.key_verifier = KeyVerifier()
    app.state.rate_limiter = RateLimiter(settings.RATE_LIMIT_PER_SECOND, settings.RATE_LIMIT_BURST)
    app.add_middleware(BodySizeLimit, max_bytes=settings.MAX_BODY_BYTES)
    app.add_exception_handler(FitserveError, handle_fitserve_error)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(datasets.router)
    app.include_router(sweeps.router)
    app.include_router(events.router)
    app.include_router(exports.router)
    app.include_router(v2.router)
    app.include_router(prometheus.router)
    app.include_router(dashboard.router)
    return app
