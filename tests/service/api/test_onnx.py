"""GET /v1/jobs/{id}/model.onnx: onnxruntime gives what /predict gives, at any batch size."""

import numpy as np
import onnxruntime
import pytest

from tests.conftest import shared_app
from tests.specs import example, large_targets, long_job, tiny_regression

server = shared_app()  # the tests keep apart by their own jobs

RNG = np.random.default_rng(0)


def onnx_session(server, job_id: str) -> onnxruntime.InferenceSession:
    response = server.client.get(f"/v1/jobs/{job_id}/model.onnx")
    assert response.status_code == 200 and response.headers["content-type"] == "application/onnx"
    return onnxruntime.InferenceSession(response.content, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize(
    ("spec", "rows"),
    [
        (tiny_regression(), RNG.normal(size=(7, 1))),
        (example("5_softmax_classification", epochs=20), RNG.normal(scale=5, size=(5, 2))),
        (example("6_cnn_digits", epochs=1), RNG.uniform(0, 16, size=(3, 1, 8, 8))),
    ],
    ids=["linear-regression", "mlp-softmax", "cnn-digits"],
)
def test_onnx_gives_the_same_answers_as_predict(server, spec, rows):
    job = server.train(spec)
    assert job["status"] == "succeeded", job
    session = onnx_session(server, job["id"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    names = [o.name for o in session.get_outputs()]
    answers = dict(zip(names, session.run(None, {"input": rows.astype(np.float32)})))
    expected = server.client.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": rows.tolist()}).json()
    assert set(answers) == set(expected)
    for name, values in expected.items():
        np.testing.assert_allclose(answers[name], values, rtol=1e-5, atol=1e-6)


def test_a_job_with_standardized_targets_exports_answers_in_the_targets_units(server):
    job = server.train(large_targets(standardize_target=True))
    assert job["status"] == "succeeded", job
    rows = np.array([[-0.5], [0.0], [0.5]], dtype=np.float32)
    (predictions,) = onnx_session(server, job["id"]).run(None, {"input": rows})
    expected = server.client.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": rows.tolist()}).json()
    np.testing.assert_allclose(predictions, expected["predictions"], rtol=1e-5)
    np.testing.assert_allclose(predictions, 5000 * rows[:, 0] + 20000, atol=100)  # the line, not its z-scores


def test_only_a_succeeded_job_exports(server):
    assert server.client.get("/v1/jobs/nope/model.onnx").status_code == 404
    job = server.submit(long_job())
    response = server.client.get(f"/v1/jobs/{job['id']}/model.onnx")
    assert response.status_code == 409 and "succeeded" in response.json()["detail"]
    server.client.post(f"/v1/jobs/{job['id']}/cancel")
