"""workers/run.py with no database: what a run does with what its ledger's writes hear back."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
import torch

from service.models import JobStatus
from service.repositories import jobs as job_repo
from service.settings import get_settings
from tests.specs import example, tiny_regression
from tests.workers.engines.test_fast_path import setup
from workers.engines.eager import Trainer
from workers.engines.in_turn import InTurn
from workers.engines.stacked import StackedTrainer
from workers.ledger import Member, MemoryLedger
from workers.run import Run


class HeardFrom(MemoryLedger):
    """A ledger whose writes from `epoch` on hear, per job id, a cancel (True) or that the job is gone (None)."""

    def __init__(self, epoch: int, heard: dict[str, bool | None]):
        super().__init__()
        self.epoch, self.heard = epoch, heard

    def report(self, entries: list[dict]) -> dict[str, bool | None]:
        flags = super().report(entries)
        if entries[0]["epoch"] >= self.epoch:
            flags.update(self.heard)
        return flags


def stacked(epochs: int, seeds=(1, 2, 3)) -> StackedTrainer:
    specs, nets, datas = zip(*(setup(example("3_nonlinear_mlp", epochs=epochs, seed=seed)) for seed in seeds))
    return StackedTrainer(list(specs), list(nets), list(datas), torch.device("cpu"))


def test_a_cancel_heard_at_the_last_report_comes_too_late_and_a_lost_job_gets_no_write():
    """Stacked members at their last epoch: the one whose cancel the final report hears is trained and succeeds
    with its weights; the one no longer this attempt's is written nothing more; the third succeeds as usual."""
    ledger = HeardFrom(epoch=20, heard={"1": True, "2": None})
    run = Run([Member(str(k), 1, {}) for k in range(3)], stacked(20), ledger, get_settings())
    run.start("cpu", "batched: 3 members on cpu", "")
    run.train()
    assert ledger.succeeded("0") and ledger.succeeded("1")
    assert "2" not in ledger.ended  # gone: no success, no cancel written over another attempt's
    assert run.ended == {"0": "succeeded", "1": "succeeded", "2": "lost"}
    assert [p.epoch for p in ledger.points["1"]][-1] == 20


def test_a_cancel_heard_before_the_last_epoch_ends_only_that_member():
    """The same cancel heard at a report before the end ends member 1 there; the others train to the end."""
    ledger = HeardFrom(epoch=10, heard={"1": True})
    settings = get_settings().model_copy(update={"REPORT_SECONDS": 0.0})  # reports as often as their cost allows
    run = Run([Member(str(k), 1, {}) for k in range(3)], stacked(2000), ledger, settings)
    run.start("cpu", "batched: 3 members on cpu", "")
    run.train()
    assert ledger.ended["1"]["status"] == JobStatus.CANCELLED
    assert 10 <= max(p.epoch for p in ledger.points["1"]) < 2000
    assert ledger.succeeded("0") and ledger.succeeded("2")
    assert max(p.epoch for p in ledger.points["0"]) == 2000


# ---------------------------------------------------------------- time limits (workers/time_limits.py)


def limited(epochs: int, max_seconds: dict[int, float], seeds=(1, 2, 3)) -> StackedTrainer:
    """Stacked members, member k with max_seconds[k] (if any)."""
    specs, nets, datas = zip(*(
        setup(example("3_nonlinear_mlp", epochs=epochs, seed=seed, **({"max_seconds": max_seconds[k]} if k in max_seconds else {})))
        for k, seed in enumerate(seeds)
    ))
    return StackedTrainer(list(specs), list(nets), list(datas), torch.device("cpu"))


def test_each_stacked_member_stops_at_its_own_time_limit_and_the_others_train_on():
    """Member 1 (1 s) stops alone, succeeded at its last whole epoch with its weights; members 0 and 2 (3 s) go on."""
    ledger = MemoryLedger()
    run = Run([Member(str(k), 1, {}) for k in range(3)], limited(100_000, {0: 3.0, 1: 1.0, 2: 3.0}), ledger, get_settings())
    run.start("cpu", "batched: 3 members on cpu", "")
    started = time.monotonic()
    run.train()
    assert time.monotonic() - started < 60  # not 100,000 epochs
    ended = {k: ledger.ended[str(k)] for k in range(3)}
    assert all(e["status"] == JobStatus.SUCCEEDED and e["net"] is not None for e in ended.values())
    assert ended[1]["stop_reason"] == f"time limit: max_seconds 1 reached after epoch {ended[1]['stopped_early_at']}"
    assert ended[0]["stop_reason"].startswith("time limit: max_seconds 3 reached")
    assert 1.0 <= ended[1]["trained_seconds"] < 3.0 <= ended[0]["trained_seconds"]
    last = {k: ledger.points[str(k)][-1].epoch for k in range(3)}
    assert last[1] == ended[1]["stopped_early_at"] < last[0] == ended[0]["stopped_early_at"] < 100_000
    assert last[0] == last[2]


def test_an_attempt_resumed_with_its_time_spent_stops_before_training_with_the_checkpoints_weights():
    """Earlier attempts trained max_seconds already: the resumed attempt trains no epoch and succeeds with the
    checkpoint's weights, its evaluation, and stopped_early_at the checkpoint's epoch."""
    spec, net, data = setup(example("3_nonlinear_mlp", epochs=50, max_seconds=5))
    first = Trainer(spec, net, data, torch.device("cpu"))
    with first.running():
        for _ in range(7):
            first.train_next(lambda epoch: True, 50)
    saved = first.state()
    spec, net, data = setup(example("3_nonlinear_mlp", epochs=50, max_seconds=5))
    resumed = Trainer(spec, net, data, torch.device("cpu"))
    resumed.load_state(saved)
    ledger = MemoryLedger()
    run = Run([Member("0", 2, {}, trained_seconds=5.0)], resumed, ledger, get_settings())
    run.start("cpu", "eager on cpu", "")
    run.train()
    ended = ledger.ended["0"]
    assert ended["status"] == JobStatus.SUCCEEDED and ended["stopped_early_at"] == 7
    assert ended["stop_reason"] == "time limit: max_seconds 5 reached after epoch 7"
    assert ended["evaluation"] is None or ended["evaluation"]["validation"] is not None
    assert not ledger.points["0"]  # no epoch trained
    for ours, theirs in zip(ended["net"].state_dict().values(), saved["model"].values()):
        assert torch.equal(ours, theirs)


def test_a_member_whose_sweep_ended_before_it_trained_ends_cancelled_untrained():
    ledger = MemoryLedger()
    late = Member("0", 1, {}, deadline_at=datetime.now(UTC) - timedelta(seconds=1))
    run = Run([late, Member("1", 1, {})], stacked(5, seeds=(1, 2)), ledger, get_settings())
    run.start("cpu", "batched: 2 members on cpu", "")
    run.train()
    assert ledger.ended["0"] == {"status": JobStatus.CANCELLED, "error": None, "stop_reason": job_repo.UNSTARTED_AT_DEADLINE}
    assert not ledger.points["0"]
    assert ledger.succeeded("1") and ledger.points["1"][-1].epoch == 5


@pytest.mark.parametrize("members", [1, 2])
def test_members_stopped_inside_an_epoch_keep_their_last_whole_epochs_weights(members):
    """Epochs of 1,000 mini-batches: the limit passes inside one (all but surely), the members stop there and keep
    the weights of the epoch before, those the same spec trained alone for that many epochs has (eager: equal;
    stacked: to float tolerance)."""
    spec_dict = tiny_regression(epochs=1000, batch_size=1, max_seconds=2,
                                data={"source": "synthetic", "generator": "linear", "n": 1000, "noise": 1.0})
    built = [setup({**spec_dict, "seed": seed}) for seed in range(members)]
    specs, nets, datas = zip(*built)
    engine = (Trainer(specs[0], nets[0], datas[0], torch.device("cpu")) if members == 1
              else StackedTrainer(list(specs), list(nets), list(datas), torch.device("cpu")))
    ledger = MemoryLedger()
    run = Run([Member(str(k), 1, {}) for k in range(members)], engine, ledger, get_settings())
    run.start("cpu", "", "")
    run.train()
    for k in range(members):
        ended = ledger.ended[str(k)]
        epoch = ended.get("stopped_early_at")
        assert ended["status"] == JobStatus.SUCCEEDED and 0 < epoch < 1000, ended
        assert ledger.points[str(k)][-1].epoch == epoch
        spec, net, data = setup({**spec_dict, "seed": k})
        alone = Trainer(spec, net, data, torch.device("cpu"))
        with alone.running():
            for _ in range(epoch):
                alone.train_next(lambda e: False, 1000)
        for ours, theirs in zip(ended["net"].parameters(), alone.net.parameters()):
            torch.testing.assert_close(ours, theirs, rtol=0 if members == 1 else 1e-4, atol=0 if members == 1 else 1e-6)


def test_members_in_turn_stop_at_their_own_limits():
    """Two eager engines taking turns (an adaptive search's one-by-one path): member 0 (1 s) stops alone, member 1
    (3 s) trains on; each curve ends where it stopped."""
    built = [setup(example("3_nonlinear_mlp", epochs=100_000, seed=k, max_seconds=limit)) for k, limit in enumerate((1, 3))]
    engine = InTurn([Trainer(spec, net, data, torch.device("cpu"), graphs=False) for spec, net, data in built])
    ledger = MemoryLedger()
    run = Run([Member(str(k), 1, {}) for k in range(2)], engine, ledger, get_settings())
    run.start("cpu", "eager on cpu; in turn", "")
    run.train()
    first, second = ledger.ended["0"], ledger.ended["1"]
    assert first["status"] == second["status"] == JobStatus.SUCCEEDED
    assert first["stop_reason"].startswith("time limit: max_seconds 1 reached")
    assert second["stop_reason"].startswith("time limit: max_seconds 3 reached")
    assert ledger.points["0"][-1].epoch == first["stopped_early_at"] < ledger.points["1"][-1].epoch == second["stopped_early_at"]
