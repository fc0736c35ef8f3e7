"""Open Inference Protocol v2 as its own tools expect it: tritonclient with and without versions, with JSON and binary
tensors, Triton's config, repository index and statistics; the protocol's `{"error": ...}` for every error under
/v2; and schemathesis against the official REST specification (tests/data/open_inference_rest.yaml)."""

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.conftest import ROOT, Server, train_beside
from tests.specs import example, tiny_regression

SPEC = Path(__file__).resolve().parents[2] / "data" / "open_inference_rest.yaml"
HEADER = "Inference-Header-Content-Length"


# The protocol as its own tools speak it, on the module's server: v2's statements (models by id and alias, their
# owners) run on every back end in test_v2.py and test_fuzz.py, so these run on one.
as_its_tools_speak_it = pytest.mark.one_backend("protocol conformance; v2's statements run on every back end in test_v2.py")


@pytest.fixture(scope="module")
def oip(tmp_path_factory, databases) -> Server:
    """A server of this module's own: no rate limit, as schemathesis is one fast caller; no workers (its models are
    trained beside it)."""
    path = tmp_path_factory.mktemp("oip") / "oip.db"
    srv = Server(
        path, workers=0, db_url=databases.create(path),
        FITSERVE_RATE_LIMIT_PER_SECOND="100000", FITSERVE_RATE_LIMIT_BURST="100000",
    ).start()
    yield srv
    srv.stop()
    databases.drop(srv.db_url)


@pytest.fixture(scope="module")
def regression(oip) -> str:
    job, = train_beside(oip, tiny_regression())
    assert job["status"] == "succeeded", job
    return job["id"]


@pytest.fixture(scope="module")
def classifier(oip) -> str:
    job, = train_beside(oip, example("5_softmax_classification", epochs=30))
    assert job["status"] == "succeeded", job
    return job["id"]


def triton_client(srv: Server) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(f"{srv.client.base_url.host}:{srv.client.base_url.port}")


@pytest.fixture(scope="module")
def client(oip):
    client = triton_client(oip)
    yield client
    client.close()


def error_of(call) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as caught:
        call()
    return caught.value


def tensor(rows: np.ndarray, datatype: str = "FP32", binary: bool = True) -> triton.InferInput:
    """tritonclient's input; binary (raw bytes after the JSON) is its default."""
    t = triton.InferInput("input", list(rows.shape), datatype)
    t.set_data_from_numpy(rows, binary_data=binary)
    return t


@as_its_tools_speak_it
def test_metadata_and_readiness_with_and_without_a_version(client, regression):
    for version in ("", "1"):
        assert client.is_model_ready(regression, version)
        meta = client.get_model_metadata(regression, version)
        assert meta["name"] == regression and meta["versions"] == ["1"]
        assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 1]}]
    assert not client.is_model_ready(regression, "2")
    missing = error_of(lambda: client.get_model_metadata(regression, "2"))
    assert missing.status() == "404" and "version '2'" in missing.message()
    assert client.get_server_metadata()["extensions"] == ["binary_tensor_data", "statistics"]


@as_its_tools_speak_it
def test_infer_with_json_and_binary_tensors_with_and_without_a_version(oip, client, regression, classifier):
    rows = np.array([[-1.0], [0.0], [2.5]], dtype=np.float32)
    expected = oip.client.post(f"/v1/jobs/{regression}/predict", json={"inputs": rows.tolist()}).json()["predictions"]
    for version in ("", "1"):
        for binary in (False, True):
            outputs = [triton.InferRequestedOutput("predictions", binary_data=binary)]
            result = client.infer(regression, [tensor(rows, binary=binary)], model_version=version, outputs=outputs)
            np.testing.assert_allclose(result.as_numpy("predictions"), expected, rtol=1e-6)
            sent = result.get_response()["outputs"][0]
            assert ("parameters" in sent) is binary and ("data" in sent) is not binary
            assert result.get_response()["model_version"] == "1"
    wrong = error_of(lambda: client.infer(regression, [tensor(rows)], model_version="7"))
    assert wrong.status() == "404" and "version '7'" in wrong.message()

    # tritonclient's defaults: binary inputs, and with no outputs named, every output in binary
    points = np.array([[4.0, 4.0], [-4.0, -4.0], [-8.0, -8.0], [0.5, 0.0]])
    answer = oip.client.post(f"/v1/jobs/{classifier}/predict", json={"inputs": points.tolist()}).json()
    result = client.infer(classifier, [tensor(points.astype(np.float32))])
    assert result.as_numpy("predictions").dtype == np.int64
    assert result.as_numpy("predictions").tolist() == answer["predictions"]
    np.testing.assert_allclose(result.as_numpy("probabilities"), answer["probabilities"], rtol=1e-5)
    sizes = [o["parameters"]["binary_data_size"] for o in result.get_response()["outputs"]]
    assert sizes == [4 * 8, 4 * 3 * 4]
    # other numeric datatypes arrive as their own bytes and are read as numbers
    for datatype, dtype in [("FP64", np.float64), ("INT32", np.int32), ("FP16", np.float16)]:
        typed = client.infer(classifier, [tensor(points.astype(dtype), datatype)])
        assert typed.as_numpy("predictions").tolist() == answer["predictions"]
    mixed = client.infer(
        classifier, [tensor(points.astype(np.float32), binary=False)],
        outputs=[triton.InferRequestedOutput("predictions", binary_data=False),
                 triton.InferRequestedOutput("probabilities", binary_data=True)],
    )
    assert mixed.as_numpy("predictions").tolist() == answer["predictions"]
    assert mixed.as_numpy("probabilities").shape == (4, 3)


def post_binary(srv: Server, model: str, header: dict, raw: bytes, length: int | None = None, **headers):
    head = json.dumps(header).encode()
    return srv.client.post(
        f"/v2/models/{model}/infer", content=head + raw, headers={HEADER: str(len(head) if length is None else length), **headers}
    )


def one_input(shape: list[int], size: int | None, **extra) -> dict:
    parameters = {"binary_data_size": size} if size is not None else {}
    return {"inputs": [{"name": "input", "shape": shape, "datatype": "FP32", "parameters": parameters, **extra}]}


@as_its_tools_speak_it
def test_binary_sizes_must_match_shapes_and_body(oip, regression):
    one = struct.pack("<f", 1.5)
    assert post_binary(oip, regression, one_input([1, 1], 4), one).status_code == 200
    cases = [
        (post_binary(oip, regression, one_input([1, 1], 8), one + one), "takes 4 bytes"),
        (post_binary(oip, regression, one_input([2, 1], 8), one), "short"),
        (post_binary(oip, regression, one_input([1, 1], 4), one + b"\0\0\0\0"), "binary_data_size adds up to 4"),
        (post_binary(oip, regression, one_input([1, 1], 4), one, length=10_000), HEADER),
        (post_binary(oip, regression, one_input([1, 1], 4, data=[1.0]), one), "either data or"),
        (post_binary(oip, regression, one_input([1, 1], -4), one), "byte count"),
        (post_binary(oip, regression, one_input([1, 1], None, data=[1.0]), one), "binary_data_size adds up to 0"),
    ]
    for response, words in cases:
        assert response.status_code == 400 and set(response.json()) == {"error"}, response.text
        assert words in response.json()["error"], response.text
    # raw bytes may hold any byte: 0x5B is "[", 400 of them would nest past FITSERVE_MAX_JSON_DEPTH were they JSON
    brackets = b"\x5b" * 400
    answer = post_binary(oip, regression, one_input([100, 1], 400), brackets)
    assert answer.status_code == 200 and len(answer.json()["outputs"][0]["data"]) == 100
    nan = post_binary(oip, regression, one_input([1, 1], 4), struct.pack("<f", float("nan")))
    assert nan.status_code == 400 and "finite" in nan.json()["error"]


@as_its_tools_speak_it
def test_model_config_repository_index_and_statistics(oip, client, regression, classifier):
    config = client.get_model_config(regression)
    assert config == client.get_model_config(regression, "1")
    assert config["name"] == regression and config["max_batch_size"] >= 1
    assert config["input"] == [{"name": "input", "data_type": "TYPE_FP32", "dims": [1]}]
    assert config["output"] == [{"name": "predictions", "data_type": "TYPE_FP32", "dims": [1], "reshape": {"shape": []}}]
    assert client.get_model_config(classifier)["output"][1]["dims"] == [3]
    assert error_of(lambda: client.get_model_config(regression, "2")).status() == "404"

    index = client.get_model_repository_index()
    assert {"name": regression, "version": "1", "state": "READY", "reason": ""} in index
    assert {m["name"] for m in index} >= {regression, classifier}

    def counts(model: str, version: str = "") -> dict:
        (stats,) = client.get_inference_statistics(model, version)["model_stats"]
        return stats

    before = counts(regression)
    client.infer(regression, [tensor(np.ones((3, 1), np.float32))])
    error_of(lambda: client.infer(regression, [tensor(np.ones((2, 2), np.float32))]))  # wrong width: a failure
    after = counts(regression, "1")
    assert after["name"] == regression and after["version"] == "1"
    assert after["inference_count"] == before["inference_count"] + 3
    assert after["execution_count"] == before["execution_count"] + 1
    assert after["inference_stats"]["success"]["count"] == before["inference_stats"]["success"]["count"] + 1
    assert after["inference_stats"]["fail"]["count"] == before["inference_stats"]["fail"]["count"] + 1
    assert after["inference_stats"]["compute_infer"]["ns"] > before["inference_stats"]["compute_infer"]["ns"]
    assert regression in {s["name"] for s in client.get_inference_statistics()["model_stats"]}
    assert error_of(lambda: client.get_inference_statistics("nope")).status() == "404"


def assert_v2_error(response: httpx.Response, status: int, words: str = "") -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and words in body["error"], body


@as_its_tools_speak_it
def test_every_error_under_v2_is_the_protocols_body_and_v1_keeps_detail(oip, regression):
    http = oip.client
    assert_v2_error(http.get("/v2/nowhere"), 404, "no route /v2/nowhere")
    assert_v2_error(http.get(f"/v2/models/{regression}/versions/1/nowhere"), 404)
    assert_v2_error(http.get("/v2/models/nope/versions/1"), 404, "no model 'nope'")
    wrong_method = http.delete(f"/v2/models/{regression}")
    assert_v2_error(wrong_method, 405)
    assert "GET" in wrong_method.headers["allow"]
    assert_v2_error(http.get(f"/v2/models/{regression}/infer"), 405)
    infer = f"/v2/models/{regression}/versions/1/infer"
    assert_v2_error(http.post(infer, content=b"{not json"), 400, "not JSON")
    assert_v2_error(http.post(infer, content=b"\t\xff"), 400, "not JSON")  # not UTF-8 either
    assert_v2_error(http.post(infer, json={"inputs": "x"}), 400, "inputs")
    assert_v2_error(http.post(infer, content=b"[" * 100 + b"]" * 100), 400, "FITSERVE_MAX_JSON_DEPTH")
    text = http.post(infer, content=b"[" * 100 + b"]" * 100, headers={"content-type": "text/plain"})
    assert_v2_error(text, 400, "FITSERVE_MAX_JSON_DEPTH")
    assert http.get("/v1/nowhere").json() == {"detail": "Not Found"}
    assert set(http.delete("/v1/jobs").json()) == {"detail"}
    assert http.get("/v2/").json()["name"] == "fitserve"


@as_its_tools_speak_it
def test_openapi_declares_the_infer_request_body(oip):
    doc = oip.client.get("/openapi.json").json()
    for path in ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"):
        body = doc["paths"][path]["post"]["requestBody"]
        schema = body["content"]["application/json"]["schema"]
        assert schema["required"] == ["inputs"] and {"id", "parameters", "inputs", "outputs"} <= set(schema["properties"])
        assert schema["properties"]["inputs"]["items"] == {"$ref": "#/components/schemas/InferInputTensor"}
        assert "application/octet-stream" in body["content"]
    assert {"name", "shape", "datatype", "data", "parameters"} <= set(doc["components"]["schemas"]["InferInputTensor"]["properties"])


def test_owners_see_only_their_own_models_and_limits_answer_v2_errors(make_server):
    srv = make_server(workers=0, FITSERVE_AUTH_FAILURES_PER_WINDOW="3", FITSERVE_MAX_JSON_BYTES="65536").start()
    keys = {owner: {"Authorization": f"Bearer {srv.create_key(owner)}"} for owner in ("alice", "bob")}
    jobs = {owner: train_beside(srv, tiny_regression(epochs=20), headers=auth)[0]["id"] for owner, auth in keys.items()}
    client = triton_client(srv)
    try:
        bob, alices = keys["bob"], jobs["alice"]
        assert [m["name"] for m in client.get_model_repository_index(headers=bob)] == [jobs["bob"]]
        assert error_of(lambda: client.get_model_metadata(alices, headers=bob)).status() == "404"
        assert error_of(lambda: client.get_model_config(alices, headers=bob)).status() == "404"
        assert error_of(lambda: client.get_inference_statistics(alices, headers=bob)).status() == "404"
        client.infer(alices, [tensor(np.ones((2, 1), np.float32))], headers=dict(keys["alice"]))  # it adds to them
        assert client.get_inference_statistics(headers=bob)["model_stats"] == []
        assert [s["name"] for s in client.get_inference_statistics(headers=keys["alice"])["model_stats"]] == [alices]
    finally:
        client.close()
    # the raw bytes count against the body cap: 10,000 FP64 rows are 80,000 bytes
    rows = np.ones((10_000, 1), np.float64).tobytes()
    header = {"inputs": [{"name": "input", "shape": [10_000, 1], "datatype": "FP64",
                          "parameters": {"binary_data_size": len(rows)}}]}
    assert_v2_error(post_binary(srv, alices, header, rows, **keys["alice"]), 413, "FITSERVE_MAX_JSON_BYTES")
    statuses = []
    for _ in range(5):  # 3 failed keys per window, then 429 for each further one (a right key is still served)
        response = srv.client.get(f"/v2/models/{alices}", headers={"Authorization": "Bearer wrong"})
        assert set(response.json()) == {"error"}, response.text
        statuses.append(response.status_code)
    assert statuses[0] == 401 and statuses[-1] == 429
    assert srv.client.get(f"/v2/models/{alices}", headers=keys["alice"]).status_code == 200


def run_schemathesis(srv: Server, spec: Path, workdir: Path, config: str) -> str:
    """A bounded run (few examples per operation, one pass); its summary. Fails on any failed check."""
    (workdir / "schemathesis.toml").write_text(config)
    checks = "not_a_server_error,content_type_conformance,response_schema_conformance,protocol_error_body"
    checks += ",unsupported_method,negative_data_rejection"
    done = subprocess.run(
        [str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(workdir / "schemathesis.toml"),
         "run", str(spec), "--url", str(srv.client.base_url), "--checks", checks, "--max-examples", "25",
         "--seed", "20261130", "--workers", "1", "--generation-deterministic"],
        check=False, cwd=workdir, capture_output=True, text=True, timeout=300,
        env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.service.api.oip_checks", "PYTHONPATH": str(ROOT)},
    )
    summary = done.stdout[-4000:]
    assert done.returncode == 0, summary + done.stderr[-2000:]
    assert "Tested: 6" in summary, summary  # every operation of the file
    return summary


@as_its_tools_speak_it
def test_schemathesis_against_the_official_rest_specification(oip, regression, tmp_path):
    """Every operation of open_inference_rest.yaml, on a trained model and on random names.

    The file's paths read `${MODEL_NAME}` (a template's leftover: `$` is not part of the URL in the protocol's prose
    or any client), so they are read as `{MODEL_NAME}`. Checks left out: `status_code_conformance`, as the file lists
    only 200 and 400 while the protocol's prose asks for "an HTTP error status (typically 400)", so 404 for an
    unknown model, 401, 405, 409 and 413 are its errors too; `positive_data_acceptance`, as a schema-valid tensor of
    any name, shape and datatype is no input a given model takes (400 with the reason, as the protocol says).
    """
    spec = tmp_path / "open_inference_rest.yaml"
    spec.write_text(SPEC.read_text().replace("${MODEL_NAME}", "{MODEL_NAME}").replace("${MODEL_VERSION}", "{MODEL_VERSION}"))
    trained = f'[parameters]\n"path.MODEL_NAME" = "{regression}"\n"path.MODEL_VERSION" = "1"\n'
    for config in (trained, ""):
        run_schemathesis(oip, spec, tmp_path, config)
    v2_lines = [line for line in oip.read_log().splitlines() if '"GET /v2' in line or '"POST /v2' in line]
    assert v2_lines and not [line for line in v2_lines if 'HTTP/1.1" 5' in line]
    assert "Traceback" not in oip.read_log()
