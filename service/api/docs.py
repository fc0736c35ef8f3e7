"""The API's documentation: the OpenAPI document (its security as the settings make it, links from each create to
what acts on what it made, only the schemas it uses), and Swagger UI at /docs.

FastAPI's own /docs loads Swagger UI from a CDN (a blank page offline); this follows its documented recipe
for serving the files yourself. They are vendored under dashboard/static/vendor/swagger-ui (see VENDORED.md
there) and served by the dashboard's static mount.
"""

import json
import re
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

from service.settings import Settings

SWAGGER_UI = "/dashboard/vendor/swagger-ui"
# validatorUrl: no badge that asks an online validator about the document
PARAMETERS = {"validatorUrl": None}
NO_KEY: dict[str, list[str]] = {}  # an OpenAPI security requirement that asks for nothing
METHODS = ("get", "put", "post", "delete", "patch")
SCHEMA_REF = re.compile(r"#/components/schemas/([\w.-]+)")

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


def link_creations(document: dict[str, Any]) -> None:
    """Each create (a POST on a collection answering 201) links to the operations on what it made, by the `id` it
    answers: `{collection}/{id}` and its `/cancel`. Tools follow them from one call to the next (schemathesis'
    stateful phase, Swagger UI's "Links")."""
    paths = document["paths"]
    for collection, operations in paths.items():
        created = operations.get("post", {}).get("responses", {}).get("201")
        if created is None:
            continue
        for path, targets in paths.items():
            item = re.fullmatch(re.escape(collection) + r"/\{(\w+)\}(?:/cancel)?", path)
            for method, target in targets.items() if item else ():
                if method in METHODS:
                    created.setdefault("links", {})[target["summary"].replace(" ", "")] = {
                        "operationId": target["operationId"],
                        "parameters": {item[1]: "$response.body#/id"},
                    }


def drop_unused_schemas(document: dict[str, Any]) -> None:
    """Pydantic lists every definition a validator holds, also those whose uses the document describes otherwise
    (`NestedNumber`, described as `NumberArray`): keep the schemas the paths reach."""
    schemas = document.get("components", {}).get("schemas", {})
    outside = {key: value for key, value in document.items() if key != "components"}
    reached: set[str] = set()
    waiting = set(SCHEMA_REF.findall(json.dumps(outside)))
    while waiting:
        name = waiting.pop()
        if name not in reached:
            reached.add(name)
            waiting |= set(SCHEMA_REF.findall(json.dumps(schemas[name])))
    for name in set(schemas) - reached:
        del schemas[name]


def install_openapi(app: FastAPI, settings: Settings) -> None:
    """FastAPI's document, then: FastAPI marks the bearer key required on every route that reads it, but with
    FITSERVE_AUTH=auto or off a route may also be called without one (auto: until a key exists, and only on
    loopback), so say so; link each create to what acts on what it made; drop the schemas nothing uses."""

    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()  # FastAPI's, which it also keeps as app.openapi_schema
            if settings.AUTH != "required":
                mark_key_optional(document)
            link_creations(document)
            drop_unused_schemas(document)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to change the document
