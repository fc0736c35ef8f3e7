"""The dashboard's browser tests: one served process and one Chromium for the whole folder.

`make test` hands this folder to one pytest process whole (tests/conftest.py SHARED_FOLDERS), so the folder starts
one server and one browser, not one of each per module. Tests keep apart by their own jobs, sweeps and owners.
"""

import pytest

from tests.harness.served import Server
from tests.service.dashboard.pages import CHROMIUM, DESKTOP, FLAGS, sync_api


@pytest.fixture(scope="package")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"no {CHROMIUM} (Debian's chromium; .ci/run installs it)")
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


@pytest.fixture(scope="package")
def served(tmp_path_factory):
    """A server with keys for alice and bob, so every API call needs one; its `client` calls as bob.

    Its own SQLite server, not the shared one: the page is the same whatever the database.
    """
    # webhooks may reach receivers on 127.0.0.1 (the deliveries page's test), polled and retried quickly
    hooks = {"FITSERVE_WEBHOOK_ALLOW_HOSTS": "127.0.0.1", "FITSERVE_WEBHOOK_POLL_SECONDS": "0.05",
             "FITSERVE_WEBHOOK_BACKOFF_SECONDS": "0.2", "FITSERVE_WEBHOOK_RETRY_SECONDS": "2"}
    srv = Server(tmp_path_factory.mktemp("dashboard") / "fitserve.db", workers=2, **hooks)
    srv.keys = {"alice": srv.create_key("alice"), "bob": srv.create_key("bob")}
    srv.start()
    srv.client.headers["Authorization"] = f"Bearer {srv.keys['bob']}"
    yield srv
    srv.stop()
