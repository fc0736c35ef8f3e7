"""The dashboard's axis ticks in headless Chromium: enough distinct, readable labels on every range and scale."""

import itertools
import math
import re

import pytest

from tests.service.dashboard.pages import expect, screenshot, sign_in, url
from tests.specs import tiny_regression

SPACE = 36  # the least room between ticks the tests ask for, as the charts ask for on a side axis
# (low, high, log): what users saw (under a decade on a log axis, 3.2e10 to 3.4e10), and the extremes around it
RANGES = [
    (0.3, 1.5, True), (0.05, 0.08, True), (0.95, 1.05, True), (0.19, 1.9, True), (1, 30, True), (1, 100, True),
    (3.2e10, 3.4e10, True), (3.2e10, 3.4e10, False), (3.29e10, 3.31e10, True), (1e-9, 3e-9, True), (1e-9, 3e-9, False),
    (1e-9, 1, True), (1e-12, 1e12, True), (1e-300, 1e300, True), (-2.5, 7, False), (-1e-9, 1e-9, False),
    (-3e10, -1e10, False), (0, 1, False), (1, 2, False), (0, 500_000, False), (12_345, 12_346, False),
    (1e-4, 1e-3, False), (0.5, 0.5001, True), (1e15, 1e15 + 10, False),
]
LENGTHS = [130, 300, 700]  # pixels: a phone's short axis to a wide screen's


def test_every_range_gets_three_or_more_distinct_labels_that_read_back_as_their_values(served, page):
    page.goto(url(served))
    drawn = page.evaluate("""async ([ranges, lengths, space]) => {
        const { ticks, tickLabel } = await import("/dashboard/ticks.js");
        return ranges.map(([low, high, log]) => lengths.map((px) => {
            const values = ticks(low, high, { log, px, space });
            return { values, labels: values.map(tickLabel) };
        }));
    }""", [RANGES, LENGTHS, SPACE])
    for (low, high, log), per_length in zip(RANGES, drawn):
        for px, axis in zip(LENGTHS, per_length):
            values, labels = axis["values"], axis["labels"]
            where = f"{low}..{high} {'log' if log else 'linear'} over {px} px: {labels}"
            assert 3 <= len(labels) <= px // SPACE + 1, where
            assert len(set(labels)) == len(labels), where
            assert all(low <= v <= high for v in values) and values == sorted(values), where
            assert all(math.isclose(float(text), v, rel_tol=1e-12, abs_tol=1e-300) for text, v in zip(labels, values)), where
            if high - low > 1e-6 * max(abs(low), abs(high)):  # compact: 3.25e10, -5e-10 (not 1.000000000000002e15)
                assert all(len(text) <= 8 for text in labels), where
            position = (lambda v: math.log10(v)) if log else (lambda v: v)
            gaps = [position(b) - position(a) for a, b in itertools.pairwise(values)]
            room = min(gaps) / (position(high) - position(low)) * px
            # never crowded; only the third label, on an axis too short for three, may come closer
            assert room >= SPACE or (len(labels) == 3 and room >= SPACE / 2), where


# curves as a job draws them: (what, values over epochs 1..n)
CURVES = [
    ("constant 3.3e10", [3.3e10] * 50),
    ("3.2e10 to 3.4e10", [3.4e10 - 4e8 * i for i in range(50)]),
    ("falling 9 decades", [10.0 ** (-i / 5) for i in range(46)]),
    ("tiny", [3e-9 - 4e-11 * i for i in range(50)]),
    ("under a decade", [1.5 - 0.024 * i for i in range(50)]),
    ("negative to positive", [-3 + 0.16 * i for i in range(50)]),
    ("one point", [0.7]),
]


@pytest.mark.parametrize("log", [True, False], ids=["log", "linear"])
def test_a_chart_draws_its_labels_on_every_axis_of_every_curve(served, page, log):
    sign_in(page, served)
    page.goto(url(served))
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()  # uPlot is loaded
    summaries = page.evaluate("""async ([curves, log]) => {
        const { Chart } = await import("/dashboard/charts.js");
        const frame = () => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
        const box = document.createElement("div");
        box.style.width = "600px";
        document.body.append(box);
        const out = [];
        for (const [, ys] of curves) {
            const chart = new Chart(box, [{ label: "loss", color: "#000", scale: "loss" }], { log });
            chart.setData([ys.map((_, i) => i + 1), ys]);
            await frame();
            out.push(box.querySelector(".axis-ticks").textContent);
            chart.destroy();
        }
        return out;
    }""", [CURVES, log])
    for (what, ys), summary in zip(CURVES, summaries):
        axes = dict(part.split(": ", 1) for part in summary.split("; "))
        assert set(axes) == {"epoch axis", "loss axis (log)" if log else "loss axis"}, (what, summary)
        for axis, text in axes.items():
            labels = text.split(", ")
            if axis == "epoch axis" and len(ys) == 1:
                continue  # one epoch has no range to divide
            assert len(labels) >= 3 and len(set(labels)) == len(labels), (what, summary)
        loss = [float(t) for t in axes["loss axis (log)" if log else "loss axis"].split(", ")]
        positive = [y for y in ys if y > 0 or not log]
        if positive and max(positive) > min(positive):
            span = max(positive) - min(positive)
            assert min(loss) <= min(positive) + span / 2 <= max(loss), (what, summary)  # the labels cover the curve


def test_a_job_with_a_huge_loss_that_hardly_moves_reads_on_both_scales(served, page):
    sign_in(page, served)
    # targets near 1.8e5 and a small rate: the loss falls from about 3.31e10 to 3.23e10
    data = {"source": "synthetic", "generator": "linear", "n": 20, "slope": 0.0, "intercept": 182_000.0}
    job = served.train(tiny_regression(name="huge loss", epochs=25, data=data, optimizer={"kind": "sgd", "lr": 2.5e-4}))
    assert job["status"] == "succeeded", job["error"]
    assert 3.2e10 < job["metrics"]["loss"] < 3.4e10, job["metrics"]
    page.goto(url(served, f"#/jobs/{job['id']}"))
    ticks = page.locator(".chart .axis-ticks").first
    for scale in ("loss axis (log)", "loss axis"):
        expect(ticks).to_contain_text(re.compile(rf"{re.escape(scale)}: [^;]*e10"))  # drawn with the curve
        labels = ticks.inner_text().split(f"{scale}: ")[1].split("; ")[0].split(", ")
        assert len(labels) >= 3 and len(set(labels)) == len(labels), labels
        assert all(text.endswith("e10") for text in labels), labels
        if scale.endswith("(log)"):
            screenshot(page, "chart-huge-loss", full_page=False)
            page.get_by_label("log scale").uncheck()
