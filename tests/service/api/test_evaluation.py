"""A job's `evaluation` and POST /v1/jobs/{id}/evaluate, end to end: equal to scikit-learn on /predict's answers."""

import numpy as np
import onnxruntime
import pytest
from sklearn import datasets
from sklearn import metrics as sk

from tests.conftest import shared_app
from tests.specs import tiny_regression

server = shared_app()  # the tests keep apart by their own jobs

# specs, training and measures: the service's shared paths they reach run on every back end elsewhere
pytestmark = pytest.mark.one_backend("no statement of their own")

IRIS = datasets.load_iris()


def iris_job(**model) -> dict:
    return {
        "model": {"kind": "mlp", "in_features": 4, "hidden": [16, 8], "out_features": 3, **model},
        "task": "classification",
        "data": {"source": "builtin", "name": "iris", "validation_fraction": 0.2, "test_fraction": 0.2,
                 "standardize": True},
        "loss": "cross_entropy",
        "optimizer": {"kind": "adam", "lr": 0.02, "schedule": {"kind": "cosine", "warmup_epochs": 5}},
        "epochs": 60,
        "batch_size": 16,
    }


def evaluate(server, job_id: str, body: dict):
    return server.client.post(f"/v1/jobs/{job_id}/evaluate", json=body)


def predict(server, job_id: str, rows) -> dict:
    response = server.client.post(f"/v1/jobs/{job_id}/predict", json={"inputs": np.asarray(rows).tolist()})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def classifier(server) -> dict:
    """Trained once for the module: the tests only read it."""
    job = server.train(iris_job(dropout=0.2, batch_norm=True, activation="gelu"))
    assert job["status"] == "succeeded", job
    return job


def test_a_finished_job_shows_its_evaluation_on_both_held_out_splits(classifier):
    evaluation = classifier["evaluation"]
    assert evaluation["validation"]["rows"] == 30 and evaluation["test"]["rows"] == 30
    for split in ("validation", "test"):
        measures = evaluation[split]
        assert 0.6 < measures["accuracy"] <= 1.0
        assert np.asarray(measures["confusion_matrix"]).sum() == 30
        assert len(measures["per_class"]) == 3 and measures["roc_auc"] is None
        assert {"log_loss", "precision", "recall", "f1"} <= set(measures)


def test_evaluate_equals_sklearn_on_predicts_answers(server, classifier):
    rows, labels = IRIS.data[::3], IRIS.target[::3]
    answer = predict(server, classifier["id"], rows)
    probs, pred = np.asarray(answer["probabilities"], dtype=np.float64), np.asarray(answer["predictions"])
    response = evaluate(server, classifier["id"], {"x": rows.tolist(), "y": labels.tolist()})
    assert response.status_code == 200, response.text
    got = response.json()
    assert got["accuracy"] == pytest.approx(sk.accuracy_score(labels, pred))
    assert got["log_loss"] == pytest.approx(sk.log_loss(labels, probs, labels=[0, 1, 2]), rel=1e-6)
    assert got["f1"] == pytest.approx(sk.f1_score(labels, pred, average="macro", zero_division=0))
    assert got["precision"] == pytest.approx(sk.precision_score(labels, pred, average="macro", zero_division=0))
    assert got["recall"] == pytest.approx(sk.recall_score(labels, pred, average="macro", zero_division=0))
    assert got["confusion_matrix"] == sk.confusion_matrix(labels, pred, labels=[0, 1, 2]).tolist()


def test_onnx_equals_predict_with_dropout_and_batch_norm(server, classifier):
    """Both answer in eval mode: no dropout, batch norm's running statistics."""
    session = onnxruntime.InferenceSession(
        server.client.get(f"/v1/jobs/{classifier['id']}/model.onnx").content, providers=["CPUExecutionProvider"]
    )
    rows = IRIS.data[::7].astype(np.float32)
    names = [o.name for o in session.get_outputs()]
    answers = dict(zip(names, session.run(None, {"input": rows})))
    expected = predict(server, classifier["id"], rows)
    assert predict(server, classifier["id"], rows) == expected  # no dropout draw: the same twice
    for name, values in expected.items():
        np.testing.assert_allclose(answers[name], values, rtol=1e-5, atol=1e-6)


def test_regression_evaluation_equals_sklearn(server):
    job = server.train(tiny_regression(
        data={"source": "synthetic", "generator": "linear", "n": 200, "slope": 2.0, "intercept": 1.0, "noise": 0.5,
              "noise_kind": "normal", "validation_fraction": 0.1, "test_fraction": 0.1},
        epochs=50,
    ))
    assert job["status"] == "succeeded", job
    test = job["evaluation"]["test"]
    assert test["rows"] == 20 and {"mse", "rmse", "mae", "r2"} <= set(test)
    assert test["rmse"] == pytest.approx(np.sqrt(test["mse"]))
    x = np.linspace(-3, 3, 40)
    y = 2 * x + 1 + np.random.default_rng(0).normal(scale=0.5, size=40)
    pred = np.asarray(predict(server, job["id"], x[:, None])["predictions"])
    got = evaluate(server, job["id"], {"x": x[:, None].tolist(), "y": y.tolist()}).json()
    assert got["mse"] == pytest.approx(sk.mean_squared_error(y, pred), rel=1e-6)
    assert got["mae"] == pytest.approx(sk.mean_absolute_error(y, pred), rel=1e-6)
    assert got["r2"] == pytest.approx(sk.r2_score(y, pred), rel=1e-6)


def test_binary_evaluation_gives_sklearns_roc_auc(server):
    job = server.train({
        "model": {"kind": "sequential", "input_shape": [30], "layers": [
            {"kind": "linear", "out_features": 8}, {"kind": "batch_norm"}, {"kind": "silu"},
            {"kind": "dropout", "rate": 0.1}, {"kind": "linear", "out_features": 1}]},
        "task": "classification",
        "data": {"source": "builtin", "name": "breast_cancer", "test_fraction": 0.25, "standardize": True},
        "loss": "bce",
        "optimizer": {"kind": "adam", "lr": 0.01, "clip_grad_norm": 5.0},
        "epochs": 20,
    })
    assert job["status"] == "succeeded", job
    assert job["evaluation"]["validation"] is None and job["evaluation"]["test"]["roc_auc"] > 0.8
    data = datasets.load_breast_cancer()
    rows, labels = data.data[::4], data.target[::4]
    probs = np.asarray(predict(server, job["id"], rows)["probabilities"])
    got = evaluate(server, job["id"], {"x": rows.tolist(), "y": labels.tolist()}).json()
    assert got["roc_auc"] == pytest.approx(sk.roc_auc_score(labels, probs[:, 1]), rel=1e-6)


def test_evaluate_takes_an_uploaded_dataset(server, classifier, tmp_path):
    path = tmp_path / "iris.npz"
    np.savez(path, x=IRIS.data[:60].astype(np.float32), y=IRIS.target[:60])
    with path.open("rb") as f:
        uploaded = server.client.post("/v1/datasets", files={"file": ("iris.npz", f)})
    assert uploaded.status_code == 201, uploaded.text
    by_dataset = evaluate(server, classifier["id"], {"dataset_id": uploaded.json()["id"]}).json()
    inline = evaluate(server, classifier["id"], {"x": IRIS.data[:60].tolist(), "y": IRIS.target[:60].tolist()}).json()
    assert by_dataset["confusion_matrix"] == inline["confusion_matrix"]
    assert by_dataset["log_loss"] == pytest.approx(inline["log_loss"], rel=1e-6)


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"x": [[1, 2, 3, 4]], "y": [7]}, ["body", "y"]),
        ({"x": [[1, 2, 3]], "y": [0]}, ["body", "x"]),
        ({"x": [[1, 2, 3, 4]]}, ["body"]),
        ({"x": [[1, 2, 3, 4]], "y": [0], "dataset_id": "d"}, ["body"]),
        ({"x": [[1, 2, 3, 4]], "y": [0.5]}, ["body", "y"]),
    ],
    ids=["label-out-of-range", "wrong-width", "y-missing", "both-sources", "fractional-label"],
)
def test_bad_evaluate_bodies_are_422_naming_the_field(server, classifier, body, loc):
    response = evaluate(server, classifier["id"], body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][: len(loc)] == loc


def test_evaluate_needs_a_succeeded_job_and_an_existing_dataset(server, classifier):
    assert evaluate(server, "nope", {"x": [[1, 2, 3, 4]], "y": [0]}).status_code == 404
    assert evaluate(server, classifier["id"], {"dataset_id": "nope"}).status_code == 404
