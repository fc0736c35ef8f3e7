"""The OpenAPI document as openapi-spec-validator, a JSON Schema validator and client generators read it (plain
component names, no recursion, links), and /docs offline."""

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

from tests.conftest import processes_only
from tests.specs import tiny_regression

BODY_METHODS = ("post", "put", "patch")
SCHEMA_REF = re.compile(r"#/components/schemas/([\w.-]+)")


def operations(document: dict):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def untyped_items(node, where: str = "#") -> list[str]:
    """Where an array's items are `{}` (anything): a client generator or validator learns nothing there."""
    found = []
    if isinstance(node, dict):
        if node.get("items") == {}:
            found.append(where)
        for key, value in node.items():
            found += untyped_items(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += untyped_items(value, f"{where}/{i}")
    return found


def body_validator(document: dict, path: str, method: str = "post") -> OAS31Validator:
    """A JSON Schema validator of the operation's JSON body, its $refs resolved in the document."""
    schema = document["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
    return OAS31Validator({**schema, "components": document["components"]})


@pytest.fixture
def document(server) -> dict:
    response = server.client.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def test_the_document_is_valid_openapi_with_typed_items_and_every_body_documented(document):
    validate(document)  # raises on any violation of the OpenAPI 3.1 schema
    assert untyped_items(document) == []
    missing = [
        f"{method.upper()} {path}"
        for path, method, operation in operations(document)
        if method in BODY_METHODS
        and not path.endswith(("/cancel", "/rotate"))  # a cancel, or a secret's rotation, takes no body
        and not operation.get("requestBody", {}).get("content")
    ]
    assert missing == []


def test_schema_valid_bodies_are_accepted_and_invalid_ones_are_refused_by_both(server, document):
    spec_schema = body_validator(document, "/v1/jobs")
    # integers are numbers too: x and y must be valid under the schema, not only under the server
    spec = tiny_regression(data={"source": "inline", "x": [[0], [1], [2.5]], "y": [[1], [3], [6]]}, epochs=2)
    assert list(spec_schema.iter_errors(spec)) == []
    assert server.client.post("/v1/jobs", json=spec).status_code == 201
    bad = tiny_regression(data={"source": "inline", "x": [["a"], [1]], "y": [[1], [3]]})
    assert list(spec_schema.iter_errors(bad)) != []
    assert server.client.post("/v1/jobs", json=bad).status_code == 422

    inputs_schema = body_validator(document, "/v1/jobs/{job_id}/predict")
    assert list(inputs_schema.iter_errors({"inputs": [[1], [2.5]]})) == []
    assert list(inputs_schema.iter_errors({"inputs": [[True]]})) != []
    assert list(inputs_schema.iter_errors({"inputs": [[[[1]]], [[[2.5]]]]})) == []  # (N, C, H, W)


def ref_cycle(schemas: dict) -> list[str]:
    """A chain of components each naming the next by $ref and coming back to the first; [] where there is none."""
    refs = {name: set(SCHEMA_REF.findall(json.dumps(schema))) for name, schema in schemas.items()}
    done: set[str] = set()

    def walk(name: str, chain: list[str]) -> list[str]:
        if name in chain:
            return chain[chain.index(name):] + [name]
        if name in done:
            return []
        for ref in sorted(refs[name]):
            if cycle := walk(ref, chain + [name]):
                return cycle
        done.add(name)
        return []

    return next((cycle for name in schemas if (cycle := walk(name, []))), [])


def test_components_have_plain_names_and_none_refers_back_to_itself(document):
    """What client generators need: openapi-python-client dropped every model that reached a recursive schema."""
    schemas = document["components"]["schemas"]
    assert [name for name in schemas if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*(_[A-Za-z0-9]+)*", name)] == []
    assert [name for name in schemas if name.startswith(("service", "workers", "modelzoo", "fitserve"))] == []
    assert ref_cycle(schemas) == []
    assert ref_cycle({"A": {"$ref": "#/components/schemas/B"}, "B": {"items": {"$ref": "#/components/schemas/A"}}})
    number_arrays = [schemas["NumberArray"]["anyOf"][rank]["$ref"].rsplit("/", 1)[1] for rank in range(8)]
    assert number_arrays == [f"NumberArray{rank}D" for rank in range(1, 9)]
    for model, field in (("InlineData", "x"), ("PredictRequest", "inputs"), ("EvaluateRequest", "y")):
        described = json.dumps(schemas[model]["properties"][field])
        assert "#/components/schemas/NumberArray" in described and '"minItems": 1' in described, (model, described)
    used = set(SCHEMA_REF.findall(json.dumps({k: v for k, v in document.items() if k != "components"})))
    assert used <= set(schemas) and "NestedNumber" not in schemas  # what the validators recurse on is not described


def test_each_create_links_to_reading_changing_cancelling_and_deleting_what_it_made(document):
    ids = {(path, method): op["operationId"] for path, method, op in operations(document)}
    links = {
        path: document["paths"][path]["post"]["responses"]["201"]["links"]
        for path in ("/v1/jobs", "/v1/sweeps", "/v1/datasets")
    }
    targets = {
        path: {(name, link["operationId"]): link["parameters"] for name, link in found.items()}
        for path, found in links.items()
    }
    job, sweep, dataset = ({f"{kind}_id": "$response.body#/id"} for kind in ("job", "sweep", "dataset"))
    assert targets["/v1/jobs"] == {
        ("GetJob", ids["/v1/jobs/{job_id}", "get"]): job,
        ("UpdateJob", ids["/v1/jobs/{job_id}", "patch"]): job,
        ("DeleteJob", ids["/v1/jobs/{job_id}", "delete"]): job,
        ("CancelJob", ids["/v1/jobs/{job_id}/cancel", "post"]): job,
    }
    assert targets["/v1/sweeps"] == {
        ("GetSweep", ids["/v1/sweeps/{sweep_id}", "get"]): sweep,
        ("DeleteSweep", ids["/v1/sweeps/{sweep_id}", "delete"]): sweep,
        ("CancelSweep", ids["/v1/sweeps/{sweep_id}/cancel", "post"]): sweep,
    }
    assert targets["/v1/datasets"] == {
        ("GetDataset", ids["/v1/datasets/{dataset_id}", "get"]): dataset,
        ("DeleteDataset", ids["/v1/datasets/{dataset_id}", "delete"]): dataset,
    }
    for path in links:  # each answers what it made, with the `id` the links read
        answer = document["paths"][path]["post"]["responses"]["201"]["content"]["application/json"]["schema"]
        assert "id" in document["components"]["schemas"][answer["$ref"].rsplit("/", 1)[1]]["properties"], path


def test_the_key_is_optional_in_the_document_unless_keys_are_required(make_app):
    auto = make_app(workers=0, db_name="auto.db").start()
    document = auto.client.get("/openapi.json").json()
    auto.stop()  # one in-process app at a time
    secured = [op["security"] for _, _, op in operations(document) if "security" in op]
    assert secured and all(s == [{"HTTPBearer": []}, {}] for s in secured)  # FITSERVE_AUTH=auto: with or without

    strict = make_app(workers=0, FITSERVE_AUTH="required").start()
    strict.client.headers["Authorization"] = f"Bearer {strict.create_key('alice')}"
    required = strict.client.get("/openapi.json").json()
    validate(required)
    secured = [op["security"] for _, _, op in operations(required) if "security" in op]
    assert len(secured) == len([op for _, _, op in operations(document) if "security" in op])
    assert all(s == [{"HTTPBearer": []}] for s in secured)


ASSET_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


def test_docs_page_loads_swagger_ui_from_this_server_only(server):
    page = server.client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    urls = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert len(urls) == 3 and "'/openapi.json'" in page.text
    for url in urls:
        assert not urlsplit(url).netloc and url.startswith("/"), url
        asset = server.client.get(url)
        assert asset.status_code == 200, url
        assert asset.headers["content-type"].startswith(ASSET_TYPES[Path(url).suffix]), (url, asset.headers)
    assert "SwaggerUIBundle" in server.client.get(next(u for u in urls if u.endswith(".js"))).text
    assert server.client.get("/redoc").status_code == 404  # dropped: it, too, came from a CDN


CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@processes_only
@pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (Debian's chromium; .ci/run installs it)")
def test_docs_render_in_a_browser_with_no_network(served):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (the dev extra) is not installed")
    here = urlsplit(str(served.client.base_url)).netloc
    refused: list[str] = []

    def only_this_server(route):
        if urlsplit(route.request.url).netloc == here:
            route.continue_()
        else:  # the network is cut: a CDN asset would fail here
            refused.append(route.request.url)
            route.abort()

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.route("**/*", only_this_server)
            page.goto(f"{served.client.base_url}/docs")
            sync_api.expect(page.locator(".swagger-ui .info .title")).to_contain_text("fitserve", timeout=30_000)
            sync_api.expect(page.locator(".opblock-summary-path").first).to_be_visible()
            assert page.locator(".opblock").count() > 20
            assert page.locator(".btn.authorize").count() == 1  # the bearer scheme, to paste a key into
        finally:
            browser.close()
    assert refused == [] and errors == []
