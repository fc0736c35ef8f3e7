"""The client commands of the `fitserve` CLI, run as subprocesses against a real served process."""

import json
import os
import subprocess
import sys
import uuid

import pytest
import yaml

from tests.conftest import ROOT, free_port
from tests.specs import long_job, tiny_regression


@pytest.fixture
def fitserve(served):
    """Run `fitserve ARGS...` with FITSERVE_URL set to the shared served process."""

    def run(*args: str, **env: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "FITSERVE_URL": str(served.client.base_url), **env}
        command = [sys.executable, "-m", "fitserve.cli", *map(str, args)]
        return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)

    return run


def test_submit_wait_shows_progress_and_final_metrics(fitserve, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(tiny_regression(name="cli yaml", epochs=100)))
    done = fitserve("submit", spec, "--wait")
    assert done.returncode == 0, done.stderr
    job_id, summary = done.stdout.splitlines()[0], done.stdout
    assert len(job_id) == 32 and f"job {job_id} succeeded" in summary and "100/100 epochs" in summary
    assert float(summary.split("loss: ")[1].split()[0]) < 0.01
    assert "100/100 epochs" in done.stderr and "loss" in done.stderr  # the progress bar's last frame
    listed = fitserve("jobs", "--status", "succeeded")
    assert any(line.startswith(job_id) and "cli yaml" in line for line in listed.stdout.splitlines())
    status = fitserve("status", job_id)
    assert json.loads(status.stdout)["status"] == "succeeded"


def test_submit_prints_the_id_and_watch_follows_to_the_end(fitserve, served, tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(tiny_regression(epochs=200)))
    submitted = fitserve("submit", spec)
    job_id = submitted.stdout.strip()
    assert submitted.returncode == 0 and served.client.get(f"/v1/jobs/{job_id}").status_code == 200
    watched = fitserve("watch", job_id)
    assert watched.returncode == 0 and f"job {job_id} succeeded" in watched.stdout


def test_continue_prints_the_new_job_and_waits_for_it(fitserve, served):
    parent = served.train(tiny_regression(epochs=50))
    done = fitserve("continue", parent["id"], "--epochs", "25", "--wait")
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.splitlines()[0]
    assert f"job {job_id} succeeded" in done.stdout and "75/75 epochs" in done.stdout
    assert served.client.get(f"/v1/jobs/{job_id}").json()["continued_from"] == parent["id"]


def test_watch_of_a_cancelled_job_exits_1(fitserve, served):
    job = served.submit(long_job())
    served.client.post(f"/v1/jobs/{job['id']}/cancel")
    watched = fitserve("watch", job["id"])
    assert watched.returncode == 1 and "cancelled" in watched.stdout


def test_predict_from_inline_json_or_a_file_and_curve_to_png(fitserve, served, tmp_path):
    job = served.train(tiny_regression())
    inline = fitserve("predict", job["id"], "--input", "[[0], [1]]")
    assert json.loads(inline.stdout)["predictions"] == pytest.approx([1.0, 3.0], abs=0.05)
    body = tmp_path / "inputs.json"
    body.write_text(json.dumps({"inputs": [[2.0]]}))
    from_file = fitserve("predict", job["id"], "--input", body)
    assert json.loads(from_file.stdout)["predictions"] == pytest.approx([5.0], abs=0.05)
    curve = fitserve("curve", job["id"], "-o", tmp_path / "curve.png")
    assert curve.returncode == 0 and (tmp_path / "curve.png").read_bytes().startswith(b"\x89PNG")


def test_errors_print_one_line_and_exit_codes_tell_them_apart(fitserve):
    missing = fitserve("status", "nope")
    assert missing.returncode == 3 and "HTTP 404: no job 'nope'" in missing.stderr
    unreachable = fitserve("jobs", "--url", f"http://127.0.0.1:{free_port()}")
    assert unreachable.returncode == 3 and "127.0.0.1" in unreachable.stderr
    global_flag = fitserve("--url", f"http://127.0.0.1:{free_port()}", "jobs")
    assert global_flag.returncode == 3
    bad_input = fitserve("predict", "some-id", "--input", "not json")
    assert bad_input.returncode == 2 and "neither a file nor JSON" in bad_input.stderr
    invalid = fitserve("submit", ROOT / "pyproject.toml")
    assert invalid.returncode == 2



def test_sweep_submits_a_request_with_an_objective(fitserve, served, tmp_path):
    base = tiny_regression(epochs=5)
    request = tmp_path / "sweep.json"
    request.write_text(json.dumps({"base": base, "space": {"lr": [0.01, 0.02]}}))
    submitted = fitserve("sweep", request, "--objective", "loss:min")
    assert submitted.returncode == 0, submitted.stderr
    sweep_id = submitted.stdout.strip()
    assert "ranked by loss (min)" in submitted.stderr
    assert served.client.get(f"/v1/sweeps/{sweep_id}").json()["objective"] == {"metric": "loss", "mode": "min"}
    refused = fitserve("sweep", request, "--objective", "val_loss")
    assert refused.returncode == 3 and "objective.metric" in refused.stderr


def test_jobs_filter_lists_the_matching_jobs_and_a_bad_one_exits_with_the_servers_422(fitserve, served):
    case = uuid.uuid4().hex[:12]  # the served process is shared: this test's jobs carry a tag of their own
    ids = [served.client.post("/v1/jobs", json=tiny_regression(epochs=2, name=f"cli {lr}", tags={"case": case},
                                                               optimizer={"kind": "sgd", "lr": lr})).json()["id"]
           for lr in (0.001, 0.1)]
    listed = fitserve("jobs", "--filter", f"tags.case = '{case}' and params.optimizer.lr > 0.01")
    assert listed.returncode == 0, listed.stderr
    rows = listed.stdout.splitlines()[1:]
    assert len(rows) == 1 and rows[0].startswith(ids[1]) and "cli 0.1" in rows[0]
    bad = fitserve("jobs", "--filter", "params.optimizer.lr > 0.01 or status = 'queued'")
    assert bad.returncode == 3 and "HTTP 422" in bad.stderr and "at 27, 'or'" in bad.stderr
