"""Memory budgets (issue 13, points 4 and 5): jobs too big to train are refused at submit, and predictions
whose forward pass would grow the API past FITSERVE_MAX_PREDICT_BYTES are refused before they run.

The limits are the defaults sized for the machine: every attack below needs tens of GB, the tutorial's
jobs a few MB.
"""

import threading
import time
from pathlib import Path

import pytest

from modelzoo.memory import format_bytes
from service.models import WorkerKind
from service.settings import get_settings
from tests.conftest import processes_only, register_gpu
from tests.specs import EXAMPLES, example, tiny_regression
from workers.devices import this_node
from workers.registry import Registration

MiB = 1024**2
HEALTHZ_SECONDS = 1.0  # what /healthz and another request may take while an attack runs
API_GROWTH_BYTES = 300 * MiB  # what the API's peak RSS may rise by across an attack


def rss(pid: int, field: str = "VmHWM") -> int:
    """Resident memory of a process from /proc: VmHWM is its peak, VmRSS its present size."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for {pid}")


class Watch:
    """Times /healthz and a job listing, over and over, on a thread of its own while an attack runs."""

    def __init__(self, srv):
        self.srv, self.worst, self.statuses, self.stop = srv, 0.0, set(), threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            for path in ("/healthz", "/v1/jobs?limit=1"):
                started = time.perf_counter()
                self.statuses.add(self.srv.client.get(path).status_code)
                self.worst = max(self.worst, time.perf_counter() - started)
            time.sleep(0.02)

    def __enter__(self) -> "Watch":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(10)


@pytest.fixture
def api(make_app):
    """An API without workers: submit checks need none."""
    return make_app(workers=0).start()


def refused(response, field: str) -> str:
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"][-1] == field
    assert "would need about" in error["msg"] and "FITSERVE_MAX_JOB_BYTES" in error["msg"]
    return error["msg"]


def wide_cnn(channels: int, padding: int, pool: int, **overrides) -> dict:
    """A digits CNN whose feature maps, not its weights, are huge."""
    block = {"out_channels": channels, "kernel_size": 3, "padding": padding, "pool": {"kind": "max", "size": pool}}
    model = {"kind": "cnn", "in_channels": 1, "input_size": [8, 8], "conv": [block], "out_features": 10}
    return example("6_cnn_digits", model=model, **overrides)


def test_a_cnn_with_huge_channels_and_padding_is_refused_naming_its_estimate(api):
    # 1438 rows x 4096 channels of 40x40 in one step: ~270 GB
    response = api.client.post("/v1/jobs", json=wide_cnn(4096, 16, 16, batch_size=None))
    assert "1438 rows per step" in refused(response, "batch_size")


def test_a_wide_mlp_on_a_million_rows_in_one_step_is_refused(api):
    spec = {
        "model": {"kind": "mlp", "in_features": 1, "hidden": [4096], "out_features": 1},
        "task": "regression",
        "data": {"source": "synthetic", "generator": "linear", "n": 1_000_000},
        "loss": "mse",
        "optimizer": {"kind": "sgd", "lr": 0.01},
        "epochs": 1,
    }
    refused(api.client.post("/v1/jobs", json=spec), "batch_size")
    # the same model in batches of 256 fits
    assert api.client.post("/v1/jobs", json={**spec, "batch_size": 256}).status_code == 201


def big_sweep(execution: str) -> dict:
    """300 members of a 4.85M-parameter MLP with Adam: ~58 GB trained together."""
    base = {
        "model": {"kind": "mlp", "in_features": 1, "hidden": [2200, 2200], "out_features": 1},
        "task": "regression",
        "data": {"source": "synthetic", "generator": "linear", "n": 1000},
        "loss": "mse",
        "optimizer": {"kind": "adam", "lr": 0.001},
        "batch_size": 100,
        "epochs": 1,
    }
    return {"base": base, "space": {"seed": list(range(300))}, "execution": execution}


def test_a_big_sweep_is_refused_unless_it_runs_one_by_one(api):
    for execution in ("auto", "batched"):
        response = api.client.post("/v1/sweeps", json=big_sweep(execution))
        assert "300 members together" in refused(response, "execution")
        assert "one_by_one" in response.json()["detail"][0]["msg"]
    created = api.client.post("/v1/sweeps", json=big_sweep("one_by_one"))
    assert created.status_code == 201, created.text
    api.client.post(f"/v1/sweeps/{created.json()['id']}/cancel")


@pytest.mark.parametrize("search", [{"search": "asha", "asha": {"min_epochs": 1, "reduction_factor": 3}},
                                    {"search": "pbt", "pbt": {"interval_epochs": 1}}], ids=["asha", "pbt"])
def test_an_adaptive_sweep_one_by_one_still_counts_its_members_together(api, search):
    """ASHA and PBT one by one hold every member at once (they take turns an epoch each): no way around the sum."""
    body = {**big_sweep("one_by_one"), "space": {"lr": {"distribution": "log_uniform", "low": 1e-4, "high": 0.1}},
            "count": 300, "search_seed": 0, **search}
    body["base"] = {**body["base"], "epochs": 3}
    response = api.client.post("/v1/sweeps", json=body)
    assert "300 members together" in refused(response, "execution")
    assert "one_by_one" not in response.json()["detail"][0]["msg"]


def test_a_sweep_whose_every_member_is_too_big_names_the_base(api):
    sweep = {"base": wide_cnn(4096, 16, 16, batch_size=None), "space": {"lr": [0.01, 0.1]}, "execution": "one_by_one"}
    response = api.client.post("/v1/sweeps", json=sweep)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][:2] == ["body", "base"]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.json")), ids=lambda p: p.stem)
def test_the_tutorial_jobs_are_accepted(api, path):
    assert api.client.post("/v1/jobs", json=example(path.stem)).status_code == 201


# ---------------------------------------------------------------- predictions


@pytest.fixture(scope="module")
def heavy(tmp_path_factory, databases):
    """A legit-but-heavy CNN, trained: 205k parameters, but 4096 maps of 40x40 (~52 MB) for every row it sees."""
    from tests.conftest import Server, train_beside

    path = tmp_path_factory.mktemp("heavy") / "fitserve.db"
    srv = Server(path, workers=0, db_url=databases.create(path)).start()  # the API process alone: trained beside it
    rows = [[float((i * 7 + j) % 16) for j in range(64)] for i in range(4)]
    spec = wide_cnn(4096, 16, 16, data={"source": "inline", "x": rows, "y": [0, 1, 2, 3]}, epochs=1, batch_size=2)
    job, = train_beside(srv, spec)
    assert job["status"] == "succeeded", job
    yield srv, job["id"], rows
    srv.stop()
    databases.drop(srv.db_url)


@processes_only
def test_predicting_too_many_rows_is_refused_naming_the_limit_and_the_api_stays_small(heavy):
    srv, job_id, rows = heavy
    pid = srv.proc.pid
    assert srv.client.post(f"/v1/jobs/{job_id}/predict", json={"inputs": rows[:1]}).status_code == 200  # loaded
    before = rss(pid)
    with Watch(srv) as watch:
        for n in (100, 1000, 10_000):  # ~5 GB, ~52 GB and ~520 GB of feature maps
            response = srv.client.post(f"/v1/jobs/{job_id}/predict", json={"inputs": [rows[0]] * n})
            assert response.status_code == 413, response.text
            assert "FITSERVE_MAX_PREDICT_BYTES" in response.json()["detail"]
            assert "send at most 5 rows" in response.json()["detail"]  # 256 MiB by default
        v2 = srv.client.post(f"/v2/models/{job_id}/infer", json={
            "inputs": [{"name": "input", "shape": [100, 64], "datatype": "FP32", "data": [rows[0]] * 100}]
        })
        assert v2.status_code == 413 and "FITSERVE_MAX_PREDICT_BYTES" in v2.json()["error"]
        # what fits answers, in chunks, off the event loop
        answer = srv.client.post(f"/v1/jobs/{job_id}/predict", json={"inputs": rows})
        assert answer.status_code == 200 and len(answer.json()["predictions"]) == 4
    assert watch.statuses == {200} and watch.worst < HEALTHZ_SECONDS, (watch.statuses, watch.worst)
    assert rss(pid) - before < API_GROWTH_BYTES, (before, rss(pid))


@processes_only(prefer="postgresql")
def test_sweep_members_that_run_out_of_memory_fail_with_that_reason(make_server):
    """Past the submit check (lifted here), the worker's cap stops them: each member fails alone, the worker lives."""
    srv = make_server(workers=1, FITSERVE_WORKER_MEMORY_BYTES=str(3 * 1024**3), FITSERVE_MAX_JOB_BYTES=str(2**50))
    srv.start()
    base = {
        "model": {"kind": "mlp", "in_features": 1, "hidden": [4096], "out_features": 1},
        "task": "regression",
        "data": {"source": "synthetic", "generator": "linear", "n": 1_000_000},
        "loss": "mse",
        "optimizer": {"kind": "sgd", "lr": 0.01},
        "epochs": 1,
    }
    sweep = srv.client.post("/v1/sweeps", json={"base": base, "space": {"lr": [0.01, 0.02]}}).json()
    members = [entry["job_id"] for entry in srv.client.get(f"/v1/sweeps/{sweep['id']}").json()["leaderboard"]]
    for job_id in members:
        job = srv.wait_for(job_id, timeout=120)
        assert job["status"] == "failed" and job["error"].startswith("out of memory"), job["error"]
        assert job["attempt"] == 1  # no worker died for it


def gpu_job(**overrides) -> dict:
    """Megabytes of activations: 2,000 rows through a 1024-wide layer in one step."""
    model = {"kind": "mlp", "in_features": 1, "hidden": [1024], "out_features": 1}
    data = {"source": "synthetic", "generator": "linear", "n": 2000}
    return tiny_regression(model=model, data=data, epochs=1, **overrides)


def test_a_cuda_job_that_fits_no_registered_gpus_share_is_refused_naming_its_estimate_the_gpu_and_the_share(make_app):
    """No GPU registered: the host's budget alone, as before. A GPU worker registered with 1.5x the job's estimate
    and FITSERVE_WORKERS_PER_GPU=2: a `cuda` job (and an `auto` one while every worker has a GPU) is refused,
    its estimate, the GPU and its share named; a `cpu` job is not. A larger GPU registered: accepted."""
    api = make_app(workers=0, FITSERVE_WORKERS_PER_GPU="2", FITSERVE_LEASE_SECONDS="600").start()
    first = api.client.post("/v1/jobs", json=gpu_job(device="cuda"))
    assert first.status_code == 201, first.text
    [(estimate,)] = api.query("SELECT estimate_bytes FROM jobs WHERE id = :id", id=first.json()["id"])
    assert estimate > 8 * MiB  # the estimate the job was submitted with, kept for its claims
    total = estimate * 3 // 2
    register_gpu("gpu-worker-0", total, free=total // 3)
    response = api.client.post("/v1/jobs", json=gpu_job(device="cuda"))
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"][-1] == "batch_size"  # activations are most of it
    msg = error["msg"]
    assert f"about {format_bytes(estimate)}" in msg and f"cuda:0 on {this_node()}" in msg, msg
    assert f"has {format_bytes(total)}: {format_bytes(total // 2)} for each of its FITSERVE_WORKERS_PER_GPU=2" in msg
    assert api.client.post("/v1/jobs", json=gpu_job(device="cuda:0")).status_code == 422
    assert api.client.post("/v1/jobs", json=gpu_job(device="auto")).status_code == 422  # every worker has a GPU
    assert api.client.post("/v1/jobs", json=gpu_job(device="cpu")).status_code == 201

    Registration("cpu-worker", WorkerKind.POOL, "cpu", get_settings()).write()
    assert api.client.post("/v1/jobs", json=gpu_job(device="auto")).status_code == 201  # may train on the CPU
    assert api.client.post("/v1/jobs", json=gpu_job(device="cuda")).status_code == 422
    workers = {w["id"]: w for w in api.client.get("/v1/workers").json()["workers"]}
    assert (workers["gpu-worker-0"]["gpu_total_bytes"], workers["gpu-worker-0"]["gpu_free_bytes"]) == (total, total // 3)
    assert (workers["cpu-worker"]["gpu_total_bytes"], workers["cpu-worker"]["gpu_free_bytes"]) == (None, None)

    register_gpu("gpu-worker-1", 4 * estimate, device="cuda:1")  # the largest registered GPU decides
    assert api.client.post("/v1/jobs", json=gpu_job(device="cuda")).status_code == 201


def test_a_ray_tasks_gpu_is_a_whole_gpus_budget_whatever_workers_per_gpu(make_app):
    """On Ray a GPU job's task asks for its estimate's fraction of a GPU (workers/executors/ray_resources.py), up to a
    whole one: a CUDA job that fits a Ray task's registered GPU is accepted with FITSERVE_WORKERS_PER_GPU=2, where a
    pool worker's GPU of that size refuses it; one larger than the GPU is refused naming it."""
    api = make_app(workers=0, FITSERVE_WORKERS_PER_GPU="2", FITSERVE_LEASE_SECONDS="600").start()
    api.client.post("/v1/jobs", json=gpu_job(device="cuda"))
    [(estimate,)] = api.query("SELECT estimate_bytes FROM jobs")
    register_gpu("ray-task-0", estimate // 2, kind=WorkerKind.RAY_TASK)
    refused = api.client.post("/v1/jobs", json=gpu_job(device="cuda"))
    assert refused.status_code == 422, refused.text
    assert f"has {format_bytes(estimate // 2)}, all of it for one job" in refused.json()["detail"][0]["msg"]
    register_gpu("ray-task-1", estimate * 3 // 2, kind=WorkerKind.RAY_TASK)
    accepted = api.client.post("/v1/jobs", json=gpu_job(device="cuda"))
    assert accepted.status_code == 201, accepted.text


def test_a_cuda_sweep_whose_members_together_exceed_the_gpus_share_is_refused_unless_one_by_one(make_app):
    api = make_app(workers=0, FITSERVE_LEASE_SECONDS="600").start()
    api.client.post("/v1/jobs", json=gpu_job(device="cuda"))
    [(estimate,)] = api.query("SELECT estimate_bytes FROM jobs")
    register_gpu("gpu-worker-0", 2 * estimate)
    body = {"base": gpu_job(device="cuda"), "space": {"lr": [0.01, 0.02, 0.03]}}
    response = api.client.post("/v1/sweeps", json=body)
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "execution"] and "3 members together would need" in error["msg"]
    assert "the largest registered GPU, cuda:0" in error["msg"] and "or set execution one_by_one" in error["msg"]
    one_by_one = api.client.post("/v1/sweeps", json={**body, "execution": "one_by_one"})
    assert one_by_one.status_code == 201, one_by_one.text
    assert api.query("SELECT count(*) FROM jobs WHERE estimate_bytes = :e", e=estimate) == [(4,)]
