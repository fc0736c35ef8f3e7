"""Spec lints: `warnings` on jobs whose specs are valid but likely not what was meant; checked against training."""

import math
from pathlib import Path

import numpy as np
import pytest

from service.db import get_engine
from service.schemas import lints
from service.schemas.lints import target_moments
from service.schemas.spec import JobSpec
from tests.harness.calls import statements_run
from tests.service.api.test_datasets import HOUSES, upload
from tests.specs import example, large_targets, tiny_regression
from workers.data import load_data

CHROMIUM = Path("/usr/bin/chromium")

# example 1 (sse, five points up to x = 21): gradient descent diverges past lr = 2 / (2 * lambda_max) = 0.00118
STABLE_LR, UNSTABLE_LR = 0.0011, 0.0013


def lr_warnings(job: dict) -> list[str]:
    return [w for w in job["warnings"] if w.startswith("optimizer.lr")]


def test_sigmoid_before_cross_entropy_warns_and_caps_probabilities_as_it_says(server):
    """The tutorial's logistic regression: classes right, probabilities never past e / (e + 1)."""
    job = server.submit(example("4_logistic_regression", epochs=300))
    assert len(job["warnings"]) == 1
    warning = job["warnings"][0]
    assert warning.startswith("model.output_activation: sigmoid before cross_entropy") and "0.73" in warning
    assert server.client.get(f"/v1/jobs/{job['id']}").json()["warnings"] == job["warnings"]
    listed = server.client.get("/v1/jobs", params={"limit": 200}).json()["items"]
    assert next(j for j in listed if j["id"] == job["id"])["warnings"] == job["warnings"]
    assert server.wait_for(job["id"])["status"] == "succeeded"
    answer = server.client.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": [[4, 4], [-4, -4], [9, 9]]}).json()
    assert answer["predictions"] == [0, 1, 0]
    assert max(max(row) for row in answer["probabilities"]) <= math.e / (math.e + 1) + 1e-6


def test_softmax_before_cross_entropy_warns(server):
    job = server.submit(example("5_softmax_classification", epochs=5))
    assert len(job["warnings"]) == 1 and "applies softmax twice" in job["warnings"][0]
    assert "0.551" in job["warnings"][0]  # -log(e / (e + 2)): the floor of the loss for three classes
    server.client.post(f"/v1/jobs/{job['id']}/cancel")


def test_squashing_a_regression_output_warns(server):
    for activation, words in (("softmax", "a constant 1"), ("sigmoid", "to (0, 1)")):
        model = {"kind": "mlp", "in_features": 1, "hidden": [4], "out_features": 1, "output_activation": activation}
        job = server.submit(tiny_regression(model=model))
        assert len(job["warnings"]) == 1 and words in job["warnings"][0], job["warnings"]
        server.client.post(f"/v1/jobs/{job['id']}/cancel")


def test_specs_as_meant_have_no_warnings(server):
    for spec in (tiny_regression(), example("6_cnn_digits", epochs=1), example("2_linear_regression", epochs=1),
                 example("1_linear_gradient_descent", epochs=1)):
        job = server.submit(spec)
        assert job["warnings"] == [], job["warnings"]
        server.client.post(f"/v1/jobs/{job['id']}/cancel")


def test_the_learning_rate_limit_is_where_training_really_diverges(server):
    """Just under the computed limit the loss falls and there is no warning; just over it, both change."""
    def submit(lr: float) -> dict:
        return server.submit(example("1_linear_gradient_descent", epochs=2000, optimizer={"kind": "sgd", "lr": lr}))

    stable, unstable = submit(STABLE_LR), submit(UNSTABLE_LR)
    assert lr_warnings(stable) == []
    (warning,) = lr_warnings(unstable)
    assert "0.0013 is above 0.00118" in warning
    stable, unstable = server.wait_for(stable["id"]), server.wait_for(unstable["id"])
    assert stable["status"] == "succeeded", stable
    first = server.client.get(f"/v1/jobs/{stable['id']}/metrics", params={"max_points": 2}).json()["points"][0]
    assert stable["metrics"]["loss"] < first["loss"] / 10
    assert unstable["status"] == "failed", unstable  # the loss overflowed


def test_momentum_and_standardization_move_the_limit(server):
    """Heavy-ball momentum m allows (1 + m) times the rate; standardized inputs have curvature near 1."""
    momentum = {"kind": "sgd", "lr": 0.002, "momentum": 0.9}
    with_momentum = example("1_linear_gradient_descent", epochs=1, optimizer=momentum)
    standardized = example("1_linear_gradient_descent", epochs=1, optimizer={"kind": "sgd", "lr": 0.002})
    standardized["data"] = {**standardized["data"], "standardize": True}
    for spec in (with_momentum, standardized):
        job = server.submit(spec)
        assert lr_warnings(job) == [], job["warnings"]
        server.client.post(f"/v1/jobs/{job['id']}/cancel")


def test_a_large_rate_with_plain_sgd_on_unstandardized_data_warns(server):
    """Where the limit is not computed (an MLP), a static rule: lr > 1 with SGD on raw inputs."""
    mlp = example("3_nonlinear_mlp", epochs=1, optimizer={"kind": "sgd", "lr": 2.0})
    job = server.submit(mlp)
    assert len(lr_warnings(job)) == 1 and "data.standardize" in lr_warnings(job)[0]
    server.client.post(f"/v1/jobs/{job['id']}/cancel")
    for spec in (
        {**mlp, "optimizer": {"kind": "adam", "lr": 2.0}},
        {**mlp, "data": {**mlp["data"], "standardize": True}},
    ):
        job = server.submit(spec)
        assert lr_warnings(job) == [], job["warnings"]
        server.client.post(f"/v1/jobs/{job['id']}/cancel")


def target_warnings(job: dict) -> list[str]:
    return [w for w in job["warnings"] if w.startswith("data.standardize_target")]


def test_regression_targets_far_from_unit_scale_warn_until_standardized(server):
    diabetes = tiny_regression(model={"kind": "linear", "in_features": 10, "out_features": 1},
                               data={"source": "builtin", "name": "diabetes"})
    small = tiny_regression(data={"source": "inline", "x": [1, 2, 3, 4], "y": [0.001, 0.002, 0.003, 0.004]})
    second = tiny_regression(model={"kind": "linear", "in_features": 1, "out_features": 2},
                             data={"source": "inline", "x": [1, 2, 3], "y": [[1, 5e5], [2, 6e5], [3, 7e5]]})
    cases = [
        (large_targets(), "the targets have mean 2e+04 and std 2.9e+03"),
        (diabetes, "the targets have mean 152 and std 77"),
        (small, "mean 0.0025 and std 0.00112"),
        (second, "target 1 have mean 6e+05 and std 8.16e+04"),
    ]
    for spec, words in cases:
        job = server.submit(spec)
        (warning,) = target_warnings(job)
        assert words in warning and "set data.standardize_target" in warning, warning
        server.client.post(f"/v1/jobs/{job['id']}/cancel")
    for spec in (large_targets(standardize_target=True), example("1_linear_gradient_descent", epochs=1)):
        job = server.submit(spec)  # example 1's targets (mean 61, std 36) train well as they are
        assert target_warnings(job) == [], job["warnings"]
        server.client.post(f"/v1/jobs/{job['id']}/cancel")


@pytest.mark.parametrize(
    ("data", "features"),
    [
        ({"source": "synthetic", "generator": "linear", "n": 500, "low": -1, "high": 3, "slope": 300, "intercept": 50,
          "noise": 40, "noise_kind": "uniform"}, 1),
        ({"source": "synthetic", "generator": "polynomial", "coefficients": [1, 0, -2, 1], "n": 20_000, "low": -3,
          "high": 2, "noise": 3, "noise_kind": "normal"}, 1),
        ({"source": "builtin", "name": "diabetes"}, 10),
    ],
    ids=["line-uniform-noise", "cubic-normal-noise", "diabetes"],
)
def test_the_target_moments_the_lint_reads_are_the_datas(data, features):
    model = {"kind": "linear", "in_features": features, "out_features": 1}
    spec = JobSpec.model_validate(tiny_regression(data=data, model=model))
    y = load_data(spec, None).y_train.double()  # the worker's own rows
    mean, std = target_moments(spec.model_dump(mode="json")["data"])
    assert mean[0] == pytest.approx(float(y.mean()), rel=0.02) and std[0] == pytest.approx(float(y.std()), rel=0.02)


def on_dataset(dataset_id: str, standardize_target: bool = False) -> dict:
    """A regression on an uploaded dataset of 4 features (houses.csv's shape)."""
    data = {"source": "dataset", "dataset_id": dataset_id, "standardize_target": standardize_target}
    return tiny_regression(model={"kind": "linear", "in_features": 4, "out_features": 1}, data=data)


def uploaded(app) -> tuple[str, str]:
    """The ids of houses.csv (prices: mean 258, std 94) and of a dataset of 4 features whose targets are near unit scale."""
    rows = np.random.default_rng(0).normal(0, 1, (40, 5))
    csv = "a,b,c,d,y\n" + "\n".join(",".join(f"{v:.4f}" for v in row) for row in rows)
    houses = upload(app, HOUSES.read_bytes(), "houses.csv", target="price").json()
    unit = upload(app, csv.encode(), "unit.csv", target="y").json()
    return houses["id"], unit["id"]


def test_an_uploaded_datasets_targets_far_from_unit_scale_warn_until_standardized(make_app):
    app = make_app(workers=0).start()  # the jobs stay queued: the warnings are the subject
    houses, unit = uploaded(app)
    warned = app.submit(on_dataset(houses))
    (warning,) = target_warnings(warned)
    assert "the targets have mean 258 and std 94.3" in warning and "set data.standardize_target" in warning
    assert target_warnings(app.submit(on_dataset(houses, standardize_target=True))) == []
    assert target_warnings(app.submit(on_dataset(unit))) == []
    lints.CACHE.clear()  # a process that has not linted it yet reads the moments for one job too
    assert app.client.get(f"/v1/jobs/{warned['id']}").json()["warnings"] == warned["warnings"]
    # a dataset uploaded before moments were kept has none: no warning, and its jobs still answer
    app.query("UPDATE datasets SET target_moments = NULL WHERE id = :id", id=houses)
    lints.CACHE.clear()
    assert app.client.get(f"/v1/datasets/{houses}").json()["target_moments"] is None
    assert target_warnings(app.client.get(f"/v1/jobs/{warned['id']}").json()) == []


def test_a_list_page_reads_its_datasets_moments_in_one_statement(make_app):
    """However many jobs on uploaded datasets a page shows: one read for all their datasets, none once linted."""
    app = make_app(workers=0).start()
    houses, unit = uploaded(app)
    specs = [*[on_dataset(houses)] * 4, on_dataset(houses, standardize_target=True), *[on_dataset(unit)] * 3]
    warned = {app.submit(spec)["id"]: spec["data"]["dataset_id"] == houses and not spec["data"]["standardize_target"]
              for spec in specs}
    lints.CACHE.clear()  # as a process that shows these jobs for the first time
    with statements_run(get_engine()) as statements:
        first = app.client.get("/v1/jobs", params={"limit": 200}).json()["items"]
        reads_first = sum("FROM datasets" in statement for statement, _ in statements)
        statements.clear()
        second = app.client.get("/v1/jobs", params={"limit": 200}).json()["items"]
    assert reads_first == 1 and not any("FROM datasets" in statement for statement, _ in statements)
    assert {job["id"]: bool(target_warnings(job)) for job in first} == warned
    assert second == first


@pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (Debian's chromium; .ci/run installs it)")
def test_the_job_page_shows_the_warnings(served):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (the dev extra) is not installed")
    warned = served.submit(example("4_logistic_regression", epochs=5))
    plain = served.submit(tiny_regression(epochs=5))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=flags, headless=True)
        try:
            page = browser.new_page()
            page.goto(f"{served.client.base_url}/#/jobs/{warned['id']}")
            items = page.locator(".warnings li")
            sync_api.expect(items).to_have_count(1)
            sync_api.expect(items.first).to_have_text(warned["warnings"][0])
            page.goto(f"{served.client.base_url}/#/jobs/{plain['id']}")
            sync_api.expect(page.locator(".details")).to_contain_text(plain["id"])
            sync_api.expect(page.locator(".warnings")).to_be_hidden()
        finally:
            browser.close()
