"""Open Inference Protocol v2 (KServe / Triton REST): existing inference clients query trained jobs unchanged.

A model's name is its job id. Errors answer `{"error": "..."}` as the protocol says, not `{"detail": ...}`.
"""

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import ValidationError

from service.api import health
from service.api.deps import ModelCacheDep, OwnerDep, SettingsDep
from service.errors import FitserveError, InvalidField
from service.schemas.v2 import InferRequest, InferResponse, ModelMetadata, ModelReady, ServerMetadata, V2Error
from service.services import open_inference


def error_message(detail: Any) -> str:
    """One line from a `detail`: a string as is, a list of field errors as `field: message; ...`."""
    if isinstance(detail, str):
        return detail
    return "; ".join(".".join(str(p) for p in e["loc"][1:] or e["loc"]) + f": {e['msg']}" for e in detail)


def v2_error(status_code: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status_code)


class V2Route(APIRoute):
    """Answers errors in v2's shape; bad requests are 400 (not 422) as the protocol's clients expect."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def v2_handler(request: Request) -> Response:
            if "inference-header-content-length" in request.headers:
                return v2_error(400, "binary tensor data is not supported; send JSON tensors (binary_data=False)")
            try:
                return await handler(request)
            except RequestValidationError as exc:
                return v2_error(400, error_message(exc.errors()))
            except FitserveError as exc:
                status = 400 if isinstance(exc, InvalidField) else exc.status_code
                return v2_error(status, error_message(exc.detail))

        return v2_handler


async def read_infer_request(request: Request) -> InferRequest:
    """The body as JSON whatever its content type: Triton's client does not say it sends JSON."""
    try:
        return InferRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None


InferBody = Annotated[InferRequest, Depends(read_infer_request)]
V2_ERRORS: dict[int | str, dict] = {
    code: {"model": V2Error, "description": what}
    for code, what in [
        (400, "a malformed request"),
        (401, "a missing or bad API key"),
        (404, "no such model for this owner"),
        (409, "the model is not trained yet"),
        (413, "the request body is too large, or its forward pass would exceed FITSERVE_MAX_PREDICT_BYTES"),
        (429, "rate limit reached"),
    ]
}
router = APIRouter(
    prefix="/v2", tags=["open inference protocol v2"], route_class=V2Route, responses=V2_ERRORS
)


@router.get("", response_model=ServerMetadata)
def server_metadata():
    return ServerMetadata(name="fitserve", version="0.1.0", extensions=[])


@router.get("/health/live")
def live():
    return {"live": True}


@router.get("/health/ready")
def ready():
    if isinstance(health.readyz(), JSONResponse):  # readyz answers a 503 response when the database is not there
        return v2_error(503, "the database is not reachable")
    return {"ready": True}


@router.get("/models/{name}", response_model=ModelMetadata)
async def model_metadata(name: str, owner: OwnerDep, cache: ModelCacheDep):
    return await run_in_threadpool(open_inference.model_metadata, cache, name, owner)


@router.get("/models/{name}/ready", response_model=ModelReady)
async def model_ready(name: str, owner: OwnerDep, cache: ModelCacheDep):
    """200 when the job has succeeded (its network loads); 404 or 409 (not ready) otherwise."""
    await run_in_threadpool(open_inference.job_id_for, cache, name, owner)
    return ModelReady(name=name, ready=True)


@router.post("/models/{name}/infer", response_model=InferResponse, response_model_exclude_none=True)
async def infer(name: str, body: InferBody, owner: OwnerDep, cache: ModelCacheDep, settings: SettingsDep):
    return await run_in_threadpool(open_inference.infer, cache, name, owner, body, settings.MAX_PREDICT_BYTES)
