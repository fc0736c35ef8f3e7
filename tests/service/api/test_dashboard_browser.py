"""The dashboard end to end: a real `fitserve serve`, real jobs, driven in headless Chromium by Playwright.

Each main page is saved under bench/screenshots/ for a person to look at.
"""

import json
import re
import struct
import uuid
from pathlib import Path

import onnx
import pytest

from tests.conftest import Server
from tests.specs import example, tiny_regression

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (Debian's chromium; .ci/run installs it)")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (the dev extra) is not installed")
expect = sync_api.expect

SCREENSHOTS = Path(__file__).resolve().parents[3] / "bench" / "screenshots"
# Root in a container, and a closed network: no sandbox, nothing that phones home.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DESKTOP = {"width": 1100, "height": 800}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A fresh browser profile (empty localStorage); fails the test on an uncaught script error or a CSP refusal."""
    context = browser.new_context(viewport=DESKTOP, accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: "Content Security Policy" in message.text and errors.append(message.text))
    yield page
    context.close()
    assert not errors, errors


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A server with keys for alice and bob, so every API call needs one; its `client` calls as bob.

    Its own SQLite server, not the shared one: the page is the same whatever the database.
    """
    srv = Server(tmp_path_factory.mktemp("dashboard") / "fitserve.db", workers=2)
    srv.keys = {"alice": srv.create_key("alice"), "bob": srv.create_key("bob")}
    srv.start()
    srv.client.headers["Authorization"] = f"Bearer {srv.keys['bob']}"
    yield srv
    srv.stop()


def sign_in(page, srv: Server, who: str = "bob") -> None:
    """Keep `who`'s key in the browser, as the key prompt does."""
    page.context.add_init_script(f"localStorage.setItem('fitserve.apiKey', {json.dumps(srv.keys[who])})")


def url(srv: Server, route: str = "") -> str:
    return f"{srv.client.base_url}/{route}"


def screenshot(page, name: str, **options) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png", **options)


def shown_points(page) -> int:
    return int(page.locator(".points").inner_text().split()[0])


def wait_for_more_points(page, than: int) -> int:
    page.wait_for_function("n => parseInt(document.querySelector('.points').textContent) > n", arg=than, timeout=30_000)
    return shown_points(page)


DURATION = r"(\d+\.\d s|\d+ min \d+ s|\d+ h \d+ min)"  # formatSeconds in dom.js
RATE = r"\d[\d.]*(e\d+)? epochs/s"


def detail(page, term: str):
    """The value beside `term` in a job's details."""
    return page.locator(".details dt", has_text=term).locator("xpath=following-sibling::dd[1]")


def long_job(name: str) -> dict:
    """Trains for minutes, about a hundred curve points a second, until cancelled."""
    data = {"source": "synthetic", "generator": "linear", "n": 20, "noise": 0.3}
    return tiny_regression(name=name, epochs=500_000, metrics_every=100, data=data, optimizer={"kind": "sgd", "lr": 0.002})


def test_finished_classifier_shows_its_curves_and_predicts(served, page):
    sign_in(page, served)
    spec = example("5_softmax_classification", epochs=300, optimizer={"kind": "adam", "lr": 0.02})
    spec["name"] = "three clusters"
    spec["data"]["validation_fraction"] = 0.2
    job = served.train(spec)
    assert job["status"] == "succeeded", job["error"]
    page.goto(url(served, f"#/jobs/{job['id']}"))
    expect(page.locator(".points")).to_have_text("300 points")
    legend = page.locator(".u-legend")
    for label in ["loss", "validation loss", "accuracy", "validation accuracy"]:
        expect(legend.get_by_text(label, exact=True)).to_be_visible()
    expect(page.locator(".details")).to_contain_text("cpu")
    assert job["execution"]
    expect(detail(page, "Execution")).to_have_text(job["execution"])
    # ended: how long it took and its average speed, no ETA
    expect(page.locator(".pace")).to_have_text(re.compile(rf"^took {DURATION} · {RATE}$"))

    page.get_by_label("Inputs").fill("[[4, 4], [-8, -8]]")
    page.get_by_role("button", name="Predict").click()
    expect(page.locator("td.prediction")).to_have_text(["0", "2"])
    screenshot(page, "job", full_page=True)

    page.set_viewport_size(PHONE)
    page.evaluate("window.scrollTo(0, 0)")
    expect(page.locator(".points")).to_be_visible()
    # Readable on a phone: nothing wider than the screen. The charts follow their box through a ResizeObserver,
    # which runs after the next layout, so the page is given a moment to settle before it is measured.
    fits = "document.documentElement.scrollWidth <= window.innerWidth"
    try:
        page.wait_for_function(fits, timeout=5_000)
    except sync_api.TimeoutError:
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        pytest.fail(f"on a {PHONE['width']} px screen the page is {overflow} px too wide")
    screenshot(page, "job-phone")


def test_a_jobs_metrics_get_a_chart_each(served, page):
    sign_in(page, served)
    spec = example("5_softmax_classification", epochs=60, metrics=["f1", "log_loss"])
    spec["data"]["validation_fraction"] = 0.2
    job = served.train(spec)
    assert job["status"] == "succeeded", job["error"]
    page.goto(url(served, f"#/jobs/{job['id']}"))
    expect(page.locator(".points")).to_have_text("60 points")
    charts = page.locator("figure[data-metric]")
    expect(charts).to_have_count(2)
    for name in ("f1", "log_loss"):
        chart = page.locator(f"figure[data-metric={name}]")
        expect(chart.locator("figcaption")).to_have_text(name)
        for label in (name, f"validation {name}"):
            expect(chart.locator(".u-legend").get_by_text(label, exact=True)).to_be_visible()
        expect(chart.locator("canvas")).to_be_visible()
        # the axis's words (charts.js `describe`): drawn from the points, not an empty frame
        expect(chart.locator(".axis-ticks")).to_contain_text(f"{name} axis:")
    shown = f"{float(f'{job['metrics']['val_f1']:.4g}'):g}"  # formatNumber's four digits
    expect(page.locator(".progress-line")).to_contain_text(f"validation f1 {shown}")
    screenshot(page, "job-metrics", full_page=True)
