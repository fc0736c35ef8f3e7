"""The Python client against a real served process: specs from files, waiting, curves, predictions, errors, retries."""

import asyncio
import http.server
import json
import threading
import time
import uuid

import pytest
import yaml
from safetensors.torch import load

from fitserve import calls
from fitserve.client import ApiError, AsyncClient, Client, Unreachable
from service.settings import Settings
from tests.conftest import free_port
from tests.specs import long_job, tiny_regression


@pytest.fixture
def client(served):
    with Client(str(served.client.base_url)) as fs:
        yield fs


def test_submit_takes_a_dict_a_json_file_or_a_yaml_file(client, tmp_path):
    (tmp_path / "spec.json").write_text(json.dumps(tiny_regression(name="from json", epochs=20)))
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(tiny_regression(name="from yaml", epochs=20)))
    jobs = [client.submit(tiny_regression(name="from dict", epochs=20))]
    jobs += [client.submit(tmp_path / "spec.json"), client.submit(str(tmp_path / "spec.yaml"))]
    finished = [client.wait(job, timeout=120) for job in jobs]
    assert [j.name for j in finished] == ["from dict", "from json", "from yaml"]
    assert all(j.status == "succeeded" and j.progress.epoch == 20 for j in finished)


def test_wait_times_out_then_returns_the_cancelled_job(client):
    job = client.submit(long_job())
    with pytest.raises(TimeoutError, match=job.id):
        client.wait(job, timeout=0.5)
    client.cancel(job)
    assert client.wait(job, timeout=60).status == "cancelled"


def test_iter_metrics_yields_each_point_once_until_the_job_ends(client):
    job = client.submit(tiny_regression(epochs=300))
    steps = [p.step for p in client.iter_metrics(job)]
    assert steps == list(range(1, 301))
    assert client.get(job).status == "succeeded"
    assert [p.step for p in client.iter_metrics(job, since_step=295)] == [296, 297, 298, 299, 300]


def test_predict_weights_onnx_and_curve_of_a_trained_job(client, tmp_path):
    job = client.wait(client.submit(tiny_regression()), timeout=120)
    answer = client.predict(job, [[0.0], [1.0]])
    assert answer.predictions == pytest.approx([1.0, 3.0], abs=0.05)  # y = 2x + 1
    weights = client.download_weights(job, tmp_path / "w.safetensors")
    assert set(load(weights)) >= {"1.weight", "1.bias"}
    assert (tmp_path / "w.safetensors").read_bytes() == weights
    assert client.download_onnx(job).startswith(b"\x08")  # an ONNX protobuf begins with its ir_version field
    assert client.curve_png(job, tmp_path / "c.png").startswith(b"\x89PNG")


def test_errors_carry_the_status_and_the_servers_detail(client):
    with pytest.raises(ApiError) as missing:
        client.get("nope")
    assert missing.value.status_code == 404 and missing.value.detail == "no job 'nope'"
    with pytest.raises(ApiError) as invalid:
        client.submit(tiny_regression(epochs=0))
    assert invalid.value.status_code == 422
    assert invalid.value.detail[0]["loc"] == ["body", "epochs"]
    assert "body.epochs" in str(invalid.value)
    running = client.submit(long_job())
    with pytest.raises(ApiError) as early:
        client.predict(running, [[1.0]])
    assert early.value.status_code == 409
    client.cancel(running)


def test_list_jobs_filters_by_status_and_stops_at_the_limit(client):
    done = client.wait(client.submit(tiny_regression(epochs=10)), timeout=60)
    newest = client.list_jobs(status="succeeded", limit=2)
    assert len(newest) <= 2 and all(j.status == "succeeded" for j in newest)
    assert done.id in [j.id for j in client.list_jobs(status="succeeded", limit=5)]


def test_url_and_api_key_come_from_the_environment(served, monkeypatch):
    monkeypatch.setenv("FITSERVE_URL", str(served.client.base_url))
    monkeypatch.setenv("FITSERVE_API_KEY", "k-123")
    sent = []
    with Client(event_hooks={"request": [sent.append]}) as fs:
        try:
            fs.list_jobs(limit=1)
        except ApiError as exc:
            assert exc.status_code == 401  # the server read the key; whether it knows it is up to its auth
    assert sent[0].url.port == served.client.base_url.port
    assert sent[0].headers["authorization"] == "Bearer k-123"


def test_submit_retries_until_the_server_is_up_with_one_idempotency_key(make_server):
    port = free_port()
    sent, result = [], {}
    fs = Client(f"http://127.0.0.1:{port}", retries=7, backoff=0.5, event_hooks={"request": [sent.append]})
    submitting = threading.Thread(target=lambda: result.update(job=fs.submit(tiny_regression(epochs=5))))
    submitting.start()
    srv = make_server(workers=0).start(port=port)
    submitting.join(60)
    assert result["job"].status == "queued"
    keys = {r.headers["idempotency-key"] for r in sent}
    assert len(sent) >= 2 and len(keys) == 1  # refused at first, then accepted: one key throughout
    fs.submit(tiny_regression(epochs=5))
    assert len({r.headers["idempotency-key"] for r in sent}) == 2  # the next submit has a key of its own
    assert srv.client.get(f"/v1/jobs/{result['job'].id}").status_code == 200
    fs.close()


def test_a_submit_sent_twice_creates_one_job(client):
    submit = calls.submit(tiny_regression(epochs=5))  # what a retry resends: the same Idempotency-Key
    assert client.send(submit).id == client.send(submit).id
    assert client.submit(tiny_regression(epochs=5)).id != client.send(submit).id


def test_no_server_raises_unreachable_after_the_retries():
    with Client(f"http://127.0.0.1:{free_port()}", retries=1, backoff=0.01) as fs:
        with pytest.raises(Unreachable):
            fs.list_jobs()


def test_an_idle_connection_is_dropped_before_the_server_would_close_it():
    """Kept no longer than the server keeps it (FITSERVE_KEEP_ALIVE_SECONDS' default), a connection is never reused
    just as the server closes it, which resets the request (httpx's own default equals the server's 5 s)."""
    assert calls.KEEPALIVE_SECONDS < Settings.model_fields["KEEP_ALIVE_SECONDS"].default
    connections = set()  # the clients' (address, port): one a connection

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keeps the connection open between requests

        def do_GET(self):
            connections.add(self.client_address)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        with Client(f"http://127.0.0.1:{server.server_address[1]}") as fs:
            fs.http.get("/")
            fs.http.get("/")
            assert len(connections) == 1  # reused while fresh
            time.sleep(calls.KEEPALIVE_SECONDS + 0.2)  # idle past the client's limit, under the server's
            fs.http.get("/")
            assert len(connections) == 2
        server.shutdown()


def test_async_client_submits_streams_and_predicts(served):
    async def scenario():
        async with AsyncClient(str(served.client.base_url)) as fs:
            job = await fs.submit(tiny_regression(epochs=50))
            events = [e async for e in fs.events(job)]
            points = [p.step async for p in fs.iter_metrics(job)]
            return events, points, await fs.wait(job, timeout=10), await fs.predict(job, [[2.0]])

    events, points, job, answer = asyncio.run(scenario())
    assert [e.id for e in events if e.event == "metric"] == list(range(1, 51)) == points
    assert events[-1].event == "status" and events[-1].data.status == "succeeded" == job.status
    assert len(answer.predictions) == 1


def test_submit_sweep_takes_an_objective_and_get_sweep_names_the_best_member(client, tmp_path):
    base = tiny_regression(epochs=10)
    request = {"base": {**base, "data": {**base["data"], "validation_fraction": 0.2}}, "space": {"lr": [0.001, 0.05]}}
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(request))
    sweep = client.submit_sweep(tmp_path / "sweep.yaml", objective="val_r2")
    assert (sweep.objective.metric, sweep.objective.mode, sweep.ranked_by) == ("val_r2", "max", "val_r2")
    assert client.submit_sweep(request).objective.model_dump() == {"metric": "val_loss", "mode": "min"}
    with pytest.raises(ApiError) as refused:
        client.submit_sweep(request, objective="accuracy:max")
    assert refused.value.status_code == 422 and "objective.metric" in str(refused.value)
    deadline = time.monotonic() + 120
    while (done := client.get_sweep(sweep.id)).status not in calls.FINAL:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert done.status == "succeeded" and done.best_job_id is not None


def test_list_jobs_takes_a_filter_and_a_bad_one_is_a_422_naming_the_token(client):
    case = uuid.uuid4().hex[:12]  # the served process is shared: this test's jobs carry a tag of their own
    jobs = [client.submit(tiny_regression(epochs=2, optimizer={"kind": kind, "lr": 0.01}, tags={"case": case}))
            for kind in ("sgd", "adam", "adam")]
    found = client.list_jobs(filter=f"tags.case = '{case}' and params.optimizer.kind = 'adam'", limit=1)
    assert [job.id for job in found] == [jobs[2].id]  # newest first, and the limit holds
    assert {job.id for job in client.list_jobs(filter=f"tags.case = '{case}' and params.optimizer.kind != 'adam'")} \
        == {jobs[0].id}
    with pytest.raises(ApiError) as bad:
        client.list_jobs(filter="params.optimizer.lr >")
    assert bad.value.status_code == 422 and bad.value.detail[0]["loc"] == ["query", "filter"]
    assert "at 21, 'end of filter'" in bad.value.detail[0]["msg"]


def test_continue_job_trains_on_from_the_final_state(client):
    parent = client.wait(client.submit(tiny_regression(epochs=20)), timeout=120)
    child = client.wait(client.continue_job(parent, epochs=10, lr=0.01), timeout=120)
    assert child.status == "succeeded" and child.continued_from == parent.id and child.progress.epoch == 30
    assert child.spec["optimizer"]["lr"] == 0.01
    assert [p.epoch for p in client.iter_metrics(child)] == list(range(21, 31))
    with pytest.raises(ApiError) as refused:
        client.continue_job("nosuchjob", epochs=1)
    assert refused.value.status_code == 404
