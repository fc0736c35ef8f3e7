"""The dashboard's job list filters by name, tag and `filter` and sorts by loss, as `GET /v1/jobs` does (headless
Chromium)."""

import uuid

import pytest

from tests.service.api.test_dashboard_browser import CHROMIUM, browser, page, sign_in, url  # noqa: F401 (fixtures)
from tests.specs import tiny_regression

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (.ci/run installs it)")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (the dev extra) is not installed")
expect = sync_api.expect


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A server with a key for bob; its `client` calls as bob."""
    from tests.conftest import Server

    srv = Server(tmp_path_factory.mktemp("dashboard-search") / "fitserve.db", workers=1)
    srv.keys = {"bob": srv.create_key("bob")}
    srv.start()
    srv.client.headers["Authorization"] = f"Bearer {srv.keys['bob']}"
    yield srv
    srv.stop()


def test_the_list_filters_by_name_and_tag_and_sorts_by_loss(served, page):  # noqa: F811 (the fixture)
    suffix = uuid.uuid4().hex[:6]
    jobs = {
        name: served.train(tiny_regression(name=f"{name} {suffix}", epochs=epochs, tags={"team": team}))
        for name, epochs, team in (("alpha one", 5, "x"), ("alpha two", 200, "y"), ("beta", 40, "x"))
    }
    sign_in(page, served)
    page.goto(url(served))
    rows = page.locator("section.jobs tbody tr")
    expect(rows).to_have_count(3)

    names = page.get_by_label("Name contains")
    names.fill("ALPHA")
    names.press("Enter")
    expect(rows).to_have_count(2)
    tags = page.get_by_label("Tag key:value")
    tags.fill("team:x")
    tags.press("Enter")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-job-id", jobs["alpha one"]["id"])

    names.fill("")
    names.press("Enter")
    page.get_by_label("Sort").select_option("loss")
    by_loss = sorted((job for job in jobs.values() if job["spec"]["tags"]["team"] == "x"),
                     key=lambda job: job["metrics"]["loss"])
    expect(rows).to_have_count(2)
    for i, job in enumerate(by_loss):
        expect(rows.nth(i)).to_have_attribute("data-job-id", job["id"])

    tags.fill("bad key:x")
    tags.press("Enter")
    expect(page.locator("section.jobs [role=status]")).to_contain_text("tag")

    tags.fill("")
    tags.press("Enter")
    where = page.get_by_label("Filter, e.g.")
    where.fill("params.epochs >= 40 and tags.team = 'x'")
    where.press("Enter")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-job-id", jobs["beta"]["id"])
    where.fill("params.epochs >= 40 or tags.team = 'x'")
    where.press("Enter")
    expect(page.locator("section.jobs [role=status]")).to_contain_text("'or'")
