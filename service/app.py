"""The FastAPI application factory."""

from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic_core import to_json

from service.api import dashboard, datasets, events, exports, health, jobs, prometheus, sweeps, v2, workers
from service.api import docs
from service.api import aliases, usage, webhooks
from service.api.intake import Authenticator, RequestIntake
from service.api.prometheus import HttpMetrics
from service.api.limits import FailedAuthLimiter, RateLimiter, UploadSlots, give_back_memory
from service.db_faults import DATABASE_ERRORS, answer_for
from service.errors import FitserveError
from service.services.auth import KeyVerifier
from service.services.deliveries import Deliverer
from service.services.inference_stats import InferenceStats
from service.services.predictions import ModelCache
from service.services.rescue import Maintainer
from service.services.watchers import Watchers
from service.settings import get_settings


async def handle_fitserve_error(_request: Request, exc: FitserveError) -> JSONResponse:
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def handle_memory_error(_request: Request, exc: MemoryError) -> JSONResponse:
    """Out of memory while serving one request: refuse it (413) and give the memory back, never a 500."""
    give_back_memory(exc)
    detail = "the request needs more memory than the server can give it; send less (see README, Limits)"
    return JSONResponse({"detail": detail}, status_code=413)


async def handle_validation_error(_request: Request, exc: RequestValidationError) -> Response:
    """FastAPI's 422, except that a NaN or Infinity echoed as `input` is a string: JSON has no such numbers."""
    body = to_json({"detail": exc.errors()}, inf_nan_mode="strings", serialize_unknown=True)
    return Response(body, status_code=422, media_type="application/json")


async def handle_database_error(request: Request, exc: Exception) -> JSONResponse:
    """No connection free in time (503), a full disk (507) or a corrupt database (503) says so and what to do; any
    other database error stays a 500."""
    answer = answer_for(exc)
    if answer is None:
        raise exc
    return await handle_fitserve_error(request, answer)


@asynccontextmanager
async def lifespan(app: FastAPI):
    """The API sweeps too: a job whose worker and pool are gone is rescued with no worker's help. It also sends
    webhooks, on a thread of their own: a slow receiver delays neither the maintenance nor a worker."""
    maintainer, deliverer = Maintainer(get_settings()).start(), Deliverer(get_settings()).start()
    yield
    deliverer.stop()
    maintainer.stop()


def create_app() -> FastAPI:
    settings = get_settings()
    app = FastAPI(
        title="fitserve",
        summary="Train small PyTorch models over HTTP: submit, poll, plot, predict.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # served by service/api/docs.py from the package's own files, not a CDN
        redoc_url=None,
    )
    app.state.model_cache = ModelCache(settings.MODEL_CACHE_BYTES)
    app.state.inference_stats = InferenceStats()
    app.state.key_verifier = KeyVerifier(settings.KEY_CACHE_SECONDS)
    app.state.watchers = Watchers(settings)
    rates = RateLimiter(settings.RATE_LIMIT_PER_SECOND, settings.RATE_LIMIT_BURST)
    failures = FailedAuthLimiter(settings.AUTH_FAILURES_PER_WINDOW, settings.AUTH_FAILURE_WINDOW_SECONDS)
    app.state.authenticator = Authenticator(settings, app.state.key_verifier, rates, failures)
    uploads = UploadSlots(settings.MAX_UPLOADS_PER_OWNER)
    app.add_middleware(RequestIntake, authenticator=app.state.authenticator, upload_slots=uploads, settings=settings)
    app.add_middleware(v2.ProtocolErrors)  # outside the intake: its refusals under /v2 too answer {"error": ...}
    app.add_middleware(HttpMetrics)  # added last, so outermost: it also counts what the intake refuses
    app.add_exception_handler(FitserveError, handle_fitserve_error)
    for error in DATABASE_ERRORS:
        app.add_exception_handler(error, handle_database_error)
    app.add_exception_handler(MemoryError, handle_memory_error)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(aliases.router)
    app.include_router(datasets.router)
    app.include_router(sweeps.router)
    app.include_router(usage.router)
    app.include_router(webhooks.router)
    app.include_router(workers.router)
    app.include_router(events.router)
    app.include_router(exports.router)
    app.include_router(v2.router)
    app.include_router(prometheus.router)
    app.include_router(dashboard.router)
    app.include_router(docs.router)
    docs.install_openapi(app, settings)
    return app
