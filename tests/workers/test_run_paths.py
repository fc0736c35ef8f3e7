"""Every way a job trains goes through one run (workers/run.py): the same stops and endings on each path.

Paths: a job alone, a grid sweep stacked, one by one and as its probe chooses, ASHA and PBT stacked and in turn,
a TPE round stacked and one by one, and jobs auto-batched together. On each: evaluation on the test split, a cancel
inside a long epoch ended within 2 s, and a shutdown that hands every member back within
FITSERVE_SHUTDOWN_SECONDS, from a checkpoint where it trained. Stacked and one by one, a search trains the same
members to the same figures.
"""

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import wait_until
from tests.service.api.test_sweeps import CUBIC, submit_sweep, sweep_body, wait_sweep

LR = {"distribution": "log_uniform", "low": 0.001, "high": 0.01}
PATHS = {
    "alone": None,
    "grid, stacked": {"space": {"seed": [0, 1]}, "execution": "batched"},
    "grid, one by one": {"space": {"seed": [0, 1]}, "execution": "one_by_one"},
    "grid, probed": {"space": {"seed": [0, 1]}},  # execution auto: the probe chooses, and must not hold the stops
    "asha, stacked": {"space": {"lr": LR}, "search": "asha", "count": 3, "search_seed": 1,
                      "asha": {"min_epochs": 2, "reduction_factor": 3}, "execution": "batched"},
    "asha, in turn": {"space": {"lr": LR}, "search": "asha", "count": 3, "search_seed": 1,
                      "asha": {"min_epochs": 2, "reduction_factor": 3}, "execution": "one_by_one"},
    "pbt, stacked": {"space": {"lr": LR}, "search": "pbt", "count": 2, "search_seed": 1,
                     "pbt": {"interval_epochs": 2}, "execution": "batched"},
    "pbt, in turn": {"space": {"lr": LR}, "search": "pbt", "count": 2, "search_seed": 1,
                     "pbt": {"interval_epochs": 2}, "execution": "one_by_one"},
    "tpe, stacked": {"space": {"lr": LR}, "search": "tpe", "count": 2, "search_seed": 1, "tpe": {"rounds": 1},
                     "execution": "batched"},
    "tpe, one by one": {"space": {"lr": LR}, "search": "tpe", "count": 2, "search_seed": 1, "tpe": {"rounds": 1},
                        "execution": "one_by_one"},
    "auto-batched": "auto-batched",
}
# an epoch of minutes: 200,000 rows one at a time
LONG_EPOCH = {**CUBIC, "epochs": 5, "batch_size": 1, "data": {**CUBIC["data"], "n": 200_000}}
# many short epochs: a run that checkpoints and reports often
MANY_EPOCHS = {**CUBIC, "epochs": 100_000, "data": {**CUBIC["data"], "n": 64}}
SPLIT = {**CUBIC, "epochs": 6, "data": {**CUBIC["data"], "validation_fraction": 0.2, "test_fraction": 0.2}}


def start_path(make_app, path: str, base: dict, **env) -> tuple:
    """An app with one worker training `base` along `path`: (app, member ids, a call that cancels them all)."""
    how = PATHS[path]
    if how == "auto-batched":  # queued together before the worker that claims them starts
        waiting = make_app(workers=0, FITSERVE_AUTO_BATCH="on", **env).start()
        ids = [waiting.submit({**base, "seed": seed})["id"] for seed in (0, 1)]
        srv = make_app(workers=1, FITSERVE_AUTO_BATCH="on", **env).start()
        return srv, ids, lambda: [srv.client.post(f"/v1/jobs/{j}/cancel") for j in ids]
    srv = make_app(workers=1, **env).start()
    if how is None:
        job_id = srv.submit(base)["id"]
        return srv, [job_id], lambda: srv.client.post(f"/v1/jobs/{job_id}/cancel")
    sweep = submit_sweep(srv, sweep_body(base=base, **how))
    ids = [job_id for (job_id,) in srv.query("SELECT id FROM jobs WHERE sweep_id = :id", id=sweep["id"])]
    return srv, ids, lambda: srv.client.post(f"/v1/sweeps/{sweep['id']}/cancel")


def training(srv, ids: list[str]) -> None:
    """Until a member trains: it is running with its `execution` written, which the run does as it starts."""
    running = "SELECT count(*) FROM jobs WHERE status = 'running' AND execution IS NOT NULL AND id IN ({})"
    sql = running.format(", ".join(f"'{j}'" for j in ids))
    wait_until(lambda: srv.query(sql)[0][0] > 0, 120, "a member training")


@pytest.mark.parametrize("path", list(PATHS))
def test_a_long_epoch_is_cancelled_within_two_seconds(make_app, path):
    srv, ids, cancel = start_path(make_app, path, LONG_EPOCH)
    training(srv, ids)
    asked = datetime.now(UTC)
    cancel()
    for job_id in ids:
        done = srv.wait_for(job_id, timeout=30)
        assert done["status"] == "cancelled" and done["progress"]["epoch"] == 0, done
    # when the worker ended them, as it wrote it: this test's own polling is not counted
    sql = "SELECT max(finished_at) FROM jobs WHERE id IN ({})".format(", ".join(f"'{j}'" for j in ids))
    [(ended,)] = srv.query(sql)
    ended = ended if isinstance(ended, datetime) else datetime.fromisoformat(ended)
    assert ended.replace(tzinfo=UTC) - asked < timedelta(seconds=2)
    assert "Traceback" not in srv.read_log()


@pytest.mark.parametrize("path", list(PATHS))
def test_a_shutdown_hands_every_member_back_from_its_checkpoint(make_app, path):
    srv, ids, _ = start_path(make_app, path, MANY_EPOCHS, FITSERVE_SHUTDOWN_SECONDS="5",
                             FITSERVE_CHECKPOINT_SECONDS="0.2")
    progress = "SELECT max(epoch) FROM jobs WHERE id IN ({})".format(", ".join(f"'{j}'" for j in ids))
    wait_until(lambda: (srv.query(progress)[0][0] or 0) > 50, 120, "members training")
    asked = time.monotonic()
    srv.stop()  # the workers' shutdown, as SIGTERM sets it in a worker process
    assert time.monotonic() - asked < 5  # FITSERVE_SHUTDOWN_SECONDS: a worker process would be killed after it
    rows = srv.query("SELECT id, status, epoch FROM jobs WHERE id IN ({})".format(", ".join(f"'{j}'" for j in ids)))
    checkpoints = dict(srv.query("SELECT job_id, epoch FROM checkpoints"))
    handed_back = [(job_id, epoch) for job_id, status, epoch in rows if status == "queued"]
    assert handed_back and all(status in ("queued", "succeeded") for _, status, _ in rows), rows
    for job_id, epoch in handed_back:  # resumes where it stopped: its checkpoint is of its last reported epoch
        assert epoch == checkpoints.get(job_id, 0), (job_id, epoch, checkpoints)
    assert any(epoch > 0 for _, epoch in handed_back)
    assert "Traceback" not in srv.read_log()


@pytest.mark.parametrize("path", list(PATHS))
def test_every_trained_member_is_evaluated_on_its_test_split_and_keeps_its_final_state(make_app, path):
    srv, ids, _ = start_path(make_app, path, SPLIT)
    srv.wait_for_jobs(ids, timeout=120)
    kept = dict(srv.query("SELECT job_id, epoch FROM checkpoints"))
    for job_id in ids:
        job = srv.client.get(f"/v1/jobs/{job_id}").json()
        assert job["status"] == "succeeded", job
        assert job["evaluation"]["test"]["mse"] >= 0 and job["evaluation"]["validation"] is not None, job
        assert kept[job_id] == job["progress"]["epoch"]  # what a continuation starts from, where the member ended


@pytest.mark.parametrize("search", ["tpe", "asha"])
def test_stacked_and_one_by_one_train_the_same_members_to_the_same_figures(make_app, search):
    """One search seed, both ways: the same members (hyperparameters), each stopped where the other is, with the
    same final figures."""
    how = {k: v for k, v in PATHS[f"{search}, stacked"].items() if k != "execution"}
    srv = make_app(workers=1).start()
    finals = []
    for execution in ("batched", "one_by_one"):
        sweep = submit_sweep(srv, sweep_body(base={**SPLIT, "epochs": 20}, execution=execution, **how))
        done = wait_sweep(srv, sweep["id"])
        assert done["status"] == "succeeded", done
        jobs = [srv.client.get(f"/v1/jobs/{e['job_id']}").json() for e in done["leaderboard"]]
        by_values = {json.dumps(e["hyperparameters"], sort_keys=True): job for e, job in zip(done["leaderboard"], jobs)}
        finals.append(by_values)
    stacked, one_by_one = finals
    assert stacked.keys() == one_by_one.keys() and len(stacked) == how["count"]
    for member, job in stacked.items():
        other = one_by_one[member]
        assert (job["status"], job["stopped_early_at"]) == (other["status"], other["stopped_early_at"])
        assert job["metrics"]["val_loss"] == pytest.approx(other["metrics"]["val_loss"], rel=1e-4), (job, other)
