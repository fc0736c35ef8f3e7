"""The API's process: what it loads to start and to answer the calls that need no network."""

from pathlib import Path

from tests.specs import tiny_regression


def test_the_api_process_starts_and_answers_without_loading_torch(make_server):
    """torch (a second of start-up, ~200 MB) loads at the first prediction, evaluation or export, not before:
    submits, lists, metrics, health and the dashboard never need it."""
    srv = make_server(workers=0).start()
    job = srv.submit(tiny_regression())
    for path in ("/v1/jobs", f"/v1/jobs/{job['id']}", "/metrics", "/readyz", "/v2/health/ready", "/v2", "/"):
        assert srv.client.get(path).status_code == 200, path
    refused = srv.client.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": [[1.0]]})
    assert refused.status_code == 409, refused.text  # not trained: answered before any network is built
    assert "libtorch" not in Path(f"/proc/{srv.proc.pid}/maps").read_text()
