"""Open Inference Protocol v2 (KServe / Triton REST): existing inference clients query trained jobs unchanged.

A model's name is its job id (or its alias); its one version is "1". Every error under /v2 answers the
protocol's `{"error": "..."}`, not `{"detail": ...}`: the route class shapes the routes' own errors, and
`ProtocolErrors` those answered before a route runs (the intake's 401/413/429, routing's 404/405).
"""

import json
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import SkipValidation, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api import health
from service.api.deps import ModelCacheDep, OwnerDep, SettingsDep
from service.api.intake import INLINE_SCAN_BYTES, is_json, json_depth
from service.errors import FitserveError, InvalidField
from service.schemas.v2 import (
    InferRequest,
    InferResponse,
    ModelMetadata,
    ModelReady,
    RepositoryIndexRequest,
    RepositoryModel,
    ServerMetadata,
    V2Error,
)
from service.services import open_inference
from service.services.inference_stats import InferenceStats
from service.services.predictions import AnswerLimits
from service.services.tensors import HEADER, split_body
from service.settings import get_settings

BINARY_TENSORS = "fitserve.v2.binary"  # the scope key of the raw tensor bytes after a binary request's JSON header


def error_message(detail: Any) -> str:
    """One line from a `detail`: a string as is, a list of field errors as `field: message; ...`."""
    if isinstance(detail, str):
        return detail
    if not (isinstance(detail, list) and all(isinstance(e, dict) and {"loc", "msg"} <= set(e) for e in detail)):
        return json.dumps(detail)
    return "; ".join(".".join(str(p) for p in e["loc"][1:] or e["loc"]) + f": {e['msg']}" for e in detail)


def v2_error(status_code: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status_code)


async def as_json_request(request: Request) -> Request:
    """The request as FastAPI should parse it: JSON whatever its content type says (tritonclient sends none),
    and only the JSON header when binary tensors follow it (those wait in the scope for the route)."""
    body = await request.body()
    header_length = request.headers.get(HEADER)
    head, raw = split_body(body, header_length) if header_length is not None else (body, memoryview(b""))
    if not is_json(request.headers):  # the intake bounds the nesting of what says it is JSON; this is JSON too
        check_depth(head)
    headers = [(k, v) for k, v in request.scope["headers"] if k not in (b"content-type", b"content-length")]
    headers += [(b"content-type", b"application/json"), (b"content-length", str(len(head)).encode())]
    pending = [{"type": "http.request", "body": head, "more_body": False}]

    async def receive() -> Message:
        return pending.pop() if pending else await request.receive()

    parsed = Request({**request.scope, "headers": headers, BINARY_TENSORS: raw}, receive)
    if head:
        # FastAPI reads the body through Starlette's `request.json()`, which keeps what it parsed in `_json`:
        # parsed here, a large body off the event loop (megabytes of numbers take a quarter of a second)
        parsed._json = read_json(head) if len(head) <= INLINE_SCAN_BYTES else await run_in_threadpool(read_json, head)
    return parsed


def read_json(text: bytes) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:  # not JSON, or not UTF-8
        raise InvalidField((), f"the body is not JSON: {exc}") from None


def check_depth(text: bytes) -> None:
    limit = get_settings().MAX_JSON_DEPTH
    if (depth := json_depth(text)) > limit:
        raise InvalidField((), f"the JSON nests {depth} levels deep; at most {limit} (FITSERVE_MAX_JSON_DEPTH)")


class V2Route(APIRoute):
    """Answers errors in v2's shape; bad requests are 400 (not 422) as the protocol's clients expect."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def v2_handler(request: Request) -> Response:
            try:
                return await handler(await as_json_request(request) if request.method == "POST" else request)
            except RequestValidationError as exc:
                return v2_error(400, error_message(exc.errors()))
            except FitserveError as exc:
                status = 400 if isinstance(exc, InvalidField) else exc.status_code
                return v2_error(status, error_message(exc.detail))

        return v2_handler


def protocol_error(status: int, body: bytes, path: str) -> tuple[int, bytes]:
    """An error response's status and body in v2's shape; a 422 is the protocol's 400."""
    try:
        content = json.loads(body)
    except ValueError:
        content = body.decode(errors="replace")
    if isinstance(content, dict) and "error" in content:
        return status, body
    detail = content.get("detail", content) if isinstance(content, dict) else content
    message = f"no route {path}" if status == 404 and detail == "Not Found" else error_message(detail)
    return 400 if status == 422 else status, json.dumps({"error": message}).encode()


class ProtocolErrors:
    """Rewrites every error response under /v2 to `{"error": ...}`, whoever answered it (error bodies are small)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == "/v2" or path.startswith("/v2/")):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def send_v2(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and message["status"] >= 400:
                start = message
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            status, body = protocol_error(start["status"], b"".join(chunks), path)
            headers = [(k, v) for k, v in start["headers"] if k.lower() not in (b"content-type", b"content-length")]
            headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({**start, "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, send_v2)


# FastAPI documents the body; it is validated off the event loop (megabytes of numbers take a quarter of a second)
UncheckedInferRequest = Annotated[InferRequest, SkipValidation()]


def validate_infer_request(body: Any) -> InferRequest:
    try:
        return InferRequest.model_validate(body)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None


def known_version(version: str) -> None:
    open_inference.check_version(version)


def get_inference_stats(request: Request) -> InferenceStats:
    return request.app.state.inference_stats


def binary_tensors(request: Request) -> memoryview:
    return request.scope.get(BINARY_TENSORS, memoryview(b""))


Versioned = [Depends(known_version)]
StatsDep = Annotated[InferenceStats, Depends(get_inference_stats)]
BinaryDep = Annotated[memoryview, Depends(binary_tensors)]
V2_ERRORS: dict[int | str, dict] = {
    code: {"model": V2Error, "description": what}
    for code, what in [
        (400, "a malformed request, or a binary tensor whose size does not match its shape"),
        (401, "a missing or bad API key"),
        (404, "no such model (or version) for this owner, or no such route"),
        (405, "a method this route does not take"),
        (409, "the model is not trained yet"),
        (413, "the request body is too large, or its forward pass or answer would exceed FITSERVE_MAX_PREDICT_BYTES "
              "or FITSERVE_MAX_RESPONSE_BYTES"),
        (429, "rate limit reached"),
    ]
}
BINARY_BODY = {
    "requestBody": {
        "description": "JSON; or, with the binary tensor data extension, `Inference-Header-Content-Length` bytes of "
        "JSON followed by each input's raw little-endian bytes (its `parameters.binary_data_size`)",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}
router = APIRouter(
    prefix="/v2", tags=["open inference protocol v2"], route_class=V2Route, responses=V2_ERRORS
)


@router.get("", response_model=ServerMetadata)
@router.get("/", response_model=ServerMetadata, include_in_schema=False)
def server_metadata():
    return ServerMetadata(name="fitserve", version="0.1.0", extensions=["binary_tensor_data", "statistics"])


@router.get("/health/live")
def live():
    return {"live": True}


@router.get("/health/ready")
def ready():
    detail = health.unready_detail()
    if detail is not None:
        return v2_error(503, detail)
    return {"ready": True}


@router.get("/models/stats")
def every_model_stats(owner: OwnerDep, stats: StatsDep):
    """Triton's inference statistics of every model of the owner that this API process has served."""
    return {"model_stats": stats.of_owner(owner)}


@router.get("/models/{name}", response_model=ModelMetadata)
@router.get("/models/{name}/versions/{version}", response_model=ModelMetadata, dependencies=Versioned)
async def model_metadata(name: str, owner: OwnerDep, cache: ModelCacheDep):
    return await run_in_threadpool(open_inference.model_metadata, cache, name, owner)


@router.get("/models/{name}/ready", response_model=ModelReady)
@router.get("/models/{name}/versions/{version}/ready", response_model=ModelReady, dependencies=Versioned)
async def model_ready(name: str, owner: OwnerDep, cache: ModelCacheDep):
    """200 when the job has succeeded (its network loads); 404 or 409 (not ready) otherwise."""
    await run_in_threadpool(open_inference.job_id_for, cache, name, owner)
    return ModelReady(name=name, ready=True)


@router.get("/models/{name}/config")
@router.get("/models/{name}/versions/{version}/config", dependencies=Versioned)
async def model_config(name: str, owner: OwnerDep, cache: ModelCacheDep, settings: SettingsDep) -> dict[str, Any]:
    """Triton's model configuration (tritonclient's `get_model_config`)."""
    return await run_in_threadpool(open_inference.model_config, cache, name, owner, AnswerLimits.of(settings))


@router.get("/models/{name}/stats")
@router.get("/models/{name}/versions/{version}/stats", dependencies=Versioned)
def model_stats(name: str, owner: OwnerDep, stats: StatsDep) -> dict[str, Any]:
    """Triton's inference statistics of one model in this API process (zeros before its first inference)."""
    return {"model_stats": open_inference.model_stats(stats, name, owner)}


@router.post("/repository/index", response_model=list[RepositoryModel])
def repository_index(owner: OwnerDep, settings: SettingsDep, body: Annotated[RepositoryIndexRequest | None, Body()] = None):
    """The owner's newest FITSERVE_MAX_INDEX_MODELS jobs as models (tritonclient's `get_model_repository_index`)."""
    ready_only = body is not None and body.ready
    return open_inference.repository_index(owner, ready_only, settings.MAX_INDEX_MODELS)


@router.post("/models/{name}/infer", response_model=InferResponse, response_model_exclude_none=True,
             openapi_extra=BINARY_BODY)
@router.post("/models/{name}/versions/{version}/infer", response_model=InferResponse,
             response_model_exclude_none=True, openapi_extra=BINARY_BODY, dependencies=Versioned)
async def infer(name: str, body: UncheckedInferRequest, raw: BinaryDep, owner: OwnerDep, cache: ModelCacheDep,
                stats: StatsDep, settings: SettingsDep):
    """JSON tensors, or binary ones (tritonclient's default); binary outputs when asked for (`binary_data`)."""
    request = await run_in_threadpool(validate_infer_request, body)
    answer = await run_in_threadpool(
        open_inference.infer, cache, stats, name, owner, request, raw, AnswerLimits.of(settings)
    )
    if answer.response is not None:
        return answer.response
    headers = {HEADER: str(answer.header_length)}
    return Response(answer.body, media_type="application/octet-stream", headers=headers)
