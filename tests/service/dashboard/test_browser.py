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

from tests.service.api.test_objectives import CLASSIFIER
from tests.service.dashboard.pages import DESKTOP, PHONE, expect, long_job, screenshot, sign_in, sync_api, url
from tests.specs import example, tiny_regression


def shown_points(page) -> int:
    return int(page.locator(".points").inner_text().split()[0])


def wait_for_more_points(page, than: int) -> int:
    page.wait_for_function("n => parseInt(document.querySelector('.points').textContent) > n", arg=than, timeout=30_000)
    return shown_points(page)


def assert_fits_a_phone(page) -> None:
    """Readable on a phone: nothing wider than the screen (a wide table or figure scrolls inside its own box).

    The charts follow their box through a ResizeObserver, which runs after the next layout, so the page is given
    a moment to settle before it is measured.
    """
    page.set_viewport_size(PHONE)
    fits = "() => document.documentElement.scrollWidth <= window.innerWidth"
    try:
        page.wait_for_function(fits, timeout=5_000)
    except sync_api.TimeoutError:
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        pytest.fail(f"on a {PHONE['width']} px screen the page is {overflow} px too wide")


def hover_line(page, line) -> None:
    """Moves the mouse onto a parallel-coordinates line (a path's box's centre need not be on the path)."""
    line.scroll_into_view_if_needed()
    x, y = line.evaluate("""run => {
        const path = run.querySelector("path.line");
        const at = path.getPointAtLength(path.getTotalLength() * 0.1).matrixTransform(path.getScreenCTM());
        return [at.x, at.y];
    }""")
    page.mouse.move(x, y)


# parallel coordinates' metric axis: losses may span decades, and then it is logarithmic, as its name says
LOSS_AXIS = re.compile(r"^metrics\.loss( \(log\))?$")
DURATION = r"(\d+\.\d s|\d+ min \d+ s|\d+ h \d+ min)"  # formatSeconds in dom.js
RATE = r"\d[\d.]*(e\d+)? epochs/s"


def detail(page, term: str):
    """The value beside `term` in a job's details."""
    return page.locator(".details dt", has_text=term).locator("xpath=following-sibling::dd[1]")


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
    # the API's first prediction imports torch (a second quiet; over the default 5 s on the loaded CI machine)
    expect(page.locator("td.prediction")).to_have_text(["0", "2"], timeout=30_000)
    screenshot(page, "job", full_page=True)

    assert_fits_a_phone(page)
    page.evaluate("window.scrollTo(0, 0)")
    expect(page.locator(".points")).to_be_visible()
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
    shown = format(float(format(job["metrics"]["val_f1"], ".4g")), "g")  # formatNumber's four digits
    expect(page.locator(".progress-line")).to_contain_text(f"validation f1 {shown}")
    screenshot(page, "job-metrics", full_page=True)


def test_an_early_stopped_job_shows_where_it_stopped_and_the_epoch_it_kept(served, page):
    sign_in(page, served)
    # no epoch after the first improves by more than min_delta: patience 3 runs out at epoch 4
    spec = tiny_regression(name="stops early", epochs=50, early_stopping={"patience": 3, "min_delta": 1e9, "monitor": "loss"})
    job = served.train(spec)
    assert (job["status"], job["stopped_early_at"], job["best_epoch"]) == ("succeeded", 4, 1), job
    page.goto(url(served, f"#/jobs/{job['id']}"))
    details = page.locator(".details")
    expect(details).to_contain_text("Stopped early at")
    expect(details).to_contain_text("epoch 4")
    expect(details).to_contain_text("epoch 1 (best)")


def test_compare_two_jobs_chosen_with_the_keyboard(served, page):
    sign_in(page, served)
    suffix = uuid.uuid4().hex[:6]
    slow = served.train(tiny_regression(name=f"lr 0.01 {suffix}", optimizer={"kind": "sgd", "lr": 0.01}))
    fast = served.train(tiny_regression(name=f"lr 0.05 {suffix}", optimizer={"kind": "sgd", "lr": 0.05}))
    page.goto(url(served))
    for job in (slow, fast):
        box = page.get_by_label(f"Select {job['name']} to compare")
        box.focus()
        page.keyboard.press("Space")
        expect(box).to_be_checked()
    compare = page.get_by_role("button", name="Compare selected (2)")
    compare.focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(f"#/compare/{slow['id']},{fast['id']}$"))
    legend = page.locator(".u-legend")
    rows = page.locator(".compare .table-wrap tbody tr")
    for i, job in enumerate((slow, fast)):
        expect(legend.get_by_text(job["name"], exact=True)).to_be_visible()
        expect(rows.nth(i).locator(".points")).to_have_text("200")
    # the hyperparameters that differ (the name is no hyperparameter), then the metrics of the weights each kept
    headers = page.locator(".compare thead th")
    expect(headers).to_have_text(["Job", "Status", "Points", "optimizer.lr", "Loss"])
    expect(rows.locator("td.differs")).to_have_text(["0.01", "0.05"])
    slow_loss, fast_loss = (float(text) for text in rows.locator("td:nth-child(5)").all_inner_texts())
    assert fast_loss < slow_loss  # each job's own metrics, not one's twice
    page.get_by_role("button", name="Loss", exact=True).click()  # sortable: the lower loss first
    expect(rows.first).to_have_attribute("data-job-id", fast["id"])

    lines = page.locator(".compare .parallel .run")
    expect(lines).to_have_count(2)
    expect(page.locator(".compare .parallel .axis-name")).to_have_text(["optimizer.lr", LOSS_AXIS])
    row = page.locator(f'.compare tbody tr[data-job-id="{slow["id"]}"]')
    line = page.locator(f'.compare .parallel .run[data-job-id="{slow["id"]}"]')
    hover_line(page, line)
    expect(row).to_have_class("highlight")
    expect(line).to_have_class(re.compile(r"\bhighlight\b"))
    expect(page.locator(".compare tr.highlight")).to_have_count(1)
    page.mouse.move(0, 0)
    expect(page.locator(".compare tr.highlight")).to_have_count(0)
    page.locator(f'.compare tbody tr[data-job-id="{fast["id"]}"]').hover()  # and the other way round
    expect(page.locator(".compare .parallel .run.highlight")).to_have_attribute("data-job-id", fast["id"])
    page.mouse.move(0, 0)
    screenshot(page, "compare", full_page=True)

    # keyboard: a line is a link named by its values, focus marks its row, Enter opens its job
    line.focus()
    expect(line).to_have_attribute("aria-label", re.compile(r"optimizer\.lr 0\.01, metrics\.loss \d"))
    expect(row).to_have_class("highlight")

    page.get_by_label("show all hyperparameters").check()
    kind = headers.filter(has_text=re.compile(r"^optimizer\.kind$"))
    expect(kind).to_have_count(1)
    expect(kind).not_to_have_class(re.compile("differs"))
    expect(rows.locator("td.param:not(.differs)", has_text="sgd")).to_have_count(2)
    expect(rows.locator("td.differs")).to_have_text(["0.05", "0.01"])  # still the lr column alone, in loss order
    expect(lines).to_have_count(2)  # the axes stay those that differ
    expect(page.locator(".compare .parallel .axis-name")).to_have_count(2)
    assert_fits_a_phone(page)

    page.set_viewport_size(DESKTOP)
    line.focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(f"#/jobs/{slow['id']}$"))


# after the tests above, so that the list's screenshot shows finished jobs beside the running one
def test_new_job_appears_live_its_curve_grows_and_it_cancels(served, page):
    sign_in(page, served)
    page.goto(url(served))
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
    job = served.submit(long_job(f"live {uuid.uuid4().hex[:6]}"))
    row = page.locator(f'tr[data-job-id="{job["id"]}"]')
    expect(row).to_be_visible(timeout=10_000)  # no reload: the list polls
    expect(row.locator(".status")).to_have_text("running", timeout=60_000)
    expect(row.locator(".loss")).not_to_have_text("–", timeout=30_000)
    first_epoch = int(row.locator("progress").get_attribute("value"))
    page.wait_for_function("([id, e]) => document.querySelector(`tr[data-job-id='${id}'] progress`).value > e",
                           arg=[job["id"], first_epoch], timeout=30_000)
    screenshot(page, "jobs")

    recorded = served.client.get(f"/v1/jobs/{job['id']}/metrics", params={"max_points": 1}).json()["total_points"]
    row.get_by_role("link").click()
    expect(page).to_have_url(re.compile(f"#/jobs/{job['id']}$"))
    expect(page.locator(".points")).to_have_text(re.compile(r"^[1-9]\d* points$"))
    opened = shown_points(page)
    assert opened >= recorded > 0  # opened mid-training: the history comes first
    grown = wait_for_more_points(page, opened)
    wait_for_more_points(page, grown)  # and the curve keeps growing from the stream
    # its speed over the epochs seen arrive, and when it should end at that speed
    expect(page.locator(".pace")).to_have_text(re.compile(rf"^{RATE} · ETA {DURATION}$"), timeout=10_000)
    execution = served.wait_until(job["id"], lambda j: j["execution"])["execution"]
    expect(detail(page, "Execution")).to_have_text(execution)

    page.get_by_role("button", name="Cancel job").click()
    expect(page.locator(".title-line .status")).to_have_text("cancelled", timeout=30_000)
    expect(page.locator(".pace")).to_have_text(re.compile(rf"^took {DURATION}"))
    expect(page.get_by_role("button", name="Cancel job")).to_be_disabled()
    assert served.client.get(f"/v1/jobs/{job['id']}").json()["status"] == "cancelled"
    total = served.client.get(f"/v1/jobs/{job['id']}/metrics", params={"max_points": 1}).json()["total_points"]
    expect(page.locator(".points")).to_have_text(f"{total} points")  # every point once: none missed, none twice


def read_safetensors_header(blob: bytes) -> dict:
    (size,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8 : 8 + size])


def test_key_is_asked_once_and_other_owners_jobs_never_appear(served, page):
    bobs = served.submit(tiny_regression(name="bob's job", epochs=50))
    as_alice = {"Authorization": f"Bearer {served.keys['alice']}"}
    alices = served.client.post("/v1/jobs", json=tiny_regression(name="alice's job", epochs=50), headers=as_alice).json()

    page.goto(url(served))
    expect(page.get_by_text("This server needs an API key.")).to_be_visible()
    screenshot(page, "key")
    page.get_by_label("API key").fill(served.keys["bob"])
    page.get_by_role("button", name="Save key").click()
    expect(page.locator(f'tr[data-job-id="{bobs["id"]}"] .status')).to_have_text("succeeded", timeout=60_000)
    expect(page.locator(f'tr[data-job-id="{alices["id"]}"]')).to_have_count(0)
    expect(page.locator("main")).not_to_contain_text("alice's job")

    page.reload()  # kept in this browser: no second prompt
    expect(page.locator(f'tr[data-job-id="{bobs["id"]}"]')).to_be_visible()
    expect(page.get_by_text("This server needs an API key.")).to_have_count(0)
    page.goto(url(served, f"#/jobs/{alices['id']}"))
    expect(page.get_by_role("alert")).to_contain_text("Not found")
    expect(page.locator("main")).not_to_contain_text("alice's job")

    # downloads carry the key (a plain link could not, and this server refuses requests without one)
    page.goto(url(served, f"#/jobs/{bobs['id']}"))
    with page.expect_download() as weights:
        page.get_by_role("button", name="Download weights").click()
    assert weights.value.suggested_filename == f"{bobs['id']}.safetensors"
    assert "__metadata__" in read_safetensors_header(Path(weights.value.path()).read_bytes())
    with page.expect_download() as exported:
        page.get_by_role("button", name="Download ONNX").click()
    assert exported.value.suggested_filename == f"{bobs['id']}.onnx"
    assert onnx.load_from_string(Path(exported.value.path()).read_bytes()).graph.input

    page.get_by_role("button", name="API key").click()
    page.get_by_label("API key").fill("fs_not_a_key")
    page.get_by_role("button", name="Save key").click()
    expect(page.get_by_text("The server refused this key")).to_be_visible()


def test_a_sweep_page_names_its_objective_and_shows_an_evaluation_objective_as_a_column(served, page):
    sign_in(page, served)
    base = {**CLASSIFIER, "epochs": 10}
    body = {"name": f"f1 sweep {uuid.uuid4().hex[:6]}", "base": base, "space": {"lr": [0.02, 0.2]},
            "objective": {"metric": "val_f1"}}
    sweep = served.client.post("/v1/sweeps", json=body).json()
    page.goto(url(served) + f"#/sweeps/{sweep['id']}")
    expect(page.locator(".sweep h1")).to_contain_text("succeeded", timeout=60_000)
    expect(page.locator(".sweep .note[role=status]")).to_contain_text("ranked by val_f1 (max)")
    expect(page.locator(".sweep thead th").last).to_have_text("val_f1")
    scores = [float(text) for text in page.locator(".sweep tbody tr td:last-child").all_inner_texts()]
    assert len(scores) == 2 and scores == sorted(scores, reverse=True)


def test_a_sweep_page_lists_its_members_by_the_values_that_differ_and_compares_them(served, page):
    sign_in(page, served)
    base = example("3_nonlinear_mlp", epochs=60)
    base["data"]["n"] = 200
    # seed has one value: the same for every member, so no column of its own
    space = {"lr": [0.001, 0.003, 0.01], "seed": [7]}
    body = {"name": f"lr sweep {uuid.uuid4().hex[:6]}", "base": base, "space": space}
    sweep = served.client.post("/v1/sweeps", json=body).json()
    page.goto(url(served))
    page.get_by_role("link", name="Sweeps", exact=True).click()
    link = page.get_by_role("link", name=body["name"], exact=True)
    expect(link).to_be_visible()
    link.click()
    expect(page).to_have_url(re.compile(f"#/sweeps/{sweep['id']}$"))
    expect(page.locator(".sweep h1")).to_contain_text("succeeded", timeout=60_000)
    headers = page.locator(".sweep thead th")
    expect(headers).to_have_text(["Rank", "lr", "Status", "Loss"])
    rows = page.locator(".sweep tbody tr")
    expect(rows).to_have_count(3)
    expect(page.locator(".sweep .note[role=status]")).to_contain_text("ranked by loss")
    losses = [float(text) for text in rows.locator("td:nth-child(4)").all_inner_texts()]
    assert losses == sorted(losses)  # in rank order at first
    expect(rows.locator("td.differs")).to_have_count(3)

    # parallel coordinates: a line per member across lr and the metric they are ranked by
    lines = page.locator(".sweep .parallel .run")
    expect(lines).to_have_count(3)
    expect(page.locator(".sweep .parallel .axis-name")).to_have_text(["lr", LOSS_AXIS])
    best = rows.first.get_attribute("data-job-id")
    hover_line(page, page.locator(f'.sweep .parallel .run[data-job-id="{best}"]'))
    expect(page.locator(".sweep tr.highlight")).to_have_attribute("data-job-id", best)
    page.mouse.move(0, 0)
    screenshot(page, "sweep", full_page=True)

    show_all = page.get_by_label("show all hyperparameters")
    show_all.check()  # the seed every member shares
    expect(headers).to_have_text(["Rank", "lr", "seed", "Status", "Loss"])
    expect(rows.locator("td.param:not(.differs)")).to_have_text(["7", "7", "7"])
    show_all.uncheck()
    expect(headers).to_have_text(["Rank", "lr", "Status", "Loss"])
    assert_fits_a_phone(page)
    page.set_viewport_size(DESKTOP)

    lr = page.get_by_role("button", name="lr", exact=True)
    lr.click()
    expect(rows.locator("td.param")).to_have_text(["0.001", "0.003", "0.01"])
    expect(headers.nth(1)).to_have_attribute("aria-sort", "ascending")
    lr.click()
    expect(rows.locator("td.param")).to_have_text(["0.01", "0.003", "0.001"])
    first = rows.first.get_by_role("link").get_attribute("href").rsplit("/", 1)[1]
    assert served.client.get(f"/v1/jobs/{first}").json()["spec"]["optimizer"]["lr"] == 0.01  # the row moved whole

    page.get_by_role("link", name="Compare the best members").click()
    expect(page).to_have_url(re.compile("#/compare/"))
    compared = page.locator(".compare .table-wrap tbody tr")
    expect(compared).to_have_count(3)
    expect(compared.filter(has_text="lr=0.003")).to_have_count(1)  # named by their values, not "#1" alone
    expect(page.locator(".u-legend").get_by_text(re.compile(r"#\d · lr=0.01$"))).to_be_visible()


def test_webhook_deliveries_of_a_sweep_and_its_members_and_of_a_refused_job(served, page, receiver):
    sign_in(page, served)
    ok, refusing = receiver(), receiver(status=500)
    body = {"name": f"told sweep {uuid.uuid4().hex[:6]}", "base": tiny_regression(epochs=10), "space": {"lr": [0.01, 0.02]},
            "notify": {"url": ok.url, "events": ["succeeded"], "members": True}}
    sweep = served.client.post("/v1/sweeps", json=body).json()
    page.goto(url(served, f"#/sweeps/{sweep['id']}"))
    expect(page.locator(".sweep h1")).to_contain_text("succeeded", timeout=60_000)
    page.get_by_role("link", name="Webhook deliveries").click()
    expect(page).to_have_url(re.compile(f"#/sweeps/{sweep['id']}/deliveries$"))
    rows = page.locator(".deliveries tbody tr")
    expect(rows).to_have_count(3, timeout=30_000)  # the sweep's own end, and each member's
    expect(rows.locator("td:nth-child(3)")).to_have_text(["delivered"] * 3, timeout=30_000)
    expect(rows.locator("td:nth-child(4)")).to_have_text(["200"] * 3)
    expect(rows.locator("td:nth-child(5)")).to_have_text(["1"] * 3)
    members = {entry["job_id"] for entry in served.client.get(f"/v1/sweeps/{sweep['id']}").json()["leaderboard"]}
    assert set(rows.locator("td:nth-child(2) a").all_inner_texts()) == members
    expect(rows.locator("td:nth-child(2)", has_text="the sweep")).to_have_count(1)
    screenshot(page, "deliveries", full_page=True)

    job = served.train({**tiny_regression(epochs=5), "notify": {"url": refusing.url, "events": ["succeeded"]}})
    page.goto(url(served, f"#/jobs/{job['id']}"))
    page.get_by_role("link", name="Webhook deliveries").click()
    row = page.locator(".deliveries tbody tr")
    expect(row.locator("td:nth-child(3)")).to_have_text("failed", timeout=30_000)  # retried for 2 s, then given up
    expect(row.locator("td:nth-child(1)")).to_have_text("succeeded")
    expect(row.locator("td:nth-child(2)")).to_have_text(job["id"])
    expect(row.locator("td:nth-child(4)")).to_have_text("500")
    expect(row.locator("td.delivery-error")).to_have_text("answered 500")
    attempts = int(row.locator("td:nth-child(5)").inner_text())
    assert attempts >= 2 and attempts == len(refusing.posts)
    expect(page.locator(".deliveries .note")).to_contain_text(refusing.url)
