"""A client that openapi-python-client (the dev extra pins it) generates from the live OpenAPI document: it is
generated without a warning, and with it a job is submitted, read until it ends, asked for predictions and
evaluated, through the real app."""

import importlib
import json
import math
import subprocess
import sys

import pytest
import yaml

from tests.conftest import FINAL, ROOT, wait_until
from tests.specs import tiny_regression

pytestmark = pytest.mark.one_backend("the generated client only sends requests; the routes run on every back end")

PACKAGE = "fitserve_generated"
CONFIG = ROOT / "examples" / "openapi-python-client.yaml"  # what docs/clients.md generates with
XS = [i / 4 for i in range(-8, 9)]  # y = 2x + 1 at 17 points in [-2, 2]


def generate(document: dict, folder) -> None:
    """openapi-python-client's `generate` on `document` with the shipped config, into folder/PACKAGE. No
    post-hooks: the code is imported, not read, and ruff need not be on PATH."""
    (folder / "openapi.json").write_text(json.dumps(document))
    config = {**yaml.safe_load(CONFIG.read_text()), "package_name_override": PACKAGE, "post_hooks": []}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    command = [
        sys.executable, "-m", "openapi_python_client", "generate", "--path", "openapi.json", "--config", "config.yaml",
        "--meta", "none", "--output-path", PACKAGE, "--fail-on-warning",
    ]
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def generated(server, tmp_path, monkeypatch):
    """The package generated from `server`'s document, imported from tmp_path (forgotten after the test)."""
    generate(server.client.get("/openapi.json").json(), tmp_path)  # --fail-on-warning: a dropped schema fails it
    monkeypatch.syspath_prepend(str(tmp_path))
    yield lambda name: importlib.import_module(f"{PACKAGE}.{name}")
    for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
        del sys.modules[name]


def test_the_schemas_generators_dropped_round_trip_nested_numbers(generated):
    models = generated("models")
    spec = tiny_regression(data={"source": "inline", "x": [[x] for x in XS], "y": [2 * x + 1 for x in XS]})
    assert models.JobSpec.from_dict(spec).to_dict() == spec  # before: ModuleNotFoundError (InlineData dropped)
    tensor = {"name": "input", "shape": [1, 1, 2, 2], "datatype": "FP32", "data": [[[[1, 2.5], [3, 4]]]]}
    assert models.InferInputTensor.from_dict(tensor).to_dict() == tensor
    assert models.EvaluateRequest.from_dict({"x": [[1]], "y": [3]}).to_dict() == {"x": [[1]], "y": [3]}
    answer = {"predictions": [[0.5, None], 2], "probabilities": [[0.25, 0.75]]}
    assert models.PredictResponse.from_dict(answer).to_dict() == answer


def test_a_generated_client_submits_reads_predicts_and_evaluates(server, generated):
    models = generated("models")
    client = generated("client").Client(base_url=str(server.client.base_url)).set_httpx_client(server.client)
    submit, get_job, predict, evaluate = (
        generated(f"api.jobs.{name}")
        for name in ("submit_job_v1_jobs_post", "get_job_v1_jobs_job_id_get", "predict_v1_jobs_job_id_predict_post",
                     "evaluate_v1_jobs_job_id_evaluate_post")
    )
    rows = {"source": "inline", "x": [[x] for x in XS], "y": [[2 * x + 1] for x in XS]}
    spec = tiny_regression(data=rows, epochs=300)

    submitted = submit.sync(client=client, body=models.JobSpec.from_dict(spec))
    assert isinstance(submitted, models.JobPublic), submitted
    assert submitted.status == "queued" and submitted.spec.to_dict()["data"]["x"] == rows["x"]
    ended = lambda: (job := get_job.sync(submitted.id, client=client, wait=2)).status in FINAL and job
    job = wait_until(ended, 60, "the job to end")
    assert isinstance(job, models.JobPublic) and job.status == "succeeded", job.error

    inputs = [[-1.5], [0.0], [2.0]]
    answer = predict.sync(submitted.id, client=client, body=models.PredictRequest(inputs=inputs))
    assert isinstance(answer, models.PredictResponse), answer
    assert len(answer.predictions) == len(inputs)  # (N,): one number a row, for one output
    assert all(abs(p - (2 * x + 1)) < 0.05 for p, [x] in zip(answer.predictions, inputs)), answer.predictions

    body = models.EvaluateRequest(x=[[x] for x in XS], y=[2 * x + 1 for x in XS])
    measures = evaluate.sync(submitted.id, client=client, body=body)
    assert {"rows", "mse", "rmse", "mae", "r2"} <= set(measures), measures
    assert measures["rows"] == len(XS) and all(math.isfinite(measures[k]) for k in ("mse", "rmse", "mae", "r2"))
    assert measures["mse"] < 1e-3 and measures["r2"] > 0.999
