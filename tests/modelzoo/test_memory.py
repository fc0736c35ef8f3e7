"""The memory estimate: exact where it counts (parameters), and within a small factor of a real training run."""

import math
import subprocess
import sys

import pytest

from modelzoo import build_network
from modelzoo.memory import count_parameters, estimate_training, forward_bytes_per_row, training_bytes_per_row
from service.schemas.data import known_data_shape
from service.schemas.spec import CNNModel, JobSpec
from tests.conftest import ROOT
from tests.specs import example

# Trains the spec for one epoch in a fresh process, through the workers' own data loading and Trainer,
# and prints how far the peak resident memory rose past the process's after imports.
# VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so a child of a big pytest process would start
# from its parent's peak.
MEASURE = """
import json, sys
import torch
torch.set_num_threads(1)
from modelzoo import build_network
from service.schemas.spec import CNNModel, JobSpec
from workers.data import load_data
from workers.run import train_here
from workers.engines.eager import Trainer, seed_network_init
def peak():
    line = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    return int(line.split()[1])
spec = JobSpec.model_validate(json.loads(sys.argv[1]))
before = peak()
seed_network_init(0)
net = build_network(spec.model)
train_here(Trainer(spec, net, load_data(spec, None), torch.device("cpu")))
print((peak() - before) * 1024)
"""


def blobs(features: int, rows: int) -> dict:
    clusters = [{"mean": [float(k)] * features, "std": 1.0, "n": rows // 2} for k in range(2)]
    return {"source": "synthetic", "generator": "blobs", "clusters": clusters}


def classifier(model: dict, data: dict, optimizer: str = "sgd", batch_size: int | None = None) -> JobSpec:
    spec = {"model": model, "task": "classification", "data": data, "loss": "cross_entropy",
            "optimizer": {"kind": optimizer, "lr": 0.01}, "epochs": 1}
    if batch_size is not None:
        spec["batch_size"] = batch_size
    return JobSpec.model_validate(spec)


def estimate(spec: JobSpec) -> int:
    shape = known_data_shape(spec.data)
    return estimate_training(spec, shape.n_rows, math.prod(shape.sample_shape), shape.target_width).total


def cnn(channels: int, padding: int = 1, pool: int = 2, size: int = 16) -> dict:
    block = {"out_channels": channels, "kernel_size": 3, "padding": padding, "pool": {"kind": "max", "size": pool}}
    return {"kind": "cnn", "in_channels": 1, "input_size": [size, size], "conv": [block, block], "hidden": [64],
            "out_features": 2}


CONV = {"kind": "conv2d", "out_channels": 64, "kernel_size": 3, "padding": 1}
SEQUENTIAL_CNN = {"kind": "sequential", "input_shape": [1, 16, 16], "layers": [
    CONV, {"kind": "batch_norm"}, {"kind": "relu"}, {"kind": "max_pool", "size": 2},
    CONV, {"kind": "batch_norm"}, {"kind": "gelu"}, {"kind": "max_pool", "size": 2},
    {"kind": "flatten"}, {"kind": "dropout", "rate": 0.2}, {"kind": "linear", "out_features": 64},
    {"kind": "batch_norm"}, {"kind": "silu"}, {"kind": "linear", "out_features": 2}]}

# each grows a process by 100-250 MB, where activations, weights and optimizer state each dominate once
MEASURED = {
    "mlp, full batch": classifier(
        {"kind": "mlp", "in_features": 16, "hidden": [1024, 1024], "out_features": 2}, blobs(16, 8000)
    ),
    "cnn, batches of 500": classifier(cnn(64), blobs(256, 2000), "adam", batch_size=500),
    "wide mlp, adam": classifier(
        {"kind": "mlp", "in_features": 1024, "hidden": [2048, 1024], "out_features": 2}, blobs(1024, 1000), "adam", 128
    ),
    "mlp with batch norm and dropout, full batch": classifier(
        {"kind": "mlp", "in_features": 16, "hidden": [1024, 1024], "out_features": 2, "dropout": 0.3,
         "batch_norm": True},
        blobs(16, 8000),
    ),
    "sequential cnn with batch norm and dropout, batches of 500": classifier(
        SEQUENTIAL_CNN, blobs(256, 2000), "adam", batch_size=500
    ),
}


@pytest.mark.parametrize("name", list(MEASURED))
def test_the_estimate_is_within_a_small_factor_of_a_real_training_run(name):
    spec = MEASURED[name]
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, spec.model_dump_json()], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    grown = int(done.stdout.strip().splitlines()[-1])
    assert grown > 64 * 1024**2  # big enough that the interpreter's own noise does not decide
    assert 0.5 <= estimate(spec) / grown <= 3, (estimate(spec), grown)


@pytest.mark.parametrize("name", ["3_nonlinear_mlp", "4_logistic_regression", "6_cnn_digits"])
def test_parameters_are_counted_as_torch_counts_them(name):
    spec = JobSpec.model_validate(example(name))
    assert count_parameters(spec.model) == sum(p.numel() for p in build_network(spec.model).parameters())


@pytest.mark.parametrize(
    "model",
    [
        {"kind": "mlp", "in_features": 4, "hidden": [8, 6], "out_features": 3, "batch_norm": True, "dropout": [0.1, 0.2]},
        {**cnn(8), "batch_norm": True, "dropout": 0.5},
        SEQUENTIAL_CNN,
    ],
    ids=["mlp", "cnn", "sequential"],
)
def test_batch_norm_and_sequential_parameters_are_counted_as_torch_counts_them(model):
    spec = classifier(model, blobs(256 if model["kind"] != "mlp" else 4, 10))
    assert count_parameters(spec.model) == sum(p.numel() for p in build_network(spec.model).parameters())


def test_attacks_that_once_ran_out_of_memory_are_estimated_at_their_size():
    """1M rows through a 4096-wide layer in one step took 16 GB; the digits CNN padded by 16, full batch, 1.6 GB."""
    wide = classifier({"kind": "mlp", "in_features": 1, "hidden": [4096], "out_features": 2}, blobs(1, 1_000_000))
    assert estimate(wide) > 16 * 1024**3
    digits = example("6_cnn_digits", batch_size=None)
    for block in digits["model"]["conv"]:
        block["padding"] = 16
    assert 1.6e9 < estimate(JobSpec.model_validate(digits)) < 3 * 1.6e9


def test_padding_and_channels_grow_a_row():
    small, padded, wide = (CNNModel.model_validate(m) for m in (cnn(8), cnn(8, padding=16), cnn(64)))
    assert training_bytes_per_row(padded) > 10 * training_bytes_per_row(small)
    # the widest step of a forward pass: the first conv's output and its activation, 64 channels of 16x16
    assert forward_bytes_per_row(wide) == 2 * 64 * 16 * 16 * 4
