"""Request limits: body size on the bytes received, and a token bucket per caller."""

import threading
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fastapi import HTTPException

from service.errors import TooManyRequests


class BodySizeLimit:
    """413 for a body over `max_bytes`: at once for a declared length, else as soon as the bytes exceed it."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self.reject(send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # raised where the app reads the body; FastAPI passes an HTTPException through as 413
                    raise HTTPException(413, f"the request body exceeds {self.max_bytes} bytes")
            return message

        await self.app(scope, counting_receive, send)

    async def reject(self, send: Send) -> None:
        body = b'{"detail":"the request body exceeds %d bytes"}' % self.max_bytes
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class RateLimiter:
    """A token bucket per caller: `rate` requests a second, `burst` at once."""

    def __init__(self, rate: float, burst: int):
        self.rate, self.burst = rate, burst
        self.buckets: dict[str, tuple[float, float]] = {}  # caller -> (tokens, at)
        self.lock = threading.Lock()

    def take(self, caller: str) -> None:
        now = time.monotonic()
        with self.lock:
            tokens, at = self.buckets.get(caller, (float(self.burst), now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            if tokens < 1:
                self.buckets[caller] = (tokens, now)
                raise TooManyRequests("rate limit exceeded; slow down", (1 - tokens) / self.rate)
            self.buckets[caller] = (tokens - 1, now)
