"""JSON bodies past INLINE_SCAN_BYTES are parsed off the event loop (service/api/routing.py): same answers."""

import json

from service.api.intake import INLINE_SCAN_BYTES
from tests.conftest import shared_app
from tests.specs import tiny_regression

server = shared_app()  # the tests keep apart by their own jobs


def test_a_large_job_body_is_stored_exactly_as_sent(server):
    x = [[i / 7.0] for i in range(8000)]
    y = [2.0 * row[0] + 1.0 for row in x]
    spec = tiny_regression(epochs=3, data={"source": "inline", "x": x, "y": y})
    assert len(json.dumps(spec)) > INLINE_SCAN_BYTES
    job = server.submit(spec)
    stored = server.client.get(f"/v1/jobs/{job['id']}").json()["spec"]["data"]
    assert stored["x"] == x and stored["y"] == y
    assert server.wait_for(job["id"])["status"] == "succeeded"


def test_a_large_predict_body_answers_every_row(server):
    job = server.train(tiny_regression(epochs=50))
    rows = [[i / 7.0] for i in range(6000)]
    assert len(json.dumps({"inputs": rows})) > INLINE_SCAN_BYTES
    answer = server.client.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": rows})
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["predictions"]) == 6000


def test_a_large_body_that_is_not_json_is_a_clear_error(server):
    broken = b'{"inputs": [' + b"[1.0]," * 20_000  # cut off: never closed
    answer = server.client.post("/v1/jobs", content=broken, headers={"content-type": "application/json"})
    assert answer.status_code in (400, 422), answer.text
    assert "json" in answer.text.lower()
