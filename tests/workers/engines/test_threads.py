"""A CPU job times its own epochs at 1 torch thread and at its worker's count, and trains on at the faster."""

from __future__ import annotations

import pytest
import torch

from tests.specs import example
from tests.workers.engines.test_fast_path import setup
from workers.engines import threads
from service.settings import get_settings
from workers.engines.eager import Trainer
from workers.engines.stacked import StackedTrainer
from workers.engines.threads import ThreadChoice
from workers.ledger import Member, MemoryLedger
from workers.run import Run, train_here

# long enough that the probe repays itself on any machine these tests run on (see workers/engines/threads.py)
LONG = example("3_nonlinear_mlp", epochs=5000)


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


class EpochClock:
    """`time` for workers/engines/threads.py: each reading is one more epoch of `seconds` later, whatever the host's load."""

    def __init__(self, seconds: float):
        self.now, self.seconds = 0.0, seconds

    def perf_counter(self) -> float:
        self.now += self.seconds
        return self.now


class CountClock(EpochClock):
    """An epoch three times as long at the `slow` thread count."""

    def __init__(self, seconds: float, slow: int):
        super().__init__(seconds)
        self.slow = slow

    def perf_counter(self) -> float:
        self.now += self.seconds * (3 if torch.get_num_threads() == self.slow else 1)
        return self.now


@pytest.mark.parametrize("slow", [1, 2])
def test_the_probe_keeps_the_count_whose_epochs_are_faster(two_threads, monkeypatch, slow):
    monkeypatch.setattr(threads, "time", CountClock(0.0005, slow))
    choice = ThreadChoice(2)
    seen = set()
    while not choice.done:
        seen.add(torch.get_num_threads())
        choice.after_epoch(epochs_left=10**6)
    fast = 3 - slow
    assert seen == {1, 2}
    assert len(choice.timing.times[1]) == len(choice.timing.times[2]) == 2 * threads.ROUNDS
    assert choice.threads == fast and torch.get_num_threads() == fast
    assert choice.note.startswith(f"{fast} torch thread(s): measured ")
    choice.restore()
    assert torch.get_num_threads() == 2


def tuned_run(engine) -> tuple[Run, MemoryLedger]:
    ledger = MemoryLedger()
    members = [Member(str(k), 0, {}) for k in range(len(engine.specs))]
    return Run(members, engine, ledger, get_settings(), tune_threads=True), ledger


@pytest.mark.parametrize("epoch_seconds", [1e-4, 1e-3, 0.05])
def test_a_job_too_short_to_repay_the_probe_keeps_all_its_threads(two_threads, monkeypatch, epoch_seconds):
    """Under 161 epochs the probe's 16 blocks of at least one epoch are over a tenth of any job, however slow;
    a job so fast that its warm-up never ends is never probed either."""
    spec, net, data = setup(example("4_logistic_regression", epochs=150))
    monkeypatch.setattr(threads, "time", EpochClock(epoch_seconds))
    calls = []
    original = ThreadChoice.after_epoch

    def counted(self, epochs_left):
        calls.append(epochs_left)
        original(self, epochs_left)

    monkeypatch.setattr(ThreadChoice, "after_epoch", counted)
    blocks = []
    monkeypatch.setattr(ThreadChoice, "start_block", lambda self, now: blocks.append(now))
    run, ledger = tuned_run(Trainer(spec, net, data, torch.device("cpu")))
    run.start("cpu", "eager on cpu", "")
    run.train()
    assert ledger.succeeded()
    assert calls == list(range(149, -1, -1))  # asked after every epoch
    assert blocks == []  # the probe never started a block at either count
    # the warm-up ends (50 ms) within the job unless its epochs are faster than a third of a millisecond
    assert run.threads.done == (epoch_seconds * 149 >= threads.WARMUP_SECONDS)
    assert run.threads.note is None and run.threads.timing.times == {1: [], 2: []}
    assert "execution" not in ledger.ended["0"]
    assert torch.get_num_threads() == 2


def small_cubic(**overrides) -> dict:
    """The cubic MLP on 300 rows: where the clock is faked, rows only cost time."""
    spec = example("3_nonlinear_mlp", **overrides)
    spec["data"]["n"] = 300
    return spec


@pytest.mark.parametrize("slow", [1, 2])
def test_stacked_members_train_on_at_the_faster_count(two_threads, monkeypatch, slow):
    """The probe belongs to the run, so members stacked into one computation choose their count as a job alone
    does: each member's `execution` says which and why, and the worker gets all its threads back after."""
    specs, nets, datas = zip(*(setup(small_cubic(epochs=600, seed=seed)) for seed in (1, 2, 3)))
    # 5 ms an epoch (15 at the slow count): the probe's blocks are an epoch or two, and 600 epochs repay it
    monkeypatch.setattr(threads, "time", CountClock(0.005, slow))
    counts = []
    engine = StackedTrainer(list(specs), list(nets), list(datas), torch.device("cpu"))
    train_next = engine.train_next

    def counted(recorded, epochs):
        counts.append(torch.get_num_threads())
        return train_next(recorded, epochs)

    engine.train_next = counted
    run, ledger = tuned_run(engine)
    run.start("cpu", "batched: 3 members on cpu", "")
    run.train()
    fast = 3 - slow
    assert {1, 2} <= set(counts) and counts[-1] == fast  # both counts timed, the rest trained at the faster
    for k in "012":
        assert ledger.succeeded(k)
        assert ledger.ended[k]["execution"].startswith(f"batched: 3 members on cpu; {fast} torch thread(s): measured ")
    assert torch.get_num_threads() == 2


@pytest.mark.one_backend("the trainer's thread choice; its writes run on every back end elsewhere")
def test_a_tuned_job_trains_where_an_untuned_one_does(make_app):
    """Through the worker loop with 2 torch threads: the job says which count it kept and why, and ends at the loss
    (and weights' predictions) the trainer reaches at a fixed count, to float tolerance."""
    srv = make_app(FITSERVE_TORCH_THREADS="2").start()
    job = srv.train(LONG, timeout=300)
    assert job["status"] == "succeeded", job
    assert "torch thread(s): measured " in job["execution"] and job["execution"].startswith("eager on cpu; ")
    kept = int(job["execution"].split("; ")[1].split()[0])
    assert kept in (1, 2)

    spec, net, data = setup(LONG)
    trainer = Trainer(spec, net, data, torch.device("cpu"))
    ledger = train_here(trainer)
    points = ledger.points["0"]
    assert ledger.succeeded() and "execution" not in ledger.ended["0"]  # train_here measures no threads
    assert job["metrics"]["loss"] == pytest.approx(points[-1].loss, rel=1e-4)
    x = [[-2.5], [0.0], [1.5]]
    got = srv.client.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": x}).json()["predictions"]
    want = trainer.net(torch.tensor(x)).detach().flatten().tolist()
    assert got == pytest.approx(want, rel=1e-3, abs=1e-4)
