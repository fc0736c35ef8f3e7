"""Request bodies sent with `Content-Encoding: gzip` or `deflate`: tritonclient's compressed requests (JSON and
binary tensors), compressed job specs, the body limits counting inflated bytes (a zip bomb costs no memory), and
415 for an encoding not taken."""

import gzip
import json
import zlib

import anyio
import numpy as np
import pytest

from service.api.content_encoding import PIECE_BYTES, inflating_receive
from tests.conftest import module_server, processes_only, train_beside
from tests.service.api.test_intake import proc_status_bytes, reset_peak_rss
from tests.service.api.test_v2_conformance import tensor, triton_client
from tests.specs import tiny_regression

JSON_LIMIT = 2 * 2**20
BOMB_BYTES = 1 << 30  # what the bomb inflates to: 512 times the JSON limit
RSS_GROWTH_BOUND = 32 * 2**20  # the API's peak resident memory may grow this much while it refuses the bomb
SPEC_HEADERS = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def srv(tmp_path_factory, databases):
    srv = module_server(tmp_path_factory, databases, "compressed", FITSERVE_MAX_JSON_BYTES=str(JSON_LIMIT))
    yield srv.start()
    srv.stop()


@pytest.fixture(scope="module")
def regression(srv) -> str:
    job, = train_beside(srv, tiny_regression())
    assert job["status"] == "succeeded", job
    return job["id"]


def gzip_bomb(size: int) -> bytes:
    """A gzip stream of `size` bytes of spaces (valid JSON whitespace), built without holding them."""
    packer, block = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS), b" " * 2**20
    return b"".join(packer.compress(block) for _ in range(size // len(block))) + packer.flush()


@processes_only
def test_tritonclient_compressed_requests_infer_with_json_and_binary_tensors(srv, regression):
    rows = np.array([[-1.0], [0.0], [2.5]], dtype=np.float32)
    expected = srv.client.post(f"/v1/jobs/{regression}/predict", json={"inputs": rows.tolist()}).json()["predictions"]
    client = triton_client(srv)
    try:
        for algorithm in ("gzip", "deflate"):
            for binary in (False, True):  # binary: Inference-Header-Content-Length counts the inflated JSON
                result = client.infer(regression, [tensor(rows, binary=binary)], request_compression_algorithm=algorithm)
                np.testing.assert_allclose(result.as_numpy("predictions"), expected, rtol=1e-6)
    finally:
        client.close()


@processes_only
def test_a_gzip_bomb_is_413_naming_the_limit_and_costs_no_memory(srv):
    bomb = gzip_bomb(BOMB_BYTES)
    assert len(bomb) < JSON_LIMIT  # sent, it is under the limit: only inflated does it pass it
    baseline = reset_peak_rss(srv.proc.pid)
    for path in ("/v1/jobs", f"/v2/models/{'0' * 32}/infer"):
        response = srv.client.post(path, content=bomb, headers={**SPEC_HEADERS, "Content-Encoding": "gzip"})
        assert response.status_code == 413, response.text
        message = response.json()["detail" if path.startswith("/v1") else "error"]
        assert "inflated from gzip" in message and "FITSERVE_MAX_JSON_BYTES" in message, message
    growth = proc_status_bytes(srv.proc.pid, "VmHWM") - baseline
    assert growth < RSS_GROWTH_BOUND, growth / 2**20


def test_compressed_job_specs_are_accepted_and_bad_encodings_refused(make_app):
    app = make_app(workers=0, FITSERVE_MAX_JSON_BYTES=str(JSON_LIMIT)).start()
    spec = tiny_regression(epochs=3)
    text = json.dumps(spec).encode()
    for encoding, packed in (("gzip", gzip.compress(text)), ("deflate", zlib.compress(text)), ("GZIP", gzip.compress(text))):
        response = app.client.post("/v1/jobs", content=packed, headers={**SPEC_HEADERS, "Content-Encoding": encoding})
        assert response.status_code == 201, response.text
        assert app.client.get(f"/v1/jobs/{response.json()['id']}").json()["spec"]["epochs"] == 3

    def post(body: bytes, encoding: str):
        return app.client.post("/v1/jobs", content=body, headers={**SPEC_HEADERS, "Content-Encoding": encoding})

    unknown = post(text, "br")
    assert unknown.status_code == 415 and "'br'" in unknown.json()["detail"], unknown.text
    assert post(text, "gzip").status_code == 400  # said to be gzip, sent plain
    assert "cut short" in post(gzip.compress(text)[:-20], "gzip").json()["detail"]
    assert post(gzip.compress(text) + b"junk", "gzip").status_code == 400
    bomb = post(gzip_bomb(8 * JSON_LIMIT), "gzip")
    assert bomb.status_code == 413 and "FITSERVE_MAX_JSON_BYTES" in bomb.json()["detail"], bomb.text
    assert post(text, "identity").status_code == 201
    rows = [[i / 7] for i in range(40_000)]  # 1.6 MB inflated, many pieces, under the limit
    large = json.dumps(tiny_regression(data={"source": "inline", "x": rows, "y": [r[0] for r in rows]})).encode()
    assert JSON_LIMIT // 2 < len(large) < JSON_LIMIT
    assert post(gzip.compress(large), "gzip").status_code == 201


def test_a_compressed_upload_is_inflated_and_its_limit_counts_inflated_bytes(make_app):
    app = make_app(workers=0, FITSERVE_MAX_BODY_BYTES=str(JSON_LIMIT)).start()
    csv = b"a,y\n" + b"0.25,0.5\n" * 1000
    form, boundary = multipart(csv), "fitserve-test-boundary"
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}", "Content-Encoding": "gzip"}
    response = app.client.post("/v1/datasets", content=gzip.compress(form), headers=headers)
    assert response.status_code == 201, response.text
    assert response.json()["n_rows"] == 1000
    big = multipart(b"a,y\n" + b"0.25,0.5\n" * (JSON_LIMIT // 9 + 1))
    refused = app.client.post("/v1/datasets", content=gzip.compress(big), headers=headers)
    assert refused.status_code == 413 and "FITSERVE_MAX_BODY_BYTES" in refused.json()["detail"], refused.text


def multipart(csv: bytes, boundary: str = "fitserve-test-boundary") -> bytes:
    """A dataset upload's form (its file and its target), as a client would send it before compressing."""
    parts = [
        b'Content-Disposition: form-data; name="file"; filename="d.csv"\r\nContent-Type: text/csv\r\n\r\n' + csv,
        b'Content-Disposition: form-data; name="target"\r\n\r\ny',
    ]
    dash = b"--" + boundary.encode()
    return b"".join(dash + b"\r\n" + part + b"\r\n" for part in parts) + dash + b"--\r\n"


def test_a_body_inflates_in_bounded_pieces_then_the_connection_speaks_again():
    body = b",".join(str(i * 7919 % 100_003).encode() for i in range(400_000))
    packed = gzip.compress(body)
    sent = [{"type": "http.request", "body": packed[i : i + 5000], "more_body": True} for i in range(0, len(packed), 5000)]
    sent[-1]["more_body"] = False
    sent.append({"type": "http.disconnect"})

    async def receive():
        return sent.pop(0)

    async def read() -> tuple[list[bytes], dict]:
        inflating, pieces = inflating_receive(receive, "gzip"), []
        while True:
            message = await inflating()
            pieces.append(message["body"])
            if not message["more_body"]:
                return pieces, await inflating()  # after the body: the client's own next message

    pieces, after = anyio.run(read)
    assert b"".join(pieces) == body and max(map(len, pieces)) <= PIECE_BYTES and len(pieces) > 10
    assert after == {"type": "http.disconnect"}
