"""What a job's Ray task asks for (workers/executors/ray_resources.py), and the dispatcher's placement of GPU jobs
by their estimates; no Ray cluster needed (tests/workers/test_ray.py runs jobs on one)."""

import pytest

from modelzoo.memory import format_bytes
from service.settings import get_settings
from tests.specs import tiny_regression
from workers.executors.ray_resources import GpuBudget, fits, fits_no_gpu, resources_for

GIB = 1024**3


def test_resources_follow_the_spec():
    assert resources_for({"device": "cpu"}, 1.0, cluster_has_gpus=True) == {"num_cpus": 1.0, "num_gpus": 0}
    assert resources_for({"device": "cuda"}, 2.0, cluster_has_gpus=False) == {"num_cpus": 2.0, "num_gpus": 1}
    assert resources_for({"device": "auto"}, 1.0, cluster_has_gpus=True)["num_gpus"] == 1
    assert resources_for({}, 1.0, cluster_has_gpus=False)["num_gpus"] == 0


def test_a_gpu_job_asks_for_its_estimates_share_of_the_gpu_rounded_up_to_rays_unit():
    budget = GpuBudget(24 * GIB, "node-a", workers_per_gpu=8)
    cuda = {"device": "cuda"}
    assert resources_for(cuda, 1.0, True, 6 * GIB, budget) == {"num_cpus": 1.0, "num_gpus": 0.25}
    assert budget.fraction(6 * GIB + 1) == 0.2501  # rounded up: the fractions placed never add up to less
    assert budget.fraction(1) == budget.fraction(None) == 0.125  # at least 1/FITSERVE_WORKERS_PER_GPU
    assert budget.fraction(24 * GIB) == 1.0 and budget.fraction(24 * GIB + 1) == 1.0001
    assert not fits_no_gpu(resources_for(cuda, 1.0, True, 24 * GIB, budget))
    assert fits_no_gpu(resources_for(cuda, 1.0, True, 24 * GIB + 1, budget))
    # the least share is rounded down, so three of a third (0.3333) fit a GPU
    thirds = GpuBudget(24 * GIB, "node-a", workers_per_gpu=3)
    assert thirds.fraction(None) == 0.3333
    assert fits({"num_cpus": 1, "num_gpus": 0.3333}, {"num_cpus": 1, "num_gpus": 1 - 2 * 0.3333})
    assert resources_for({"device": "cpu"}, 1.0, True, 48 * GIB, budget)["num_gpus"] == 0  # a CPU job asks none
    assert resources_for({"device": "auto"}, 1.0, False, 6 * GIB, budget)["num_gpus"] == 0  # nor `auto` without GPUs
    assert budget.refusal(30 * GIB, 1) == (
        "does not fit a GPU: estimate 30.0 GiB of 24.0 GiB, the smallest GPU of the Ray cluster (on node node-a)")


def test_fractions_of_a_gpu_taken_one_by_one_leave_room_as_ray_counts_it():
    free = {"num_cpus": 4.0, "num_gpus": 0.3}
    tenth = {"num_cpus": 1.0, "num_gpus": 0.1}
    for _ in range(2):
        assert fits(tenth, free)
        free = {key: free[key] - tenth[key] for key in free}
    assert free["num_gpus"] < 0.1 and fits(tenth, free)  # 0.0999...98 in floats; one unit of 0.0001 less for Ray
    assert not fits({"num_cpus": 1.0, "num_gpus": 0.1001}, free)


def dispatcher_with(budget: GpuBudget):
    """The real dispatcher, its GPU budget as the probe would find it on a GPU node (there is no GPU here)."""
    pytest.importorskip("ray", reason="the dispatcher needs Ray (.[ray])")
    from workers.executors.ray import Dispatcher

    dispatcher = Dispatcher(get_settings())
    dispatcher.budget = budget
    return dispatcher


def test_a_gpu_job_that_fits_no_gpu_fails_at_placement_naming_its_estimate_and_the_gpu(make_app):
    srv = make_app(workers=0, FITSERVE_AUTO_BATCH="off").start()
    more_rows = {"source": "synthetic", "generator": "linear", "n": 5000}
    big = srv.submit(tiny_regression(device="cuda", name="big", data=more_rows))
    small = srv.submit(tiny_regression(device="cuda", name="small"))
    estimates = dict(srv.query("SELECT name, estimate_bytes FROM jobs"))
    total = (estimates["big"] + estimates["small"]) // 2
    dispatcher_with(GpuBudget(total, "node-a", 4)).place_queued({"num_cpus": 1.0, "num_gpus": 0.0}, has_gpus=True)
    big, small = (srv.client.get(f"/v1/jobs/{job['id']}").json() for job in (big, small))
    assert big["status"] == "failed" and big["attempt"] == 1
    assert big["error"] == (f"does not fit a GPU: estimate {format_bytes(estimates['big'])} of {format_bytes(total)}, "
                            "the smallest GPU of the Ray cluster (on node node-a)")
    assert small["status"] == "queued" and small["attempt"] == 0  # it fits a GPU: it waits for one to be free


def test_a_sweeps_members_trained_together_that_fit_no_gpu_fail_together(make_app):
    from tests.service.api.test_sweeps import submit_sweep, sweep_body

    srv = make_app(workers=0, FITSERVE_AUTO_BATCH="off").start()
    sweep = submit_sweep(srv, sweep_body({"lr": [0.01, 0.02]}, base=tiny_regression(device="cuda"), execution="batched"))
    [(estimate,)] = srv.query("SELECT DISTINCT estimate_bytes FROM jobs")
    dispatcher_with(GpuBudget(estimate * 3 // 2, "node-a", 4)).place_queued({"num_cpus": 1.0, "num_gpus": 1.0}, True)
    members = srv.query("SELECT status, error FROM jobs WHERE sweep_id = :id", id=sweep["id"])
    error = (f"does not fit a GPU (2 jobs trained together): estimate {format_bytes(2 * estimate)} of "
             f"{format_bytes(estimate * 3 // 2)}, the smallest GPU of the Ray cluster (on node node-a)")
    assert members == [("failed", error)] * 2  # each alone would fit: together they would not


def test_the_budget_is_the_smallest_gpu_once_every_gpu_node_has_answered():
    """What the probes answered, as `GpuMemory` holds it (the probe tasks need GPU nodes: none here)."""
    pytest.importorskip("ray", reason="the dispatcher needs Ray (.[ray])")
    from workers.executors.ray import GpuMemory

    memory = GpuMemory(workers_per_gpu=2)
    assert memory.budget(0.0) is None  # no GPUs: nothing probed, GPU jobs never placed
    memory.cluster_gpus, memory.nodes = 3.0, {"node-a", "node-b"}  # as `probe_new_nodes` finds them
    memory.totals = {"node-a": 80 * GIB}
    assert memory.budget(3.0) is None  # node-b has not answered: GPU jobs ask for whole GPUs meanwhile
    memory.totals["node-b"] = 24 * GIB
    assert memory.budget(3.0) == GpuBudget(24 * GIB, "node-b", 2)
    memory.totals["node-b"] = None  # its CUDA did not answer: the others' budget
    assert memory.budget(3.0) == GpuBudget(80 * GIB, "node-a", 2)
