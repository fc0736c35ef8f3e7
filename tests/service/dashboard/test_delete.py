"""The dashboard's delete buttons, in headless Chromium: nothing goes until the confirmation is accepted."""

import re

from tests.service.dashboard.pages import expect, long_job, sign_in, url
from tests.specs import tiny_regression


def test_a_running_job_is_deleted_once_the_confirmation_is_accepted(served, page):
    sign_in(page, served)
    job = served.submit(long_job("to delete"))
    served.wait_until(job["id"], lambda j: j["status"] == "running")
    page.goto(url(served, f"#/jobs/{job['id']}"))
    expect(page.locator(".title-line .status")).to_have_text("running")
    asked = []

    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.get_by_role("button", name="Delete job").click()
    expect(page.get_by_role("button", name="Delete job")).to_be_visible()
    assert served.client.get(f"/v1/jobs/{job['id']}").status_code == 200  # dismissed: nothing deleted
    assert "to delete" in asked[0] and "stopped" in asked[0]

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete job").click()
    expect(page).to_have_url(re.compile(r"#/$"))
    assert served.client.get(f"/v1/jobs/{job['id']}").status_code == 404


def test_a_sweep_is_deleted_with_its_members_from_its_page(served, page):
    sign_in(page, served)
    body = {"name": "doomed sweep", "base": tiny_regression(epochs=5), "space": {"lr": [0.01, 0.02]}}
    sweep = served.client.post("/v1/sweeps", json=body).json()
    page.goto(url(served, f"#/sweeps/{sweep['id']}"))
    expect(page.locator("h1")).to_contain_text("doomed sweep")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete sweep").click()
    expect(page).to_have_url(re.compile(r"#/sweeps$"))
    assert served.client.get(f"/v1/sweeps/{sweep['id']}").status_code == 404
    for entry in sweep["leaderboard"]:
        assert served.client.get(f"/v1/jobs/{entry['job_id']}").status_code == 404
