"""Uploading datasets (CSV and NPZ, never unpickled) and training on them."""

import io
import pickle

import numpy as np
import pytest

from tests.specs import EXAMPLES, tiny_regression

HOUSES = EXAMPLES / "houses.csv"


def upload(server, content: bytes, filename: str, **form):
    return server.client.post("/v1/datasets", files={"file": (filename, content)}, data=form)


def test_csv_upload_is_described_and_trains(server):
    rows = "\n".join(f"{x},{2 * x},{3 * x + 1}" for x in np.linspace(-1, 1, 40))
    response = upload(server, f"a,b,target\n{rows}\n".encode(), "line.csv", target="target")
    assert response.status_code == 201, response.text
    dataset = response.json()
    assert response.headers["location"] == f"/v1/datasets/{dataset['id']}"
    assert dataset["format"] == "csv" and dataset["n_rows"] == 40 and dataset["sample_shape"] == [2]
    assert server.client.get(f"/v1/datasets/{dataset['id']}").json() == dataset

    spec = tiny_regression(
        model={"kind": "linear", "in_features": 2, "out_features": 1},
        data={"source": "dataset", "dataset_id": dataset["id"]},
        epochs=300,
    )
    job = server.train(spec)
    assert job["status"] == "succeeded", job
    assert job["metrics"]["loss"] < 1e-3
    pred = server.client.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": [[0.5, 1.0]]}).json()
    assert pred["predictions"][0] == pytest.approx(2.5, abs=0.05)


def test_the_upload_answers_its_target_moments(server):
    """houses.csv's prices (in thousands): mean 258, std 94, what the target-scale lint reads for its jobs."""
    response = upload(server, HOUSES.read_bytes(), "houses.csv", target="price")
    assert response.status_code == 201, response.text
    dataset = response.json()
    prices = np.loadtxt(HOUSES, delimiter=",", skiprows=1)[:, -1]
    assert dataset["target_moments"]["mean"] == [pytest.approx(prices.mean(), rel=1e-5)]
    assert dataset["target_moments"]["std"] == [pytest.approx(prices.std(), rel=1e-5)]
    assert server.client.get(f"/v1/datasets/{dataset['id']}").json() == dataset
    listed = server.client.get("/v1/datasets").json()["items"]
    assert listed == [dataset]


def test_npz_upload_with_class_labels_trains_a_classifier(server):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(2, 0.5, (50, 3)), rng.normal(-2, 0.5, (50, 3))]).astype(np.float32)
    y = np.repeat([0, 1], 50)
    buf = io.BytesIO()
    np.savez(buf, x=x, y=y)
    dataset = upload(server, buf.getvalue(), "blobs.npz").json()
    assert dataset["format"] == "npz" and dataset["n_classes"] == 2
    assert dataset["target_moments"] == {"mean": [0.5], "std": [0.5]}  # labels keep them too
    spec = {
        "model": {"kind": "linear", "in_features": 3, "out_features": 1},
        "task": "classification",
        "data": {"source": "dataset", "dataset_id": dataset["id"], "validation_fraction": 0.2},
        "loss": "bce",
        "optimizer": {"kind": "adam", "lr": 0.05},
        "epochs": 100,
    }
    job = server.train(spec)
    assert job["status"] == "succeeded", job
    assert job["metrics"]["val_accuracy"] == 1.0
    probs = server.client.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": [[2, 2, 2]]}).json()
    assert probs["predictions"] == [0] and probs["probabilities"][0][0] > 0.9


def test_npz_with_pickled_objects_is_refused(server):
    buf = io.BytesIO()
    np.savez(buf, x=np.array([object(), 1], dtype=object), y=np.array([1, 2]))
    response = upload(server, buf.getvalue(), "evil.npz")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "file"]
    assert "Object arrays cannot be loaded" in response.json()["detail"][0]["msg"]


def test_a_pickle_file_is_not_a_dataset(server):
    response = upload(server, pickle.dumps({"x": [1, 2]}), "data.pkl", target="y")
    assert response.status_code == 422


@pytest.mark.parametrize(
    "content,form,needle",
    [
        (b"a,y\n1,2\n3,oops\n", {"target": "y"}, "line 3"),
        (b"a,y\n1,2\n3\n", {"target": "y"}, "line 3"),
        (b"a,y\n1,2\n", {"target": "label"}, "label"),
        (b"a,y\n1,2\n", {}, "target"),
        (b"a,y\n", {"target": "y"}, "no data rows"),
        (b"a,y\n1,inf\n", {"target": "y"}, "not finite"),
    ],
    ids=["not-a-number", "short-row", "unknown-target", "no-target", "no-rows", "infinite"],
)
def test_malformed_csv_is_422_saying_where(server, content, form, needle):
    response = upload(server, content, "bad.csv", **form)
    assert response.status_code == 422, response.text
    assert needle in response.json()["detail"][0]["msg"]


def test_job_on_a_dataset_checks_its_shape(server):
    dataset = upload(server, b"a,b,y\n1,2,3\n4,5,6\n", "two.csv", target="y").json()
    spec = tiny_regression(data={"source": "dataset", "dataset_id": dataset["id"]})
    response = server.client.post("/v1/jobs", json=spec)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "model", "in_features"]
