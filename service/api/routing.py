"""The route class of the /v1 routers: a large JSON body is parsed off the event loop."""

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from service.api.intake import INLINE_SCAN_BYTES, is_json

BODY_METHODS = {"POST", "PUT", "PATCH"}


class OffLoopJSONRoute(APIRoute):
    """Parses a JSON body over INLINE_SCAN_BYTES in a thread: megabytes of numbers take a quarter of a second.

    FastAPI reads the body through Starlette's `request.json()`, which keeps what it parsed in `_json`;
    a body that does not parse is left to FastAPI, which answers its usual error.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def parse_then_handle(request: Request) -> Response:
            if request.method in BODY_METHODS and is_json(request.headers):
                body = await request.body()
                if len(body) > INLINE_SCAN_BYTES:
                    try:
                        request._json = await run_in_threadpool(json.loads, body)
                    except ValueError:
                        pass
            return await handler(request)

        return parse_then_handle
