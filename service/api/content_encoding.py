"""Request bodies sent compressed (`Content-Encoding: gzip` or `deflate`): inflated as they arrive.

Inflated a bounded piece at a time, so the body limits count inflated bytes and a small compressed body that
inflates past them (a zip bomb) is refused having held no more than the limit.
"""

import zlib

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import Message, Receive, Scope

from service.errors import BadRequest, FitserveError, UnsupportedMediaType

ENCODINGS = ("gzip", "x-gzip", "deflate")
PIECE_BYTES = 64 * 1024  # the most one inflated message holds, whatever a compressed chunk inflates to
# zlib's own header check picks gzip or zlib framing (HTTP's "deflate" is zlib-framed, RFC 9110 8.4.1.2)
EITHER_FRAMING = 32 + zlib.MAX_WBITS


def content_encoding(headers: Headers) -> str | None:
    """The body's encoding (None when it is sent as is); 415 naming any encoding not taken."""
    sent = headers.get("content-encoding", "").strip().lower()
    if sent in ("", "identity"):
        return None
    if sent not in ENCODINGS:
        raise UnsupportedMediaType(
            f"Content-Encoding {sent[:100]!r} is not supported: send the body as is, or with gzip or deflate"
        )
    return sent


def as_plain_body(scope: Scope, length: int | None) -> None:
    """Make the scope's headers describe the inflated body: no Content-Encoding, its own Content-Length (none
    when it is streamed)."""
    dropped = (b"content-encoding", b"content-length")
    headers = [(k, v) for k, v in scope["headers"] if k.lower() not in dropped]
    scope["headers"] = headers + ([(b"content-length", str(length).encode())] if length is not None else [])


def inflating_receive(receive: Receive, encoding: str) -> Receive:
    """The connection's messages with their bodies inflated, at most PIECE_BYTES a message; a body that is not
    valid `encoding`, is cut short or runs on past its end is a 400."""
    inflater = zlib.decompressobj(EITHER_FRAMING)
    pending, ended = b"", False  # compressed bytes not inflated yet; whether the client's last chunk arrived
    done = False  # the whole body has been handed on

    async def inflating() -> Message:
        nonlocal pending, ended, done
        if done:  # what follows the body (a disconnect) is the connection's own, awaited as it comes
            return await receive()
        while True:
            if not pending and not ended:
                message = await receive()
                if message["type"] != "http.request":
                    return message
                pending, ended = message.get("body", b""), not message.get("more_body", False)
            try:
                piece = inflater.decompress(pending, PIECE_BYTES)
            except zlib.error as exc:
                raise BadRequest(f"the request body is not valid {encoding} ({exc})") from exc
            pending = inflater.unconsumed_tail
            if inflater.unused_data:
                raise BadRequest(f"the request body runs on past the end of its {encoding} stream")
            if piece:
                return {"type": "http.request", "body": piece, "more_body": True}
            if ended and not pending:  # all of it arrived, and nothing more comes out (zlib may hold some back)
                if not inflater.eof:
                    raise BadRequest(f"the request body's {encoding} stream is cut short")
                done = True
                return {"type": "http.request", "body": b"", "more_body": False}

    return inflating


def http_errors(receive: Receive) -> Receive:
    """`receive` for a body the app reads itself: FastAPI passes an HTTPException through, not our errors."""

    async def receiving() -> Message:
        try:
            return await receive()
        except FitserveError as exc:
            raise HTTPException(exc.status_code, exc.detail, exc.headers) from exc

    return receiving
