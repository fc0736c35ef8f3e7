"""Every model family of the tutorial trains through the service to the quality a hand-written loop gets."""

import pytest
import torch
from torch import nn

from tests.conftest import shared_app
from tests.specs import example, large_targets

server = shared_app()  # the tests keep apart by their own jobs

# the trainer's numbers: the job, curve and weight writes they pass through run on every back end elsewhere
pytestmark = pytest.mark.one_backend("no statement of their own")


def test_linear_gradient_descent_matches_a_hand_written_loop(server):
    """Example 1 in full: the service's final loss is the hand-written loop's, to float precision."""
    spec = example("1_linear_gradient_descent")
    job = server.train(spec)
    assert job["status"] == "succeeded", job

    torch.manual_seed(spec["seed"] if "seed" in spec else 0)
    model = nn.Linear(1, 1)
    with torch.no_grad():
        model.weight.uniform_(0, 1)
        model.bias.uniform_(0, 1)
    x = torch.tensor(spec["data"]["x"]).unsqueeze(1)
    y = torch.tensor(spec["data"]["y"]).unsqueeze(1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    for _ in range(spec["epochs"]):
        loss = ((model(x) - y) ** 2).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert job["metrics"]["loss"] == pytest.approx(loss.item(), rel=1e-4)
    served = server.client.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": [10.0]}).json()
    assert served["predictions"][0] == pytest.approx(model(torch.tensor([[10.0]])).item(), rel=1e-4)


def test_linear_regression_recovers_slope_and_mean_noise(server):
    # y = x + 1.2 * U(0,1): the best line is y = x + 0.6
    spec = example("2_linear_regression", epochs=300, optimizer={"kind": "sgd", "lr": 0.1})
    job = server.train(spec)
    assert job["status"] == "succeeded", job
    pred = server.client.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": [[0.0], [2.0]]}).json()
    at0, at2 = pred["predictions"]
    assert at0 == pytest.approx(0.6, abs=0.05)
    assert (at2 - at0) / 2 == pytest.approx(1.0, abs=0.05)
    assert job["metrics"]["loss"] == pytest.approx(1.2**2 / 12, rel=0.1)  # the noise's variance


def test_mlp_fits_a_cubic(server):
    spec = example("3_nonlinear_mlp", epochs=3000)
    spec["data"]["n"] = 2000
    job = server.train(spec)
    assert job["status"] == "succeeded", job
    assert job["metrics"]["loss"] < 0.5  # from ~50 at the start; the noise alone is 0.14
    pred = server.client.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": [[-2.0], [2.0]]}).json()
    assert pred["predictions"] == pytest.approx([-8 + 0.65, 8 + 0.65], abs=1.0)


def test_standardized_targets_fit_a_line_of_scale_ten_thousand_where_raw_ones_stay_poor(server):
    """y = 5000 x + 20000 + 100 N(0, 1) on x in [-1, 1], Adam at lr 0.05 for 200 epochs."""
    raw, scaled = server.submit(large_targets()), server.submit(large_targets(standardize_target=True))
    raw, scaled = server.wait_for(raw["id"]), server.wait_for(scaled["id"])
    assert raw["status"] == scaled["status"] == "succeeded", (raw, scaled)
    assert raw["evaluation"]["test"]["r2"] < 0  # worse than the mean: its outputs never left the unit scale
    test = scaled["evaluation"]["test"]  # measured in the targets' units
    assert test["r2"] > 0.99 and test["mae"] < 2 * 80  # the noise's own MAE is 100 * sqrt(2 / pi) = 80
    assert scaled["metrics"]["loss"] < 0.01  # the curve is in standardized units: 100² / 2900² ~ 0.0012 at best
    pred = server.client.post(f"/v1/jobs/{scaled['id']}/predict", json={"inputs": [[-0.5], [0.5]]}).json()
    assert pred["predictions"] == pytest.approx([17500, 22500], abs=100)


def test_logistic_regression_separates_two_clusters(server):
    job = server.train(example("4_logistic_regression"))
    assert job["status"] == "succeeded", job
    assert job["metrics"]["accuracy"] > 0.97
    pred = server.client.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": [[4, 4], [-4, -4]]}).json()
    assert pred["predictions"] == [0, 1]
    assert all(sum(row) == pytest.approx(1.0) for row in pred["probabilities"])


def test_softmax_classifies_three_clusters(server):
    job = server.train(example("5_softmax_classification", epochs=2000))
    assert job["status"] == "succeeded", job
    assert job["metrics"]["accuracy"] > 0.95
    pred = server.client.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": [[4, 4], [-4, -4], [-8, -8]]}).json()
    assert pred["predictions"] == [0, 1, 2]
    assert all(sum(row) == pytest.approx(1.0, abs=1e-5) for row in pred["probabilities"])


def test_cnn_learns_the_digits_with_a_validation_split(server):
    job = server.train(example("6_cnn_digits", epochs=15))
    assert job["status"] == "succeeded", job
    metrics = job["metrics"]
    assert metrics["val_accuracy"] > 0.93 and metrics["val_loss"] is not None
    curve = server.client.get(f"/v1/jobs/{job['id']}/metrics").json()["points"]
    assert len(curve) == 15 and all(p["val_accuracy"] is not None for p in curve)
    image = [[[0.0] * 8 for _ in range(8)]]  # one 1x8x8 image
    pred = server.client.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": [image, image]}).json()
    assert len(pred["probabilities"]) == 2 and len(pred["probabilities"][0]) == 10
