"""What the dashboard's browser tests share: Debian's Chromium, Playwright's `expect`, signing in, URLs, screenshots.

The fixtures (`served`, `browser`, `page`) are in this folder's conftest.py.
"""

import json
from pathlib import Path

import pytest

from tests.harness.served import Server
from tests.specs import tiny_regression

CHROMIUM = Path("/usr/bin/chromium")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (the dev extra) is not installed")
expect = sync_api.expect

SCREENSHOTS = Path(__file__).resolve().parents[3] / "bench" / "screenshots"
# Root in a container, and a closed network: no sandbox, nothing that phones home.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DESKTOP = {"width": 1100, "height": 800}
PHONE = {"width": 390, "height": 844}


def sign_in(page, srv: Server, who: str = "bob") -> None:
    """Keep `who`'s key in the browser, as the key prompt does."""
    page.context.add_init_script(f"localStorage.setItem('fitserve.apiKey', {json.dumps(srv.keys[who])})")


def url(srv: Server, route: str = "") -> str:
    return f"{srv.client.base_url}/{route}"


def screenshot(page, name: str, **options) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png", **options)


def long_job(name: str) -> dict:
    """Trains for minutes, about a hundred curve points a second, until cancelled."""
    data = {"source": "synthetic", "generator": "linear", "n": 20, "noise": 0.3}
    return tiny_regression(name=name, epochs=500_000, metrics_every=100, data=data, optimizer={"kind": "sgd", "lr": 0.002})
