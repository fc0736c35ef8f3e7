"""A JSON body sent as something else is 415 naming `Content-Type: application/json`, and its bytes are not echoed."""

import json

import pytest

from tests.conftest import shared_app
from tests.specs import long_job, tiny_regression

server = shared_app()  # the tests keep apart by their own jobs

BODY = json.dumps(tiny_regression()).encode()


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain", "multipart/form-data; b=1"])
def test_a_json_body_under_another_content_type_is_415(server, content_type):
    """curl's `-d` sends form-urlencoded unless told otherwise: the answer says what to send instead."""
    response = server.client.post("/v1/jobs", content=BODY, headers={"Content-Type": content_type})
    assert response.status_code == 415
    detail = response.json()["detail"]
    assert "Content-Type: application/json" in detail
    assert "synthetic" not in response.text and len(response.content) < 300  # the body is not echoed


def test_a_json_body_without_content_type_is_415(server):
    response = server.client.post("/v1/jobs", content=BODY)
    assert response.status_code == 415
    assert response.json()["detail"] == "the body must be JSON: send `Content-Type: application/json` (got none)"


def test_json_content_types_are_read_as_json(server):
    for content_type in ("application/json; charset=utf-8", "application/vnd.x+json"):
        response = server.client.post("/v1/jobs", content=BODY, headers={"Content-Type": content_type})
        assert response.status_code == 201, (content_type, response.text)
        server.client.post(f"/v1/jobs/{response.json()['id']}/cancel")


def test_other_bodies_keep_their_types(server):
    """Uploads are multipart, and a bodiless POST needs no Content-Type."""
    upload = server.client.post("/v1/datasets", files={"file": ("d.csv", b"x,y\n1,2\n2,4\n")}, data={"target": "y"})
    assert upload.status_code == 201, upload.text
    job = server.submit(long_job())
    assert server.client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200
