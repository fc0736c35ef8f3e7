"""The compiled step (workers/engines/compiled.py) trains the plain engines' curves, and never fails a job.

Compiling takes seconds on this CPU, so each case trains a few epochs only; FITSERVE_COMPILE=on makes the run
train compiled from its first step.
"""

from __future__ import annotations


import pytest
import torch

from service.schemas.spec import JobSpec
from service.settings import get_settings
from tests.conftest import claim_and_train, train_sweep_here
from tests.specs import example, tiny_regression
from workers.attempt import prepare
from workers.engines import compile_choice
from workers.engines.compile_choice import CompileChoice
from workers.engines.eager import Trainer
from workers.engines.stacked import StackedTrainer
from workers.ledger import Member, MemoryLedger
from workers.run import Run

CPU = torch.device("cpu")


def small(name: str, epochs: int, **changes) -> dict:
    spec = example(name, epochs=epochs, **changes)
    if spec["data"].get("generator") == "blobs":
        for cluster in spec["data"]["clusters"]:
            cluster["n"] = 60
    elif "n" in spec["data"]:
        spec["data"]["n"] = 200
    return spec


SINGLE = {
    "linear regression, sgd": small("2_linear_regression", 30, optimizer={"kind": "sgd", "lr": 0.05}),
    "cubic mlp, momentum and weight decay": small(
        "3_nonlinear_mlp", 30, optimizer={"kind": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 0.001}),
    "logistic, adam": small("4_logistic_regression", 30, optimizer={"kind": "adam", "lr": 0.01}),
    "softmax, adamw, mini-batches and validation": small(
        "5_softmax_classification", 6, optimizer={"kind": "adamw", "lr": 0.01, "weight_decay": 0.01},
        batch_size=50, data={**small("5_softmax_classification", 1)["data"], "validation_fraction": 0.2}),
    "cnn, adam, validation": example("6_cnn_digits", epochs=3, batch_size=None),
}


def trained(engine, mode: str) -> MemoryLedger:
    ledger = MemoryLedger()
    run = Run([Member(str(k), 0, {}) for k in range(len(engine.specs))], engine, ledger,
              get_settings().model_copy(update={"COMPILE": mode}), tune_threads=False)
    run.start("cpu", "eager on cpu", "")
    run.train()
    return ledger


def assert_same(got: MemoryLedger, want: MemoryLedger, members: int = 1) -> None:
    for k in map(str, range(members)):
        assert got.succeeded(k) and want.succeeded(k)
        got_points, want_points = got.points[k], want.points[k]
        assert [p.epoch for p in got_points] == [p.epoch for p in want_points]
        for field in ("loss", "val_loss"):
            values = [getattr(p, field) for p in want_points]
            if values[0] is not None:
                assert [getattr(p, field) for p in got_points] == pytest.approx(values, rel=1e-4, abs=1e-6), field
        got_weights, want_weights = got.ended[k]["net"].state_dict(), want.ended[k]["net"].state_dict()
        for name, weights in want_weights.items():
            torch.testing.assert_close(got_weights[name], weights, rtol=1e-3, atol=1e-5)


def single(spec_dict: dict, compiled: bool) -> Trainer:
    spec = JobSpec.model_validate(spec_dict)
    net, data = prepare(spec, CPU)
    return Trainer(spec, net, data, CPU, compiled=compiled)


@pytest.mark.parametrize("name", SINGLE)
def test_a_compiled_step_trains_the_plain_curve(name):
    spec = SINGLE[name]
    engine = single(spec, compiled=True)
    got = trained(engine, "on")
    assert engine.compiled.failed is None and engine.step_fn is engine.compiled
    assert_same(got, trained(single(spec, compiled=False), "off"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", ["cubic mlp, momentum and weight decay", "logistic, adam"])
def test_a_compiled_step_captured_in_a_cuda_graph_trains_the_plain_curve(name):
    spec = JobSpec.model_validate({**SINGLE[name], "epochs": 120})  # past the warm-up and a full replay
    net, data = prepare(spec, CPU)
    cuda = torch.device("cuda")
    engine = Trainer(spec, net.to(cuda), data.to(cuda), cuda, compiled=True)
    got = trained(engine, "on")
    assert engine.compiled.failed is None and engine.graph.graph is not None and not engine.graph.failed
    plain = single(SINGLE[name] | {"epochs": 120}, compiled=False)
    want = trained(plain, "off")
    assert [p.loss for p in got.points["0"]] == pytest.approx([p.loss for p in want.points["0"]], rel=1e-4)


def test_a_compiled_run_checkpoints_what_the_plain_step_resumes_from():
    spec = SINGLE["logistic, adam"]
    whole = trained(single(spec, compiled=False), "off").points["0"]
    first = single({**spec, "epochs": 15}, compiled=True)
    trained(first, "on")
    rest = single(spec, compiled=False)
    rest.load_state(first.state())  # Adam's moments and step count, as the compiled step left them
    points = trained(rest, "off").points["0"]
    assert [p.epoch for p in points] == list(range(16, 31))
    assert [p.loss for p in points] == pytest.approx([p.loss for p in whole[15:]], rel=1e-4)


def stacked(spec_dicts: list[dict], compiled: bool) -> StackedTrainer:
    specs = [JobSpec.model_validate(s) for s in spec_dicts]
    nets, datas = zip(*(prepare(s, CPU) for s in specs))
    return StackedTrainer(specs, list(nets), list(datas), CPU, compiled=compiled)


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_compiled_stacked_members_train_the_plain_curves(kind):
    base = small("5_softmax_classification", 20) if kind == "adam" else small("3_nonlinear_mlp", 20)
    specs = [{**base, "seed": k, "optimizer": {"kind": kind, "lr": lr}} for k, lr in enumerate([0.01, 0.03, 0.003])]
    engine = stacked(specs, compiled=True)
    got = trained(engine, "on")
    assert engine.compiled.failed is None and engine.compiling
    assert_same(got, trained(stacked(specs, compiled=False), "off"), members=3)


def test_the_measured_choice_compiles_only_a_job_that_repays_it(monkeypatch):
    spec = small("3_nonlinear_mlp", 400)
    short = single(spec, compiled=True)  # a compile expected to cost 10 s: 400 small epochs never repay it
    trained(short, "auto")
    assert short.compiled.compiled.fn is None and short.step_fn is short.plain_step

    # the choice driven epoch by epoch, as the run drives it, waiting for the compile beside it
    monkeypatch.setitem(compile_choice.EXPECTED_COMPILE_SECONDS, "cpu", 0.0)
    monkeypatch.setattr(compile_choice, "WARMUP_SECONDS", 0.01)
    monkeypatch.setattr(compile_choice, "BLOCK_SECONDS", 0.005)
    engine, epochs = single(spec, compiled=True), 10**6
    choice = CompileChoice(engine)
    with engine.running():
        while not choice.done:
            engine.train_next(lambda epoch: False, epochs)
            if choice.rehearsal is not None:
                choice.rehearsal.join()  # the run trains on meanwhile; here the epochs' count may not matter
            choice.after_epoch(epochs - engine.progress.epoch)
        trained_epochs = engine.progress.epoch
        engine.train_next(lambda epoch: True, epochs)
    assert choice.note.startswith(f"{'compiled' if engine.step_fn is engine.compiled else 'plain'} step: measured")
    assert engine.compiled.compiled.fn is not None and choice.compile_cost > 0
    plain = single({**spec, "epochs": trained_epochs + 1}, compiled=False)
    [want] = trained(plain, "off").points["0"][-1:]
    assert engine.read_points()[0][-1].loss == pytest.approx(want.loss, rel=1e-4)


def test_a_choice_whose_compile_fails_trains_on_plain(monkeypatch):
    engine = single(small("3_nonlinear_mlp", 50), compiled=True)
    choice = CompileChoice(engine)
    choice.plain_epoch = 0.001
    engine.compiled.compiled.failed = "the compiled step failed (injected)"
    choice.compiled()
    assert choice.done and choice.note == "the compiled step failed (injected)"
    assert engine.step_fn is engine.plain_step


# ---------------------------------------------------------------- through the worker, compilation failing


@pytest.fixture
def compiling_worker(worker_here):
    """`worker_here` (tests/conftest.py) whose settings compile from the start."""
    srv, settings = worker_here
    return srv, settings.model_copy(update={"COMPILE": "on"})


def failing_compile(*args, **kwargs):
    raise RuntimeError("injected: no C compiler")


def test_a_job_whose_compile_fails_trains_on_the_plain_step(compiling_worker, monkeypatch):
    srv, settings = compiling_worker
    reference = tiny_regression(epochs=40)
    plain = srv.submit(reference)
    claim_and_train(settings.model_copy(update={"COMPILE": "off"}))
    monkeypatch.setattr(torch, "compile", failing_compile)
    job = srv.submit(reference)
    claim_and_train(settings)
    done, want = (srv.client.get(f"/v1/jobs/{j['id']}").json() for j in (job, plain))
    assert done["status"] == "succeeded", done
    assert done["execution"] == ("eager on cpu; compiled step; the compiled step failed "
                                 "(RuntimeError: injected: no C compiler)")
    assert want["execution"] == "eager on cpu"
    assert done["metrics"]["loss"] == pytest.approx(want["metrics"]["loss"], rel=1e-6)


def test_a_batched_sweep_whose_compile_fails_trains_on_batched(compiling_worker, monkeypatch):
    srv, settings = compiling_worker
    monkeypatch.setattr(torch, "compile", failing_compile)
    body = {"base": tiny_regression(epochs=30), "space": {"lr": [0.01, 0.02, 0.03]}, "execution": "batched"}
    sweep, members = train_sweep_here(srv, settings, body)
    assert sweep["execution"].startswith("batched: 3 members on cpu")
    assert [m["status"] for m in members] == ["succeeded"] * 3
    assert all("compiled step; the compiled step failed (RuntimeError: injected" in m["execution"] for m in members)
