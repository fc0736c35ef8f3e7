"""The job page's evaluation (table, confusion matrix heat map, predicted-vs-actual) and learning-rate curve."""

import pytest

from tests.service.dashboard.pages import expect, screenshot, sign_in, url
from tests.specs import example, tiny_regression

# specs, training and measures: the service's shared paths they reach run on every back end elsewhere
pytestmark = pytest.mark.one_backend("no statement of their own")


def test_a_classifier_shows_its_evaluation_and_its_learning_rate(served, page):
    sign_in(page, served)
    spec = example("5_softmax_classification", epochs=40, optimizer={
        "kind": "adam", "lr": 0.02, "schedule": {"kind": "step", "step_epochs": 10, "gamma": 0.5}})
    spec["data"] = {**spec["data"], "validation_fraction": 0.2, "test_fraction": 0.2}
    job = served.train(spec)
    assert job["status"] == "succeeded", job["error"]
    page.goto(url(served, f"#/jobs/{job['id']}"))
    table = page.locator("table.evaluation")
    expect(table).to_contain_text("validation")
    expect(table).to_contain_text("test")
    expect(table).to_contain_text("log loss")
    matrices = page.locator("figure.confusion")
    expect(matrices).to_have_count(2)
    expect(matrices.first.locator("tbody tr")).to_have_count(3)
    expect(page.locator(".lr-chart .u-legend").get_by_text("learning rate", exact=True)).to_be_visible()
    screenshot(page, "job-evaluation", full_page=True)


def test_a_regression_shows_predicted_against_actual(served, page):
    sign_in(page, served)
    data = {"source": "synthetic", "generator": "linear", "n": 200, "noise": 0.3, "test_fraction": 0.25}
    job = served.train(tiny_regression(data=data, epochs=100))
    assert job["status"] == "succeeded", job["error"]
    page.goto(url(served, f"#/jobs/{job['id']}"))
    expect(page.locator("table.evaluation")).to_contain_text("RMSE")
    expect(page.locator("figure.scatter circle")).to_have_count(50)
    expect(page.locator("figure.lr-chart")).to_have_count(0)
