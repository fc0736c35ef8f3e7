"""Optional fast paths never fail a job: when one raises, the job trains on the plain path and says so.

The worker code runs in this process against an in-process app's database, with the fast path made to
fail: CUDA graphs cannot run on this CPU machine, so the graph is a stand-in that raises on replay;
the batched sweep step is the real one, patched to raise after some epochs.
"""

from __future__ import annotations

import contextlib

import pytest

from service.settings import get_settings
from tests.conftest import claim_and_train, train_sweep_here
from tests.specs import tiny_regression
from workers.engines import eager as trainer_module
from workers.engines.stacked import StackedTrainer


class FailingGraph:
    """A CUDA graph whose replay fails, as a driver error would."""

    def __init__(self, trainer):
        self.t = trainer

    def running(self):
        return contextlib.nullcontext()

    def replay(self, recorded) -> bool:
        if self.t.progress.epoch >= 5:
            raise RuntimeError("injected: CUDA graph replay failed")
        return False  # eager epochs first, as before a capture


def test_a_failing_cuda_graph_falls_back_to_the_eager_path(worker_here, monkeypatch):
    srv, settings = worker_here
    monkeypatch.setattr(trainer_module, "can_graph", lambda batches, device: True)
    monkeypatch.setattr(trainer_module, "GraphedEpochs", FailingGraph)
    reference = tiny_regression(epochs=50)
    job = srv.submit(reference)
    claim_and_train(settings)
    done = srv.client.get(f"/v1/jobs/{job['id']}").json()
    assert done["status"] == "succeeded", done
    assert done["execution"].startswith("eager on cpu; the cuda graph path failed (RuntimeError: injected")
    assert done["progress"]["epoch"] == 50
    points = srv.client.get(f"/v1/jobs/{job['id']}/metrics").json()["points"]
    assert [p["epoch"] for p in points] == list(range(1, 51))  # the failed run's points were replaced once

    monkeypatch.undo()  # the same spec on the plain path from the start: the same final loss
    plain = srv.submit(reference)
    worker_settings = get_settings()
    claim_and_train(worker_settings)
    again = srv.client.get(f"/v1/jobs/{plain['id']}").json()
    assert again["execution"] == "eager on cpu"
    assert again["metrics"]["loss"] == pytest.approx(done["metrics"]["loss"], rel=1e-6)


def test_a_failing_batched_sweep_step_falls_back_to_one_by_one(worker_here, monkeypatch):
    srv, settings = worker_here
    real_epoch = StackedTrainer.train_epoch

    def failing_epoch(self, record):
        if self.progress.epoch >= 10:
            raise RuntimeError("injected: batched step failed")
        return real_epoch(self, record)

    monkeypatch.setattr(StackedTrainer, "train_epoch", failing_epoch)
    body = {"base": tiny_regression(epochs=30), "space": {"lr": [0.01, 0.02, 0.03]}, "execution": "batched"}
    sweep, members = train_sweep_here(srv, settings, body)
    assert sweep["execution"].startswith("one by one: the batched path failed (RuntimeError: injected")
    assert [m["status"] for m in members] == ["succeeded"] * 3
    assert all(m["execution"] == "eager on cpu" and m["progress"]["epoch"] == 30 for m in members)
