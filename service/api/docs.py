"""The API's documentation: the OpenAPI document's security as the settings make it, and Swagger UI at /docs.

FastAPI's own /docs loads Swagger UI from a CDN (a blank page offline); this follows its documented recipe
for serving the files yourself. They are vendored under dashboard/static/vendor/swagger-ui (see VENDORED.md
there) and served by the dashboard's static mount.
"""

from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

from service.settings import Settings

SWAGGER_UI = "/dashboard/vendor/swagger-ui"
# validatorUrl: no badge that asks an online validator about the document
PARAMETERS = {"validatorUrl": None}
NO_KEY: dict[str, list[str]] = {}  # an OpenAPI security requirement that asks for nothing

router = APIRouter(include_in_schema=False)


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url=request.app.openapi_url,
        title=f"{request.app.title} - API docs",
        swagger_js_url=f"{SWAGGER_UI}/swagger-ui-bundle.js",
        swagger_css_url=f"{SWAGGER_UI}/swagger-ui.css",
        swagger_favicon_url=f"{SWAGGER_UI}/favicon-32x32.png",
        swagger_ui_parameters=PARAMETERS,
    )


def mark_key_optional(document: dict[str, Any]) -> None:
    """Each operation that takes the bearer key may also be called without one (`{}`, OpenAPI's "no security")."""
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            security = operation.get("security") if isinstance(operation, dict) else None
            if security and NO_KEY not in security:
                security.append(NO_KEY)


def install_openapi(app: FastAPI, settings: Settings) -> None:
    """FastAPI marks the bearer key required on every route that reads it; with FITSERVE_AUTH=auto or off a
    route may also be called without one (auto: until a key exists, and only on loopback), so say so."""

    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()  # FastAPI's, which it also keeps as app.openapi_schema
            if settings.AUTH != "required":
                mark_key_optional(document)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to change the document
