"""Open Inference Protocol v2, spoken by the real `tritonclient[http]` (JSON tensors), errors included."""

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.specs import example, long_job, tiny_regression


@pytest.fixture(scope="module")
def triton_client(served):
    url = f"{served.client.base_url.host}:{served.client.base_url.port}"
    client = triton.InferenceServerClient(url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def regression(served) -> str:
    return served.train(tiny_regression())["id"]


@pytest.fixture(scope="module")
def classifier(served) -> str:
    return served.train(example("5_softmax_classification", epochs=30))["id"]


def json_input(rows: np.ndarray) -> triton.InferInput:
    tensor = triton.InferInput("input", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows.astype(np.float32), binary_data=False)
    return tensor


def wanted(*names: str) -> list[triton.InferRequestedOutput]:
    return [triton.InferRequestedOutput(n, binary_data=False) for n in names]


def test_server_is_live_ready_and_describes_itself(triton_client):
    assert triton_client.is_server_live() and triton_client.is_server_ready()
    assert triton_client.get_server_metadata()["name"] == "fitserve"


def test_model_metadata_gives_tensors_with_a_batch_dimension(triton_client, regression, classifier):
    assert triton_client.is_model_ready(regression)
    meta = triton_client.get_model_metadata(regression)
    assert meta["name"] == regression
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 1]}]
    assert meta["outputs"] == [{"name": "predictions", "datatype": "FP32", "shape": [-1]}]
    outputs = triton_client.get_model_metadata(classifier)["outputs"]
    assert outputs == [
        {"name": "predictions", "datatype": "INT64", "shape": [-1]},
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
    ]


def test_infer_answers_what_predict_answers(served, triton_client, regression, classifier):
    rows = np.array([[-1.0], [0.0], [2.5]])
    result = triton_client.infer(regression, [json_input(rows)], outputs=wanted("predictions"))
    expected = served.client.post(f"/v1/jobs/{regression}/predict", json={"inputs": rows.tolist()}).json()
    np.testing.assert_allclose(result.as_numpy("predictions"), expected["predictions"], rtol=1e-6)
    points = np.array([[4.0, 4.0], [-4.0, -4.0], [-8.0, -8.0], [0.5, 0.0]])
    result = triton_client.infer(classifier, [json_input(points)], outputs=wanted("predictions", "probabilities"))
    expected = served.client.post(f"/v1/jobs/{classifier}/predict", json={"inputs": points.tolist()}).json()
    assert result.as_numpy("predictions").tolist() == expected["predictions"]
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected["probabilities"], rtol=1e-5)
    only = triton_client.infer(classifier, [json_input(points)], outputs=wanted("probabilities"))
    assert only.as_numpy("predictions") is None and only.as_numpy("probabilities").shape == (4, 3)


def error_of(call) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as caught:
        call()
    return caught.value


def test_errors_come_in_v2_shape_with_their_status(served, triton_client, regression):
    rows = np.array([[1.0]])
    missing = error_of(lambda: triton_client.infer("nope", [json_input(rows)]))
    assert missing.status() == "404" and "no model 'nope'" in missing.message()
    assert not triton_client.is_model_ready("nope")
    wrong_width = error_of(lambda: triton_client.infer(regression, [json_input(np.ones((2, 3)))]))
    assert wrong_width.status() == "400" and "1 numbers" in wrong_width.message()
    renamed = triton.InferInput("x", [1, 1], "FP32")
    renamed.set_data_from_numpy(rows.astype(np.float32), binary_data=False)
    assert "named 'input'" in error_of(lambda: triton_client.infer(regression, [renamed])).message()
    binary = triton.InferInput("input", [1, 1], "FP32")
    binary.set_data_from_numpy(rows.astype(np.float32), binary_data=True)
    assert triton_client.infer(regression, [binary]).as_numpy("predictions").shape == (1,)  # binary tensors work
    unknown_output = error_of(lambda: triton_client.infer(regression, [json_input(rows)], outputs=wanted("logits")))
    assert unknown_output.status() == "400" and "'logits'" in unknown_output.message()
    raw = served.client.post(f"/v2/models/{regression}/infer", content=b"{not json")
    assert raw.status_code == 400 and set(raw.json()) == {"error"}


def test_a_job_still_training_is_not_ready(served, triton_client):
    job = served.submit(long_job())
    assert not triton_client.is_model_ready(job["id"])
    early = error_of(lambda: triton_client.infer(job["id"], [json_input(np.array([[1.0]]))]))
    assert early.status() == "409" and "succeeded" in early.message()
    served.client.post(f"/v1/jobs/{job['id']}/cancel")


def test_an_alias_names_the_model_for_v2_clients(served, triton_client, regression):
    alias = f"line-{regression[:8]}"
    response = served.client.put(f"/v1/jobs/{regression}/alias", json={"alias": alias})
    assert response.status_code == 200 and response.json()["alias"] == alias
    assert triton_client.is_model_ready(alias)
    rows = np.array([[0.5], [2.0]], dtype=np.float32)
    by_alias = triton_client.infer(alias, [json_input(rows)], outputs=wanted("predictions"))
    by_id = triton_client.infer(regression, [json_input(rows)], outputs=wanted("predictions"))
    assert by_alias.as_numpy("predictions").tolist() == by_id.as_numpy("predictions").tolist()
    other = served.train(tiny_regression(epochs=3))["id"]
    taken = served.client.put(f"/v1/jobs/{other}/alias", json={"alias": alias})
    assert taken.status_code == 409 and regression in taken.json()["detail"]
    bad = served.client.put(f"/v1/jobs/{other}/alias", json={"alias": "no spaces allowed"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "alias"]
    assert served.client.delete(f"/v1/jobs/{regression}/alias").json()["alias"] is None
    with pytest.raises(InferenceServerException) as gone:
        triton_client.get_model_metadata(alias)
    assert "404" in str(gone.value) or "no model" in str(gone.value)


def test_an_output_named_twice_is_400_before_any_answer_is_built(server):
    """Repeats would send the whole tensor again each: 400 rows asked 400 times over was a 252 MB answer."""
    job = server.train(example("5_softmax_classification", epochs=5))
    infer = f"/v2/models/{job['id']}/infer"
    rows = {"name": "input", "shape": [2, 2], "datatype": "FP32", "data": [0.0, 1.0, 2.0, 3.0]}
    once = server.client.post(infer, json={"inputs": [rows], "outputs": [{"name": "probabilities"}]})
    assert once.status_code == 200 and [o["name"] for o in once.json()["outputs"]] == ["probabilities"]
    repeated = server.client.post(infer, json={"inputs": [rows], "outputs": [{"name": "probabilities"}] * 400})
    assert repeated.status_code == 400, repeated.text
    assert "'probabilities' is named twice" in repeated.json()["error"]
