"""Answers with a size estimate are refused before they are built when over FITSERVE_MAX_RESPONSE_BYTES (1 MiB here)."""

import pytest

from tests.specs import tiny_regression

CLASSES = 512  # a row's answer: a label and 512 probabilities, ~12 KB of JSON; 1 MiB holds 85 rows
BUDGET = 1024 * 1024


@pytest.fixture
def budgeted(make_app):
    return make_app(workers=1, FITSERVE_MAX_RESPONSE_BYTES=str(BUDGET)).start()


def wide_classifier() -> dict:
    rows = 600
    x = [[(i % 7) * 0.1, (i % 5) * 0.2, (i % 3) * 0.3, (i % 11) * 0.05] for i in range(rows)]
    return {
        "model": {"kind": "mlp", "in_features": 4, "hidden": [512], "out_features": CLASSES,
                  "output_activation": "softmax"},
        "task": "classification",
        "data": {"source": "inline", "x": x, "y": [i % CLASSES for i in range(rows)]},
        "loss": "cross_entropy",
        "optimizer": {"kind": "sgd", "lr": 0.01},
        "epochs": 2,
    }


def assert_names_budget(response) -> None:
    assert response.status_code == 413, response.text
    assert "FITSERVE_MAX_RESPONSE_BYTES" in response.text


def test_predictions_past_the_response_budget_are_413_naming_it_and_those_within_are_answered(budgeted):
    job = budgeted.train(wide_classifier())
    assert job["status"] == "succeeded", job
    many, few = [[0.1, 0.2, 0.3, 0.4]] * 1000, [[0.1, 0.2, 0.3, 0.4]] * 20
    refused = budgeted.client.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": many})
    assert_names_budget(refused)
    assert "at most 85 rows" in refused.json()["detail"]
    answered = budgeted.client.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": few})
    assert answered.status_code == 200 and len(answered.json()["probabilities"]) == 20

    body = {"inputs": [{"name": "input", "shape": [1000, 4], "datatype": "FP32", "data": sum(many, [])}]}
    infer = budgeted.client.post(f"/v2/models/{job['id']}/infer", json=body)
    assert infer.status_code == 413 and "FITSERVE_MAX_RESPONSE_BYTES" in infer.json()["error"], infer.text
    config = budgeted.client.get(f"/v2/models/{job['id']}/config").json()
    assert config["max_batch_size"] == 85

    measured = budgeted.client.post(f"/v1/jobs/{job['id']}/evaluate", json={"x": few, "y": [0] * 20})
    assert_names_budget(measured)  # a 512 x 512 confusion matrix
    onnx = budgeted.client.get(f"/v1/jobs/{job['id']}/model.onnx")
    assert_names_budget(onnx)  # 264,000 weights: just over 1 MiB


def test_a_curve_page_holds_no_more_points_than_the_response_budget(budgeted):
    job = budgeted.train(tiny_regression(epochs=5000))
    page = budgeted.client.get(f"/v1/jobs/{job['id']}/metrics").json()
    assert page["total_points"] == 5000
    assert len(page["points"]) == BUDGET // 256 and page["has_more"]
    rest = budgeted.client.get(f"/v1/jobs/{job['id']}/metrics", params={"since_step": page["next_since_step"]}).json()
    assert len(page["points"]) + len(rest["points"]) == 5000
