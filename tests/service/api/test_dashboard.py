"""The dashboard's page and files as served: open without a key, locked down, shipped in the package."""

import re
import tomllib
from pathlib import Path

from service.api.dashboard import DASHBOARD

ROOT = Path(__file__).resolve().parents[3]


def test_page_is_served_at_root_with_a_strict_policy(server):
    response = server.client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/dashboard/app.js">' in response.text
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert response.headers["cache-control"] == "no-cache"


def test_static_files_are_served_with_types_a_browser_accepts(server):
    for path, media_type in [
        ("/dashboard/app.js", "javascript"),
        ("/dashboard/app.css", "text/css"),
        ("/dashboard/vendor/uplot/uPlot.iife.min.js", "javascript"),
    ]:
        response = server.client.get(path)
        assert response.status_code == 200, path
        assert media_type in response.headers["content-type"], path  # module scripts need a JavaScript type
        assert response.headers["cache-control"] == "no-cache"


def test_every_module_a_module_imports_is_served(server):
    """A module that imports a file the server lacks fails the whole page in the browser, silently here."""
    imports = {
        (module.name, imported)
        for module in (DASHBOARD / "static").glob("*.js")
        for imported in re.findall(r'^import .* from "\./([\w-]+\.js)";$', module.read_text(), flags=re.MULTILINE)
    }
    assert {("compare.js", "parallel.js"), ("sweeps.js", "parallel.js"), ("parallel.js", "table.js")} <= imports
    for module, imported in imports:
        assert server.client.get(f"/dashboard/{imported}").status_code == 200, f"{module} imports {imported}"


def test_page_opens_without_a_key_while_the_api_needs_one(make_app):
    srv = make_app(workers=0)
    srv.create_key("alice")
    srv.start()
    assert srv.client.get("/v1/jobs").status_code == 401
    assert srv.client.get("/").status_code == 200
    assert srv.client.get("/dashboard/api.js").status_code == 200


def test_package_data_ships_every_dashboard_file():
    """A non-editable install serves only what package-data names."""
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["service"]
    service = ROOT / "service"
    shipped = {path for pattern in patterns for path in service.glob(pattern) if path.is_file()}
    files = {path for path in DASHBOARD.rglob("*") if path.is_file()}
    assert files and files <= shipped, sorted(str(p.relative_to(service)) for p in files - shipped)


def test_vendored_uplot_is_the_version_recorded_with_its_licence():
    vendor = DASHBOARD / "static" / "vendor"
    recorded = re.search(r"\[uPlot\]\(\S+\) \| (\d+\.\d+\.\d+) \|", (vendor / "VENDORED.md").read_text())
    header = (vendor / "uplot" / "uPlot.iife.min.js").read_text()[:200]
    assert recorded and f"(v{recorded[1]})" in header
    assert "MIT License" in (vendor / "uplot" / "LICENSE").read_text()
