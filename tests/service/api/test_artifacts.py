"""The weights file and the ONNX file, read as docs/artifacts.md describes them, with no fitserve code.

The rebuild below uses only torch, safetensors and the documentation: if the layout changes, this
test and the page must change together.
"""

import json

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load

from tests.specs import example, large_targets, tiny_regression

RNG = np.random.default_rng(0)
ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}
BCE_LOGISTIC = {
    "model": {"kind": "linear", "in_features": 2, "out_features": 1, "output_activation": "sigmoid"},
    "task": "classification",
    "data": {"source": "synthetic", "generator": "blobs", "standardize": True,
             "clusters": [{"mean": [2, 2], "std": 1, "n": 50}, {"mean": [-2, -2], "std": 1, "n": 50}]},
    "loss": "bce",
    "optimizer": {"kind": "sgd", "lr": 0.1},
    "epochs": 30,
}
MLP_TANH = {
    **tiny_regression(epochs=30),
    "model": {"kind": "mlp", "in_features": 1, "hidden": [8, 4], "out_features": 1, "activation": "tanh"},
}
CASES = [
    (tiny_regression(data={"source": "synthetic", "generator": "linear", "n": 50, "low": 5, "high": 9,
                           "slope": 2.0, "intercept": 1.0, "standardize": True}), RNG.uniform(5, 9, size=(6, 1))),
    (MLP_TANH, RNG.normal(size=(5, 1))),
    (example("5_softmax_classification", epochs=20), RNG.normal(scale=5, size=(5, 2))),
    (example("4_logistic_regression", epochs=20), RNG.normal(scale=5, size=(4, 2))),
    (BCE_LOGISTIC, RNG.normal(scale=3, size=(4, 2))),
    (example("6_cnn_digits", epochs=1), RNG.uniform(0, 16, size=(3, 1, 8, 8))),
    ({**large_targets(standardize_target=True, epochs=30), "model": MLP_TANH["model"]}, RNG.uniform(-1, 1, size=(4, 1))),
]
IDS = ["linear-standardized", "mlp-tanh", "mlp-softmax", "linear-sigmoid-cross-entropy", "linear-bce", "cnn-digits",
       "mlp-standardized-targets"]


def dense(h: torch.Tensor, t: dict, index: int, widths: list[int], activation: str) -> tuple[torch.Tensor, int]:
    """Linear layers through `widths`, the activation between two of them (taking an index of its own)."""
    for layer in range(len(widths) - 1):
        h = F.linear(h, t[f"{index}.weight"], t[f"{index}.bias"])
        index += 1
        if layer < len(widths) - 2:
            h, index = ACTIVATIONS[activation](h), index + 1
    return h, index


def network_outputs(spec: dict, t: dict, x: torch.Tensor) -> torch.Tensor:
    """The last layer's output, walking the layer table of docs/artifacts.md."""
    m = spec["model"]
    sample = tuple(t["0.mean"].shape)
    h = (x.reshape(len(x), *sample) - t["0.mean"]) / t["0.std"]
    index = 1
    if m["kind"] == "cnn":
        for block in m["conv"]:
            h = F.conv2d(h, t[f"{index}.weight"], t[f"{index}.bias"], stride=block["stride"], padding=block["padding"])
            h, index = ACTIVATIONS[m["activation"]](h), index + 2
            if block["pool"] is not None:
                pool = F.max_pool2d if block["pool"]["kind"] == "max" else F.avg_pool2d
                h, index = pool(h, block["pool"]["size"]), index + 1
        h, index = h.flatten(1), index + 1
        widths = [h.shape[1], *m["hidden"], m["out_features"]]
    else:
        widths = [m["in_features"], *m.get("hidden", []), m["out_features"]]
    h, index = dense(h, t, index, widths, m.get("activation", "relu"))
    if m["output_activation"] == "sigmoid":
        h = torch.sigmoid(h)
    elif m["output_activation"] == "softmax":
        h = torch.softmax(h, dim=1)
    index += m["output_activation"] is not None
    if spec["data"]["standardize_target"]:
        h = h * t[f"{index}.std"] + t[f"{index}.mean"]
    return h


def answers(spec: dict, out: torch.Tensor) -> dict:
    """The outputs-to-answers table of docs/artifacts.md."""
    if spec["task"] == "regression":
        return {"predictions": out[:, 0] if out.shape[1] == 1 else out}
    activation = spec["model"]["output_activation"]
    if spec["loss"] == "bce":
        q = out if activation == "sigmoid" else torch.sigmoid(out)
        p = torch.cat([1 - q, q], dim=1)
    else:
        p = out if activation == "softmax" else torch.softmax(out, dim=1)
    return {"predictions": p.argmax(dim=1), "probabilities": p}


def check_same(ours: dict, expected: dict) -> None:
    assert set(ours) == set(expected)
    for name, values in expected.items():
        np.testing.assert_allclose(np.asarray(ours[name]), np.asarray(values), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("spec", "rows"), CASES, ids=IDS)
def test_the_weights_file_rebuilt_from_the_docs_answers_as_predict(server, spec, rows):
    job = server.train(spec)
    assert job["status"] == "succeeded", job
    blob = server.client.get(f"/v1/jobs/{job['id']}/weights").content
    header = json.loads(blob[8 : 8 + int.from_bytes(blob[:8], "little")])
    stored = json.loads(header["__metadata__"]["fitserve.spec"])
    assert stored == job["spec"]
    tensors = load(blob)
    assert all(t.dtype == torch.float32 for t in tensors.values())
    if spec["data"].get("standardize"):
        assert not torch.equal(tensors["0.mean"], torch.zeros_like(tensors["0.mean"]))  # the fitted transform
    if spec["data"].get("standardize_target"):
        last = max(int(name.split(".")[0]) for name in tensors)
        assert tensors[f"{last}.std"].shape == (1,) and tensors[f"{last}.std"] > 1000  # the fitted target scale
    with torch.no_grad():
        ours = answers(stored, network_outputs(stored, tensors, torch.tensor(rows, dtype=torch.float32)))
    expected = server.client.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": rows.tolist()}).json()
    check_same(ours, expected)


@pytest.mark.parametrize(("spec", "rows"), [CASES[i] for i in (0, 2, 4, 6)], ids=[IDS[i] for i in (0, 2, 4, 6)])
def test_the_onnx_file_carries_its_spec_and_classes_and_answers_as_predict(server, spec, rows):
    job = server.train(spec)
    assert job["status"] == "succeeded", job
    blob = server.client.get(f"/v1/jobs/{job['id']}/model.onnx").content
    props = {p.key: p.value for p in onnx.load_model_from_string(blob).metadata_props}
    assert json.loads(props["fitserve.spec"]) == job["spec"]
    assert props["fitserve.job_id"] == job["id"] and props["fitserve.task"] == spec["task"]
    assert props["fitserve.version"]
    k = 2 if spec.get("loss") == "bce" else spec["model"]["out_features"]
    assert ("fitserve.classes" in props) == (spec["task"] == "classification")
    session = onnxruntime.InferenceSession(blob, providers=["CPUExecutionProvider"])
    assert session.get_modelmeta().custom_metadata_map == props
    names = [o.name for o in session.get_outputs()]
    ours = dict(zip(names, session.run(None, {"input": rows.astype(np.float32)})))
    expected = server.client.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": rows.tolist()}).json()
    check_same(ours, expected)
    if spec["task"] == "classification":
        assert json.loads(props["fitserve.classes"]) == list(range(k)) and ours["probabilities"].shape[1] == k
