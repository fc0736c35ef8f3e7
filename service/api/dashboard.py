"""The dashboard: one page at `/` and its static files; the page reads everything else from /v1 with the caller's key."""

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import Scope

DASHBOARD = Path(__file__).resolve().parents[1] / "dashboard"
# The page holds an API key in localStorage, so it runs no script but its own files and cannot be framed.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
# Revalidate on every load (a 304 when unchanged), so an upgraded service never runs last version's scripts.
NO_CACHE = {"Cache-Control": "no-cache"}


class DashboardFiles(StaticFiles):
    """Static files that the browser revalidates instead of guessing how long they stay fresh."""

    def file_response(self, full_path, stat_result, scope: Scope, status_code: int = 200):
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(NO_CACHE)
        return response


router = APIRouter(include_in_schema=False)


@router.get("/")
def dashboard_page() -> FileResponse:
    headers = {**NO_CACHE, "Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff"}
    return FileResponse(DASHBOARD / "index.html", headers=headers)


router.mount("/dashboard", DashboardFiles(directory=DASHBOARD / "static"), name="dashboard")
