"""Auto-batching: jobs submitted one by one, claimed together and trained as one batched computation.

The jobs queue on an API without workers, then one worker starts on the same database and finds them
all: what a claim takes is then decided by the queue alone, never by timing.
"""

import os
import re
import signal

import pytest
import torch

from service.schemas.spec import JobSpec
from service.settings import get_settings
from tests.conftest import processes_only, worker_pids
from tests.service.api.test_fair_share import keyed_api, submit
from tests.specs import FAST_FAULTS, KILLABLE_EPOCHS, example, long_job, tiny_regression
from tests.workers.engines.test_stacked import solo_points

ON = {"FITSERVE_AUTO_BATCH": "on"}


def cubic(seed: int, lr: float, momentum: float = 0.0) -> dict:
    spec = example("3_nonlinear_mlp", epochs=40, seed=seed)
    spec["data"]["n"] = 300
    spec["optimizer"].update(lr=lr, momentum=momentum)
    return spec



def batches_in_log(srv) -> list[list[str]]:
    """The job ids of each auto-batch the workers claimed, in order."""
    return [line.split(", ") for line in re.findall(r"auto-batch: \d+ jobs claimed by \S+: (.+)", srv.read_log())]


def assert_equals_training_alone(srv, job_id: str, spec: dict) -> None:
    alone = solo_points(JobSpec.model_validate(spec))
    points = srv.curve(job_id)
    assert [p["step"] for p in points] == [p.step for p in alone]
    assert [p["loss"] for p in points] == pytest.approx([p.loss for p in alone], rel=2e-4, abs=1e-6)


def test_compatible_jobs_train_as_one_batch_each_equal_to_training_alone(make_app):
    api = make_app(workers=0).start()
    specs = [cubic(0, 0.01), cubic(1, 0.01, momentum=0.9), cubic(2, 0.003), cubic(3, 0.02)]
    ids = [api.submit(spec)["id"] for spec in specs]
    other = api.submit({**cubic(0, 0.01), "model": {**cubic(0, 0.01)["model"], "hidden": [7]}})["id"]  # another shape
    worker = make_app(workers=1, **ON).start()
    api.wait_for_jobs([*ids, other])
    assert batches_in_log(worker) == [ids]
    for job_id, spec in zip(ids, specs):
        job = api.client.get(f"/v1/jobs/{job_id}").json()
        assert job["status"] == "succeeded" and job["attempt"] == 1
        assert job["execution"].startswith("batched: 4 jobs auto-batched on cpu"), job["execution"]
        assert_equals_training_alone(api, job_id, spec)
        weights = api.client.get(f"/v1/jobs/{job_id}/weights")
        assert weights.status_code == 200
    alone = api.client.get(f"/v1/jobs/{other}").json()
    assert alone["status"] == "succeeded" and "batched" not in alone["execution"]


def test_auto_batch_off_trains_each_job_alone(make_app):
    api = make_app(workers=0).start()
    ids = [api.submit(cubic(seed, 0.01))["id"] for seed in range(3)]
    worker = make_app(workers=1, FITSERVE_AUTO_BATCH="off").start()
    api.wait_for_jobs(ids)
    assert batches_in_log(worker) == []
    for job_id in ids:
        job = api.client.get(f"/v1/jobs/{job_id}").json()
        assert job["status"] == "succeeded" and job["execution"] == "eager on cpu"


def test_cancelling_one_job_of_a_batch_stops_only_it(make_app):
    api = make_app(workers=0).start()
    ids = [api.submit(long_job(KILLABLE_EPOCHS, seed=seed))["id"] for seed in range(3)]
    worker = make_app(workers=1, **ON).start()
    api.wait_until(ids[1], lambda job: job["progress"]["epoch"] >= 500, timeout=60)
    assert batches_in_log(worker) == [ids]
    assert api.client.post(f"/v1/jobs/{ids[1]}/cancel").status_code == 200
    api.wait_for_jobs(ids, timeout=180)
    statuses = {job_id: api.client.get(f"/v1/jobs/{job_id}").json() for job_id in ids}
    assert [statuses[i]["status"] for i in ids] == ["succeeded", "cancelled", "succeeded"]
    assert statuses[ids[1]]["progress"]["epoch"] < KILLABLE_EPOCHS
    assert all(statuses[i]["progress"]["epoch"] == KILLABLE_EPOCHS for i in (ids[0], ids[2]))


@processes_only(prefer="postgresql")
def test_a_killed_workers_batch_is_rescued_and_each_job_resumes(make_app, make_server):
    api = make_app(workers=0).start()  # the API in this process; the workers killed are a served process's
    specs = [long_job(KILLABLE_EPOCHS, seed=seed) for seed in range(3)]
    ids = [api.submit(spec)["id"] for spec in specs]
    worker = make_server(workers=1, **ON, **FAST_FAULTS).start()
    api.wait_until(ids[0], lambda _: len(api.query("SELECT epoch FROM checkpoints WHERE epoch > 0")) == 3, timeout=60)
    checkpointed = dict(api.query("SELECT job_id, epoch FROM checkpoints"))
    [pid] = worker_pids(worker.proc.pid)
    os.kill(pid, signal.SIGKILL)
    api.wait_for_jobs(ids, timeout=180)
    assert batches_in_log(worker)[:2] == [ids, ids]  # claimed again together after the rescue
    for job_id, spec in zip(ids, specs):
        job = api.client.get(f"/v1/jobs/{job_id}").json()
        assert job["status"] == "succeeded" and job["attempt"] == 2, job
        assert 0 < checkpointed[job_id] < KILLABLE_EPOCHS
        points = api.curve(job_id)
        assert [p["epoch"] for p in points] == list(range(1, KILLABLE_EPOCHS + 1))  # resumed: no epoch lost or written twice
        alone = solo_points(JobSpec.model_validate(spec))
        assert points[-1]["loss"] == pytest.approx(alone[-1].loss, rel=1e-4)
    assert pid not in worker_pids(worker.proc.pid)


def test_a_batch_takes_mates_from_every_owner_in_turn(make_app):
    api = keyed_api(make_app)
    api.keys["carol"] = api.create_key("carol")
    alices = [submit(api, "alice", cubic(seed, 0.01))["id"] for seed in range(6)]
    bobs = [submit(api, "bob", cubic(10 + seed, 0.01))["id"] for seed in range(2)]
    carols = [submit(api, "carol", cubic(20 + seed, 0.01))["id"] for seed in range(2)]
    worker = make_app(workers=1, FITSERVE_AUTO_BATCH_MAX="4", **ON).start()
    api.wait_for_jobs(alices + bobs + carols)
    first = batches_in_log(worker)[0]
    owners = {job_id: owner for owner, ids in (("a", alices), ("b", bobs), ("c", carols)) for job_id in ids}
    # the claimed job, then the first of each other owner (none running), then a second of one of them:
    # the claimed job's owner, with one running already, waits for the others' turns
    taken = [owners[j] for j in first]
    assert len(first) == 4 and set(taken) == {"a", "b", "c"}, taken
    assert taken.count(taken[0]) == 1, taken


def test_a_batch_stays_under_the_owners_running_cap(make_app):
    api = keyed_api(make_app)
    alices = [submit(api, "alice", cubic(seed, 0.01))["id"] for seed in range(6)]
    bobs = [submit(api, "bob", cubic(10 + seed, 0.01))["id"] for seed in range(3)]
    worker = make_app(workers=1, FITSERVE_MAX_RUNNING_PER_OWNER="2", **ON).start()
    api.wait_for_jobs(alices + bobs)
    batches = batches_in_log(worker)
    assert batches and max(len(b) for b in batches) == 4  # two of each owner, the most the cap allows
    for batch in batches:
        assert sum(j in alices for j in batch) <= 2 and sum(j in bobs for j in batch) <= 2, batch


def tiny_group(n: int):
    """n tiny regressions of one batch key, as a claim hands them to the policy: (jobs, specs, nets, datas)."""
    from service.models import Job
    from workers.groups import prepare

    specs = [JobSpec.model_validate(tiny_regression(seed=i, epochs=50)) for i in range(n)]
    group = [Job(batch_key="tiny", spec=spec.model_dump(mode="json")) for spec in specs]
    nets, datas = zip(*(prepare(spec, torch.device("cpu")) for spec in specs))
    return group, specs, nets, datas


def test_the_probe_measures_a_real_speedup():
    from workers.groups import measure_speedup

    _, specs, nets, datas = tiny_group(4)
    speedup = measure_speedup(specs, nets, datas, torch.device("cpu"))
    assert 0 < speedup < float("inf")


def test_the_probe_times_both_paths_at_each_thread_count_the_run_may_choose(monkeypatch):
    """Each path is judged at its fastest count, as the run then trains it (workers/engines/threads.py): both are
    stepped at 1 thread and at 2, and the worker's count is back after."""
    from workers.engines.stacked import StackedTrainer
    from workers.engines.threads import thread_counts
    from workers.groups import measure_speedup

    seen = {"stacked": set()}
    stacked_step = StackedTrainer.step

    def counted(self, *args):
        seen["stacked"].add(torch.get_num_threads())
        return stacked_step(self, *args)

    monkeypatch.setattr(StackedTrainer, "step", counted)
    _, specs, nets, datas = tiny_group(4)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        threads = thread_counts(get_settings().TUNE_THREADS, torch.device("cpu"))
        assert threads == [1, 2]
        assert 0 < measure_speedup(specs, nets, datas, torch.device("cpu"), threads) < float("inf")
        assert seen["stacked"] == {1, 2} and torch.get_num_threads() == 2
        assert thread_counts(False, torch.device("cpu")) == [2]
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("at_16", [10.0, 2.0])  # 16 stacked 50-point regressions measure about 10x here
def test_a_probe_of_a_large_batch_bounds_a_smaller_ones_speedup_without_probing_again(monkeypatch, at_16):
    """The policy's arithmetic on injected measurements: the verdict never depends on the machine's speed."""
    from service.settings import get_settings
    from workers import auto_batch
    from workers.groups import MIN_SPEEDUP

    measured = iter([at_16, 1.5])
    monkeypatch.setattr(auto_batch, "measure_speedup", lambda *_: next(measured))
    policy, cpu = auto_batch.AutoBatchPolicy(get_settings()), torch.device("cpu")
    (s16, measured_16), (at_6, measured_6) = (policy.speedup(*tiny_group(n), cpu, [1]) for n in (16, 6))
    assert measured_16 and policy.probed_sizes[("tiny", 16)] == 16 and s16 == at_16 == policy.speedups[("tiny", 16)]
    assert policy.speedup_floor("other key", 6) == 0.0
    if at_16 * 6 / 16 >= MIN_SPEEDUP:  # 3.75x at 6 follows from 10x at 16: no second probe
        assert at_6 == pytest.approx(at_16 * 6 / 16) and not measured_6
        assert policy.probed_sizes == {("tiny", 16): 16}
        assert policy.speedup_floor("tiny", 32) == at_16  # wider costs at most in proportion
    else:  # 0.75x proves nothing: the smaller size is probed on its own
        assert measured_6 and policy.probed_sizes[("tiny", 8)] == 6 and at_6 == 1.5 == policy.speedups[("tiny", 8)]
        assert policy.speedup_floor("tiny", 32) == at_16
