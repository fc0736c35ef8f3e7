"""The trainer's fast path gives the plain eager loop's curve, and resumes from a checkpoint exactly."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from service.schemas.spec import JobSpec
from service.settings import get_settings
from tests.specs import example
from workers.attempt import prepare
from workers.checkpoints import state_from_bytes, state_to_bytes
from workers.engines.cuda_graph import STEPS_PER_GRAPH, epochs_per_graph
from workers.engines.eager import Trainer
from workers.ledger import Member, MemoryLedger
from workers.run import Run

BLOBS = {
    "source": "synthetic",
    "generator": "blobs",
    "clusters": [{"mean": [2, 2], "std": 1.5, "n": 60}, {"mean": [-2, -2], "std": 1.5, "n": 60}],
}
CUBIC = {"source": "synthetic", "generator": "polynomial", "coefficients": [0, 1, 0, 1], "n": 90, "noise": 0.5}

CASES = {
    "regression, full batch, plain SGD": example("1_linear_gradient_descent", epochs=300),
    "regression, mini-batch, momentum, validation": {
        "model": {"kind": "mlp", "in_features": 1, "hidden": [8], "out_features": 1, "activation": "tanh"},
        "task": "regression",
        "data": {**CUBIC, "validation_fraction": 0.2, "standardize": True},
        "loss": "mse",
        "optimizer": {"kind": "sgd", "lr": 0.01, "momentum": 0.9},
        "epochs": 25,
        "batch_size": 16,
    },
    "regression, mini-batch, adam, standardized targets, validation": {
        "model": {"kind": "mlp", "in_features": 1, "hidden": [8], "out_features": 1, "activation": "tanh"},
        "task": "regression",
        "data": {**CUBIC, "coefficients": [3000, 1000, 0, 1000], "validation_fraction": 0.2, "standardize_target": True},
        "loss": "mse",
        "optimizer": {"kind": "adam", "lr": 0.01},
        "epochs": 20,
        "batch_size": 16,
    },
    "classification, full batch, adam, validation, every 3rd epoch": {
        "model": {"kind": "mlp", "in_features": 2, "hidden": [6], "out_features": 2, "output_activation": "softmax"},
        "task": "classification",
        "data": {**BLOBS, "validation_fraction": 0.25},
        "loss": "cross_entropy",
        "optimizer": {"kind": "adam", "lr": 0.01},
        "epochs": 40,
        "metrics_every": 3,
    },
    "classification, mini-batch, plain SGD, bce on a sigmoid": {
        "model": {"kind": "linear", "in_features": 2, "out_features": 1, "output_activation": "sigmoid"},
        "task": "classification",
        "data": BLOBS,
        "loss": "bce",
        "optimizer": {"kind": "sgd", "lr": 0.1},
        "epochs": 15,
        "batch_size": 25,
    },
    "classification, mini-batch, adamw, bce on logits, validation": {
        "model": {"kind": "mlp", "in_features": 2, "hidden": [5], "out_features": 1},
        "task": "classification",
        "data": {**BLOBS, "validation_fraction": 0.2},
        "loss": "bce",
        "optimizer": {"kind": "adamw", "lr": 0.02, "weight_decay": 0.01},
        "epochs": 12,
        "batch_size": 32,
    },
}


def setup(spec_dict: dict) -> tuple[JobSpec, nn.Sequential, object]:
    """The worker's set-up (workers/attempt.py): seeded network, data, standardisation, on the CPU."""
    spec = JobSpec.model_validate(spec_dict)
    net, data = prepare(spec, torch.device("cpu"))
    return spec, net, data


def plain_loop(spec: JobSpec, net: nn.Sequential, data, order_device: str = "cpu") -> list[tuple]:
    return list(plain_epochs(spec, net, data, order_device))


def plain_epochs(spec: JobSpec, net: nn.Sequential, data, order_device: str = "cpu") -> Iterator[tuple]:
    """The loop a tutorial writes: module forward, nn loss, torch.optim, zero_grad, backward, step.

    Yields each recorded epoch's (epoch, loss, accuracy[, val_loss[, val_accuracy]]), `net` holding its weights.
    Mini-batch order comes from a generator seeded with the spec's seed on `order_device`, as the trainer
    draws it on the device it trains on (a CUDA generator gives another order than a CPU one).
    """
    loss_fn = {"mse": nn.MSELoss(), "sse": nn.MSELoss(reduction="sum"), "cross_entropy": nn.CrossEntropyLoss()}.get(
        spec.loss, nn.BCELoss() if spec.model.output_activation == "sigmoid" else nn.BCEWithLogitsLoss()
    )
    opt = spec.optimizer
    if opt.kind == "sgd":
        optimizer = torch.optim.SGD(net.parameters(), lr=opt.lr, momentum=opt.momentum, weight_decay=opt.weight_decay)
    else:
        cls = torch.optim.Adam if opt.kind == "adam" else torch.optim.AdamW
        optimizer = cls(net.parameters(), lr=opt.lr, weight_decay=opt.weight_decay)
    gen = torch.Generator(device=order_device).manual_seed(spec.seed)
    x, y, n = data.x_train, data.y_train, len(data.x_train)
    y_val = data.y_val
    if spec.data.standardize_target:  # as a tutorial scales its targets: the body fits them standardized
        mean, std = y.mean(dim=0), y.std(dim=0)
        assert torch.equal(net[-1].mean, mean) and torch.equal(net[-1].std, std)  # what the network carries
        net, y, y_val = net[:-1], (y - mean) / std, None if y_val is None else (y_val - mean) / std
    bs = spec.batch_size or n
    for epoch in range(1, spec.epochs + 1):
        batches = [torch.arange(n)] if bs >= n else torch.randperm(n, generator=gen, device=order_device).cpu().split(bs)
        epoch_loss, correct = 0.0, 0
        for idx in batches:
            out = net(x[idx])
            loss = loss_fn(out, y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            epoch_loss += loss.item() * (1 if spec.loss == "sse" else len(idx) / n)
            correct += count(out.detach(), y[idx], spec)
        if epoch % spec.metrics_every and epoch != spec.epochs:
            continue
        point = (epoch, epoch_loss, correct / n if spec.task == "classification" else None)
        if data.x_val is not None:
            with torch.no_grad():
                out = net(data.x_val)
                point += (loss_fn(out, y_val).item(),)
                if spec.task == "classification":
                    point += (count(out, y_val, spec) / len(data.x_val),)
        yield point


def count(out: torch.Tensor, y: torch.Tensor, spec: JobSpec) -> int:
    if spec.loss == "bce":
        threshold = 0.5 if spec.model.output_activation == "sigmoid" else 0.0
        return int(((out > threshold).float() == y).sum())
    return int((out.argmax(dim=1) == y).sum())


def as_tuples(points, spec: JobSpec, val: bool) -> list[tuple]:
    rows = []
    for p in points:
        row = (p.epoch, p.loss, p.accuracy)
        if val:
            row += (p.val_loss,) + ((p.val_accuracy,) if spec.task == "classification" else ())
        rows.append(row)
    return rows


def train(spec: JobSpec, net, data, device=torch.device("cpu"), stop_after: int | None = None, state=None,
          graphs: bool = True):
    """Run the trainer as a worker does, shut down after epoch `stop_after`; returns its points, whether it
    finished, the checkpoint it left, and the trainer."""
    shutdown = threading.Event()

    class ShutDownAfter(Trainer):
        def train_next(self, recorded, epochs):
            trained = super().train_next(recorded, epochs)
            if stop_after is not None and self.progress.epoch >= stop_after:
                shutdown.set()
            return trained

    trainer = ShutDownAfter(spec, net.to(device), data.to(device), device, graphs=graphs)
    if state is not None:
        trainer.load_state(state_from_bytes(state))
    ledger = MemoryLedger()
    run = Run([Member("0", 0, {})], trainer, ledger, get_settings(), shutdown)
    run.start(str(device), "", "")
    run.train()
    saved = ledger.checkpoints.get("0")
    return ledger.points["0"], ledger.succeeded(), (state_to_bytes(saved) if saved else None), trainer


def assert_same_curve(got: list[tuple], want: list[tuple]) -> None:
    assert [row[0] for row in got] == [row[0] for row in want]
    for g, w in zip(got, want):
        g, w = [v for v in g if v is not None], [v for v in w if v is not None]  # regression has no accuracy
        assert g == pytest.approx(w, rel=1e-4, abs=1e-5), (g, w)


@pytest.mark.parametrize("name", list(CASES))
def test_fast_path_gives_the_plain_loops_curve(name):
    spec, net, data = setup(CASES[name])
    want = plain_loop(*setup(CASES[name]))
    points, finished, _, _ = train(spec, net, data)
    assert finished
    assert_same_curve(as_tuples(points, spec, data.x_val is not None), want)


RESUMED = [
    "regression, full batch, plain SGD",
    "regression, mini-batch, adam, standardized targets, validation",
    "classification, mini-batch, adamw, bce on logits, validation",
]


@pytest.mark.parametrize("name", RESUMED)
def test_a_resumed_run_continues_the_same_curve(name):
    spec, net, data = setup(CASES[name])
    whole, _, _, _ = train(spec, net, data)
    first, finished, checkpoint, _ = train(*setup(CASES[name]), stop_after=5)
    assert not finished and checkpoint is not None and first[-1].epoch == 5
    rest, finished, _, _ = train(*setup(CASES[name]), state=checkpoint)
    assert finished and rest[0].epoch == 6
    assert [(p.epoch, p.step, p.loss, p.val_loss) for p in first + rest] == [
        (p.epoch, p.step, p.loss, p.val_loss) for p in whole
    ]


def test_graph_length_keeps_recorded_epochs_inside_or_at_the_end_of_a_replay():
    assert epochs_per_graph(1) == (STEPS_PER_GRAPH, True)
    assert epochs_per_graph(7) == (7 * (STEPS_PER_GRAPH // 7), True)
    k, inside = epochs_per_graph(1000)
    assert not inside and 1000 % k == 0 and k <= STEPS_PER_GRAPH


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@needs_cuda
@pytest.mark.parametrize("name", list(CASES))
def test_cuda_graph_gives_the_plain_loops_curve(name):
    spec_dict = {**CASES[name], "epochs": 120}  # past the warm-up and a full replay of STEPS_PER_GRAPH epochs
    spec, net, data = setup(spec_dict)
    # the plain loop on the GPU too: the same mini-batch order (a CUDA generator's) and the same arithmetic
    _, plain_net, plain_data = setup(spec_dict)
    want = plain_loop(spec, plain_net.cuda(), plain_data.to(torch.device("cuda")), order_device="cuda")
    points, finished, _, trainer = train(spec, net, data, device=torch.device("cuda"))
    assert finished and trainer.graph.graph is not None and not trainer.graph.failed
    assert_same_curve(as_tuples(points, spec, data.x_val is not None), want)


@needs_cuda
def test_cuda_graph_replays_many_epochs_and_resumes():
    spec_dict = example("2_linear_regression", epochs=333, metrics_every=2)
    spec_dict["data"]["n"] = 1000
    spec, net, data = setup(spec_dict)
    cuda = torch.device("cuda")
    whole, _, _, trainer = train(spec, net, data, device=cuda)
    assert trainer.graph.k == STEPS_PER_GRAPH and [p.epoch for p in whole] == [*range(2, 333, 2), 333]
    cpu, _, _, _ = train(*setup(spec_dict))
    assert [p.loss for p in whole] == pytest.approx([p.loss for p in cpu], rel=1e-4)
    first, _, checkpoint, _ = train(*setup(spec_dict), device=cuda, stop_after=100)
    rest, finished, _, _ = train(*setup(spec_dict), device=cuda, state=checkpoint)
    assert finished
    assert [p.loss for p in first + rest] == pytest.approx([p.loss for p in whole], rel=1e-5)
