"""GET /metrics in Prometheus' text format, and the middleware that counts and times every HTTP request."""

import time
from collections.abc import Iterator

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.telemetry import HTTP_REQUESTS, HTTP_SECONDS, REGISTRY

router = APIRouter(tags=["operations"])
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"  # every path no route takes shares one label: scanners cannot grow the series


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
def prometheus_metrics():
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def route_template(scope: Scope) -> str:
    """The path template of the route that took (or would take) the request: "/v1/jobs/{job_id}", never an id."""
    path = getattr(scope.get("route"), "path", None)
    if path is None:
        # answered before routing (a missing key, a body over a limit), by a mount, or by no route: match it here,
        # off the predict path, which the router has already matched
        for route in flat_routes(getattr(scope.get("app"), "routes", ())):
            if route.matches(scope)[0] is not Match.NONE:
                path = route.path
                break
    return path or UNMATCHED


def flat_routes(routes) -> Iterator[BaseRoute]:
    """Routes with their paths; FastAPI keeps each included router as one entry that holds its routes."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from flat_routes(included.routes)
        elif getattr(route, "path", None) is not None:
            yield route


class HttpMetrics:
    """A pure ASGI middleware: counts and times each HTTP request by method, route template and status code.

    It only wraps `send` to read the status; the metric children are looked up once per label set and kept,
    so a request costs two dict lookups and two observations (see bench/predict.py for the measured cost).
    """

    def __init__(self, app: ASGIApp):
        self.app = app
        self.children: dict[tuple[str, str, str], tuple] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500  # an exception before the response starts is answered 500

        async def send_reading_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_reading_status)
        finally:
            self.observe(scope, status, time.perf_counter() - start)

    def observe(self, scope: Scope, status: int, seconds: float) -> None:
        method = scope["method"] if scope["method"] in METHODS else "other"
        key = (method, route_template(scope), str(status))
        children = self.children.get(key)
        if children is None:
            children = self.children[key] = (HTTP_REQUESTS.labels(*key), HTTP_SECONDS.labels(*key))
        children[0].inc()
        children[1].observe(seconds)
