"""The Ray executor on a real cluster: placement on every node, cancel, and rescue when a node dies.

Needs RAY_ADDRESS, a running cluster of at least two nodes with one CPU each (.ci/run starts one);
skipped without it. The node-death test joins a node of its own to that cluster and kills it.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import Server, processes_only
from tests.specs import tiny_regression

RAY_ADDRESS = os.environ.get("RAY_ADDRESS")
pytestmark = [
    pytest.mark.skipif(not RAY_ADDRESS, reason="needs a Ray cluster: set RAY_ADDRESS (.ci/run starts one)"),
    # nodes on other machines share one PostgreSQL; the statements the dispatcher and its tasks run are the pool's
    # and the API's, tested on every back end in-process
    processes_only(prefer="postgresql"),
]

CHECKPOINTS = {"FITSERVE_CHECKPOINT_SECONDS": "0.3"}
# only for the node-death test: a lease of 3 s is also lost by a task starved of CPU for 3 s, which a loaded
# CI machine does (a job run twice); the other tests keep the default lease and assert one attempt a job
FAST_FAULTS = {**CHECKPOINTS, "FITSERVE_LEASE_SECONDS": "3", "FITSERVE_SWEEP_SECONDS": "0.5"}


def ray_bin() -> str:
    return str(Path(sys.executable).with_name("ray"))


@pytest.fixture(scope="module")
def ray_dispatching(tmp_path_factory, databases):
    """`fitserve serve` whose dispatcher places jobs on the cluster at RAY_ADDRESS, shared by the module's tests
    (they keep apart by their own job ids, and end every job they leave running)."""
    path = tmp_path_factory.mktemp("ray") / "fitserve.db"
    srv = Server(path, workers=1, db_url=databases.create(path), FITSERVE_EXECUTOR="ray", RAY_ADDRESS=RAY_ADDRESS,
                 **CHECKPOINTS)
    yield srv
    srv.stop()
    databases.drop(srv.db_url)


@pytest.fixture
def ray_server(ray_dispatching):
    """The module's server, running: a test that stopped it (SIGTERM) leaves it to be started again."""
    return ray_dispatching if ray_dispatching.proc is not None else ray_dispatching.start()


def job_of(seconds_of_work: int) -> dict:
    data = {"source": "synthetic", "generator": "linear", "n": 20, "slope": 2.0, "intercept": 1.0}
    return tiny_regression(epochs=2000 * seconds_of_work, data=data)


def test_jobs_run_on_every_node_and_report_as_local_workers_do(ray_server, capsys):
    ids = [ray_server.submit(job_of(2))["id"] for _ in range(6)]
    done = [ray_server.wait_for(job_id, timeout=180) for job_id in ids]
    assert [job["status"] for job in done] == ["succeeded"] * 6
    rescues = [line for line in ray_server.read_log().splitlines() if "WARNING" in line or "ERROR" in line]
    assert [(job["attempt"], job["device"]) for job in done] == [(1, "cpu")] * 6, "\n".join(rescues)
    placed = Counter(job["node"] for job in done)
    with capsys.disabled():  # CI's log shows where the jobs went
        print(f"\njobs placed per Ray node: {dict(placed)}")
    assert len(placed) >= 2 and all(len(node) == 56 for node in placed)  # Ray node ids, on both nodes
    curve = ray_server.client.get(f"/v1/jobs/{ids[0]}/metrics", params={"max_points": 100_000}).json()
    assert [p["epoch"] for p in curve["points"]] == list(range(1, 4001))
    answer = ray_server.client.post(f"/v1/jobs/{ids[0]}/predict", json={"inputs": [[1.0]]})
    assert answer.status_code == 200 and answer.json()["predictions"][0] == pytest.approx(3.0, abs=0.2)


def test_cancel_stops_a_job_running_on_ray(ray_server):
    job = ray_server.submit(job_of(500))
    ray_server.wait_until(job["id"], lambda j: j["progress"]["epoch"] > 0, timeout=60)
    assert ray_server.client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200
    done = ray_server.wait_for(job["id"], timeout=10)
    assert done["status"] == "cancelled" and 0 < done["progress"]["epoch"] < 1_000_000


def test_sigterm_hands_the_ray_job_back_with_its_checkpoint(ray_server):
    # 100,000 epochs, every one recorded: a job past the curve cap records one in n, and its reported epoch may
    # then trail its checkpoint by up to n
    job = ray_server.submit(job_of(50))
    ray_server.wait_until(job["id"], lambda j: j["progress"]["epoch"] >= 1000, timeout=60)
    assert ray_server.stop(signal.SIGTERM) == 0
    [(status, epoch)] = ray_server.query("SELECT status, epoch FROM jobs WHERE id = :id", id=job["id"])
    [(checkpoint_epoch,)] = ray_server.query("SELECT epoch FROM checkpoints WHERE job_id = :id", id=job["id"])
    assert status == "queued" and 0 < checkpoint_epoch <= epoch < 1_000_000
    ray_server.start()  # for the next tests, without this job: it would hold a node's CPU for minutes
    assert ray_server.client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200


def test_continued_and_warm_started_jobs_run_on_ray_from_their_parents(ray_server):
    parent = ray_server.wait_for(ray_server.submit(tiny_regression(epochs=40))["id"], timeout=120)
    child = ray_server.client.post(f"/v1/jobs/{parent['id']}/continue", json={"epochs": 10}).json()
    warm = ray_server.submit(tiny_regression(epochs=5, init={"from_job": parent["id"]}))
    child, warm = (ray_server.wait_for(job["id"], timeout=120) for job in (child, warm))
    assert child["status"] == warm["status"] == "succeeded" and len(child["node"]) == 56, child
    assert [p["epoch"] for p in ray_server.curve(child["id"])] == list(range(41, 51))
    last = ray_server.curve(parent["id"])[-1]["loss"]
    for job in (child, warm):  # near the parent's last loss, not a fresh start's
        assert ray_server.curve(job["id"])[0]["loss"] < 2 * last + 1e-3


def test_a_gpu_job_waits_for_a_gpu_while_cpu_jobs_run(ray_server):
    gpu_job = ray_server.submit(tiny_regression(device="cuda"))
    assert ray_server.train(tiny_regression())["status"] == "succeeded"
    waiting = ray_server.client.get(f"/v1/jobs/{gpu_job['id']}").json()
    assert waiting["status"] == "queued" and waiting["attempt"] == 0  # never claimed on a cluster without GPUs
    ray_server.client.post(f"/v1/jobs/{gpu_job['id']}/cancel")


def test_a_sweep_runs_as_one_batched_task_per_shape_group(ray_server):
    from tests.service.api.test_sweeps import CUBIC, submit_sweep, sweep_body, wait_sweep

    # two widths x two learning rates: two shape groups of two members each
    body = sweep_body({"hidden": [[8], [16]], "lr": [0.003, 0.01]}, {**CUBIC, "epochs": 60}, execution="batched")
    sweep = submit_sweep(ray_server, body)
    done = wait_sweep(ray_server, sweep["id"], timeout=240)
    assert done["status"] == "succeeded" and done["progress"]["succeeded"] == 4, done
    rows = ray_server.query("SELECT worker_id, node, attempt, execution FROM jobs WHERE sweep_id = :id", id=sweep["id"])
    tasks = Counter(worker for worker, *_ in rows)
    assert sorted(tasks.values()) == [2, 2] and all(worker.startswith("ray-") for worker in tasks)
    for worker_id in tasks:  # each task trained one width, batched
        members = ray_server.query(
            "SELECT spec FROM jobs WHERE sweep_id = :id AND worker_id = :w", id=sweep["id"], w=worker_id
        )
        widths = {str(json.loads(spec)["model"]["hidden"]) if isinstance(spec, str) else str(spec["model"]["hidden"])
                  for (spec,) in members}
        assert len(widths) == 1
        placed = rf"2 jobs \([^)]*\) of sweep {sweep['id']} placed on Ray as {worker_id}"
        assert re.search(placed, ray_server.read_log())
    assert all(
        attempt == 1 and len(node) == 56 and execution.startswith("batched") for _, node, attempt, execution in rows
    )


def join_node(tmp_path) -> subprocess.Popen:
    """One more Ray node on this machine, in a process group of its own so the test can kill it whole."""
    host = RAY_ADDRESS.rsplit(":", 1)[0]
    return subprocess.Popen(
        [ray_bin(), "start", "--block", f"--address={RAY_ADDRESS}", f"--node-ip-address={host}", "--num-cpus=1",
         "--object-store-memory=100000000", "--resources={\"fitserve_test_victim\": 1}", "--disable-usage-stats"],
        stdout=open(tmp_path / "victim-node.log", "ab"), stderr=subprocess.STDOUT, start_new_session=True,
    )


def node_id_of(proc: subprocess.Popen, timeout: float = 60) -> str:
    """The Ray node id of the raylet that `ray start --block` launched."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                args = cmdline.read_bytes().split(b"\0")
                stat = (cmdline.parent / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[3]) == proc.pid and any(a.endswith(b"/raylet") for a in args[:1]):  # stat[3]: pgid
                return next(a.split(b"=", 1)[1].decode() for a in args if a.startswith(b"--node_id="))
        time.sleep(0.5)
    raise AssertionError("the joined node's raylet never started")


def kill_node(proc: subprocess.Popen) -> None:
    """The node dies: its raylet, agents and worker processes at once, whatever session Ray gave them."""
    for pid in [proc.pid, *descendants(proc.pid)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def job_running_on(srv, ids: list[str], node_id: str, timeout: float = 120) -> dict:
    """The job among `ids` that has trained a while on the node `node_id`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for job_id in ids:
            job = srv.client.get(f"/v1/jobs/{job_id}").json()
            if job["node"] == node_id and job["progress"]["epoch"] >= 1000:
                return job
        time.sleep(0.2)
    raise AssertionError(f"no job ran on node {node_id}:\n{srv.read_log()[-3000:]}")


def test_a_job_whose_node_dies_is_rescued_on_another_node(make_server, tmp_path, capsys):
    victim = join_node(tmp_path)
    try:
        victim_id = node_id_of(victim)
        srv = make_server(workers=1, FITSERVE_EXECUTOR="ray", RAY_ADDRESS=RAY_ADDRESS, **FAST_FAULTS).start()
        ids = [srv.submit(job_of(6))["id"] for _ in range(3)]  # one per node: three nodes of one CPU
        job = job_running_on(srv, ids, victim_id)
        kill_node(victim)
        killed = time.monotonic()
        srv.wait_until(job["id"], lambda j: j["attempt"] == 2, timeout=60)
        with capsys.disabled():
            print(f"\njob rescued and placed again {time.monotonic() - killed:.1f}s after its node was killed")
        done = srv.wait_for(job["id"], timeout=180)
    finally:
        if victim.poll() is None:
            kill_node(victim)
        victim.wait(30)
    assert done["status"] == "succeeded" and done["attempt"] == 2 and done["node"] != victim_id
    curve = srv.client.get(f"/v1/jobs/{job['id']}/metrics", params={"max_points": 100_000}).json()
    assert [p["epoch"] for p in curve["points"]] == list(range(1, 12_001))  # resumed from its checkpoint
    assert all(srv.wait_for(i, timeout=120)["status"] == "succeeded" for i in ids)
