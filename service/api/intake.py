"""What a request goes through before the app reads its body: its key, its size (inflated, if compressed), its JSON
nesting.

A pure ASGI middleware, so a caller without a valid key, or over a limit, is answered before one byte
of the body is read: a large body costs the server nothing it has not been asked for by a known owner.
"""

import asyncio
import json
import re
from contextlib import ExitStack

import anyio
import numpy as np
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.content_encoding import as_plain_body, content_encoding, http_errors, inflating_receive
from service.api.limits import FailedAuthLimiter, RateLimiter, UploadSlots
from service.db_faults import DATABASE_ERRORS, answer_for
from service.errors import FitserveError, InvalidField, PayloadTooLarge, RequestTimeout, UnsupportedMediaType
from service.services.auth import KeyVerifier, Unauthorized
from service.settings import Settings

# every route under these takes an owner; the others (probes, /metrics, the dashboard, /v2 metadata) do not
AUTHENTICATED_PREFIXES = ("/v1/", "/v2/models/", "/v2/repository/")
UPLOAD_ROUTES = {("POST", "/v1/datasets")}
OWNER_KEY = "fitserve.owner"  # the scope key the middleware leaves the caller's owner id under
INLINE_SCAN_BYTES = 64 * 1024  # smaller bodies are scanned on the event loop: a thread hop costs more
JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")  # a surrogate's escape: a pair (fine) or a lone one (not text)
OPENERS, CLOSERS = np.frombuffer(b"[{", np.uint8), np.frombuffer(b"]}", np.uint8)


class Authenticator:
    """Authorization header -> owner id; the one place that decides whether a key is needed."""

    def __init__(self, settings: Settings, verifier: KeyVerifier, rates: RateLimiter, failures: FailedAuthLimiter):
        self.settings, self.verifier, self.rates, self.failures = settings, verifier, rates, failures

    async def authenticate(self, authorization: str | None, address: str) -> str | None:
        """The owner (None: the anonymous local owner); takes a token from the caller's rate bucket. A failure is
        401, or 429 past FITSERVE_AUTH_FAILURES_PER_WINDOW from its address; a right key is never refused for
        others' failures."""
        try:
            owner = await self.owner_of(bearer_token(authorization))
        except Unauthorized:
            self.failures.refuse_past_limit(address)
            raise
        self.rates.take(owner if owner is not None else f"anonymous@{address}")
        return owner

    async def owner_of(self, token: str | None) -> str | None:
        if token is not None:
            owner = self.verifier.cached_owner_of(token)
            return owner if owner is not None else await run_in_threadpool(self.verifier.owner_of, token)
        if await self.keys_required():
            raise Unauthorized("an API key is required: send `Authorization: Bearer <key>`")
        return None

    async def keys_required(self) -> bool:
        if self.settings.AUTH != "auto":
            return self.settings.AUTH == "required"
        exists = self.verifier.cached_keys_exist()
        return await run_in_threadpool(self.verifier.keys_exist) if exists is None else exists


def bearer_token(authorization: str | None) -> str | None:
    """The token of a `Bearer` Authorization header; None for none or another scheme (as HTTPBearer)."""
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "-"


def json_depth(body: bytes, at_most: int | None = None) -> int:
    """How deep arrays and objects nest in a JSON text (exact for valid JSON; strings are skipped).

    With `at_most`: a text with no more brackets than that (every job spec) is answered with its bracket
    count, a bound on its depth, without the scan.
    """
    if at_most is not None and (opened := body.count(b"[") + body.count(b"{")) <= at_most:
        return opened
    codes = np.frombuffer(JSON_STRING.sub(b"", body), np.uint8)
    steps = np.isin(codes, OPENERS).astype(np.int32) - np.isin(codes, CLOSERS)
    return int(np.cumsum(steps).max(initial=0))


class RequestIntake:
    """Authenticates, then caps the body per route (JSON or upload) and bounds JSON nesting, all before the app.

    An upload holds one of its owner's upload slots from before its body is read until it is answered.
    """

    def __init__(self, app: ASGIApp, authenticator: Authenticator, upload_slots: UploadSlots, settings: Settings):
        self.app, self.authenticator, self.upload_slots, self.settings = app, authenticator, upload_slots, settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        has_body = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
        with ExitStack() as slot:
            try:
                if scope["path"].startswith(AUTHENTICATED_PREFIXES):
                    authorization, address = headers.get("authorization"), client_address(scope)
                    scope[OWNER_KEY] = await self.authenticator.authenticate(authorization, address)
                elif has_body:  # no open route takes one: unread, it cannot hold memory or, sent slowly, the connection
                    raise PayloadTooLarge("this route takes no request body")
                if (scope["method"], scope["path"]) in UPLOAD_ROUTES:
                    slot.enter_context(self.upload_slots.hold(scope[OWNER_KEY]))
                if has_body:
                    check_content_type(scope, headers)
                receive = await self.admit_body(scope, headers, receive) if has_body else receive
            except (FitserveError, *DATABASE_ERRORS) as exc:
                # a key's lookup that met the database's fault answers as a route would (this runs before any)
                error = exc if isinstance(exc, FitserveError) else answer_for(exc)
                if error is None:
                    raise
                # the unread body stays on the socket: close the connection rather than read it
                extra = {"Connection": "close"} if has_body else {}
                response = JSONResponse(
                    {"detail": error.detail}, error.status_code, headers={**(error.headers or {}), **extra}
                )
                await response(scope, receive, send)
                return
            if receive is not None:
                await self.app(scope, receive, send)

    async def admit_body(self, scope: Scope, headers: Headers, receive: Receive) -> Receive | None:
        """The receive the app should read from; None when the client left before sending its body."""
        upload = (scope["method"], scope["path"]) in UPLOAD_ROUTES
        limit, setting = (
            (self.settings.MAX_BODY_BYTES, "FITSERVE_MAX_BODY_BYTES")
            if upload
            else (min(self.settings.MAX_JSON_BYTES, self.settings.MAX_BODY_BYTES), "FITSERVE_MAX_JSON_BYTES")
        )
        encoding = content_encoding(headers)
        inflated = f", inflated from {encoding}," if encoding else ""
        too_large = f"the request body{inflated} exceeds {limit} bytes ({setting})"
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(too_large)
        receive = idle_limited(receive, self.settings.BODY_TIMEOUT_SECONDS)
        if encoding is not None:  # the limit counts inflated bytes; the app sees the body as if sent plain
            receive = inflating_receive(receive, encoding)
        if headers.get("content-type", "").startswith("multipart/"):
            if encoding is not None:
                as_plain_body(scope, None)
            # parsed as a stream, files spooled to disk
            return counting_receive(http_errors(receive), limit, too_large)
        body = await read_body(receive, limit, too_large)
        if body is None:
            return None
        if encoding is not None:
            as_plain_body(scope, len(body))
        if is_json(headers) and body:
            text = json_part(body, headers)
            most = self.settings.MAX_JSON_DEPTH
            depth = (
                json_depth(text, most)
                if len(text) <= INLINE_SCAN_BYTES
                else await anyio.to_thread.run_sync(json_depth, text, most)
            )
            if depth > most:
                raise InvalidField(
                    (),
                    f"the JSON nests {depth} levels deep; at most {self.settings.MAX_JSON_DEPTH} (FITSERVE_MAX_JSON_DEPTH)",
                )
            if SURROGATE_ESCAPE.search(text):  # rare: only then is the body parsed here to find where
                where = await anyio.to_thread.run_sync(lone_surrogate_at, text)
                if where is not None:
                    message = "a lone UTF-16 surrogate escape (\\ud800-\\udfff) is not text: send valid Unicode"
                    raise InvalidField(where, message)
        return replay_receive(body, receive)


def lone_surrogate_at(text: bytes) -> tuple[str | int, ...] | None:
    """Where a JSON text holds a string with a lone surrogate, which no database or encoder can store or send:
    a value's path, or for a key the path of its object; None when none does, or the text is not JSON (the app
    answers that)."""
    try:
        document = json.loads(text)
    except ValueError:
        return None

    def find(node, path: tuple) -> tuple | None:
        if isinstance(node, str):
            return None if node.isascii() or not any("\ud800" <= c <= "\udfff" for c in node) else path
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            if isinstance(key, str) and find(key, ()) is not None:
                return path  # the object whose key it is: the key itself cannot be echoed back
            if (found := find(value, (*path, key))) is not None:
                return found
        return None

    return find(document, ())


def json_part(body: bytes, headers: Headers) -> bytes:
    """The JSON of a body: a v2 binary tensor request's is its first Inference-Header-Content-Length bytes (raw
    tensor bytes, which may hold any byte, follow); a length that does not fit is the v2 route's 400."""
    length = headers.get("inference-header-content-length", "")
    return body[: int(length)] if length.isdigit() else body


def check_content_type(scope: Scope, headers: Headers) -> None:
    """415 for a /v1 body (but an upload) not sent as JSON: FastAPI would read it as bytes, and its validation
    error would echo them whole. /v2 is not checked: it also takes binary tensors."""
    if not scope["path"].startswith("/v1/") or (scope["method"], scope["path"]) in UPLOAD_ROUTES:
        return
    sent = headers.get("content-type")
    if sent is None or not is_json(headers):
        got = "none" if sent is None else repr(sent[:100])
        raise UnsupportedMediaType(f"the body must be JSON: send `Content-Type: application/json` (got {got})")


def is_json(headers: Headers) -> bool:
    content_type = headers.get("content-type", "application/json").split(";")[0].strip().lower()
    return content_type == "application/json" or content_type.endswith("+json")


def idle_limited(receive: Receive, seconds: float) -> Receive:
    """`receive`, refused with 408 once the client has sent no body bytes for `seconds`."""

    async def limited() -> Message:
        try:
            return await asyncio.wait_for(receive(), seconds)
        except TimeoutError:
            raise RequestTimeout(f"no request body bytes arrived for {seconds:g} s (FITSERVE_BODY_TIMEOUT_SECONDS)",
                                 headers={"Connection": "close"}) from None

    return limited


async def read_body(receive: Receive, limit: int, too_large: str) -> bytes | None:
    """The whole body, refused once it passes `limit`; None when the client disconnects first."""
    chunks, received = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        received += len(chunk)
        if received > limit:
            raise PayloadTooLarge(too_large)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def replay_receive(body: bytes, receive: Receive) -> Receive:
    """Hands the app the body already read, then the connection's own messages (a disconnect)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


def counting_receive(receive: Receive, limit: int, too_large: str) -> Receive:
    received = 0

    async def counting() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                # raised where the app reads the body; FastAPI passes an HTTPException through as 413
                raise HTTPException(413, too_large)
        return message

    return counting
