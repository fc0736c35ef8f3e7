"""The dashboard's job list filters by name, tag and `filter` and sorts by loss, as `GET /v1/jobs` does (headless
Chromium)."""

import uuid

from tests.service.dashboard.pages import expect, sign_in, url
from tests.specs import tiny_regression


def test_the_list_filters_by_name_and_tag_and_sorts_by_loss(served, page):
    suffix = uuid.uuid4().hex[:6]
    owner = f"searcher-{suffix}"  # an owner of its own: the list holds these three jobs alone
    served.keys[owner] = served.create_key(owner)
    as_owner = {"Authorization": f"Bearer {served.keys[owner]}"}
    ids = {}
    for name, epochs, team in (("alpha one", 5, "x"), ("alpha two", 200, "y"), ("beta", 40, "x")):
        spec = tiny_regression(name=f"{name} {suffix}", epochs=epochs, tags={"team": team})
        ids[name] = served.client.post("/v1/jobs", json=spec, headers=as_owner).json()["id"]
    served.wait_for_jobs(list(ids.values()))
    jobs = {name: served.client.get(f"/v1/jobs/{job_id}", headers=as_owner).json() for name, job_id in ids.items()}
    assert all(job["status"] == "succeeded" for job in jobs.values()), jobs
    sign_in(page, served, owner)
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
