"""workers/run.py with no database: what a run does with what its ledger's writes hear back."""

from __future__ import annotations

import torch

from service.models import JobStatus
from service.settings import get_settings
from tests.specs import example
from tests.workers.engines.test_fast_path import setup
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
