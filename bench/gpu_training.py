"""Example 2 (linear regression, 100k points, 10000 epochs) on the GPU: each engine of the trainer vs hand-written loops.

    python -m bench.gpu_training [--epochs-scale 1.0] [--no-service]

Rows, back to back in one process: the hand-written compiled + graphed functional step (bench/loops.py
`hand_compiled_loop`: the limit, 0.10 s on an H200, and the first row, which ratios divide by), a hand-written
CUDA-graph loop (nn.Linear + torch.optim.SGD, 50 steps per graph, 0.50 s on an H200), the trainer as the worker
runs it by default (CUDA graph), with its step compiled and captured (FITSERVE_COMPILE=on), with its graph turned
off (its eager steps), the hand-written eager loop; then the job through the service when FastAPI is importable,
with FITSERVE_COMPILE off and on. Seconds are training only, data already on the device, ending in a sync, compiles
included (the second row of a compiled kind reuses this process's compile caches, as a worker's second job
would). Without a GPU it runs the CPU rows and says the graph rows were skipped.
"""

from __future__ import annotations

import argparse
import time

import torch

from bench.common import EXAMPLES, header, load_example, print_table
from bench.loops import build, hand_compiled_loop, hand_loop, loss_module, sync
from workers.data import load_data

STEPS_PER_GRAPH = 50


def trainer_seconds(spec_dict: dict, device: torch.device, graphed: bool, compiled: bool = False) -> tuple[float, float]:
    from modelzoo import build_network
    from service.schemas.spec import JobSpec
    from service.settings import get_settings
    from workers.engines.eager import Trainer
    from workers.run import train_here

    spec = JobSpec.model_validate(spec_dict)
    torch.manual_seed(spec.seed)
    data = load_data(spec, fetch_dataset=None).to(device)
    trainer = Trainer(spec, build_network(spec.model).to(device), data, device, compiled=compiled)
    if not graphed:
        trainer.graph = None  # the eager steps, as on the CPU
    sync(device)
    start = time.perf_counter()
    ledger = train_here(trainer, get_settings().model_copy(update={"COMPILE": "on" if compiled else "off"}))
    sync(device)
    return time.perf_counter() - start, ledger.points["0"][-1].loss


def hand_graph_seconds(spec_dict: dict, device: torch.device) -> tuple[float, float]:
    """The whole step captured, `STEPS_PER_GRAPH` steps per graph, losses kept on the device."""
    spec, net, data = build(spec_dict, device)
    loss_fn = loss_module(spec)
    optimizer = torch.optim.SGD(net.parameters(), lr=spec.optimizer.lr)
    x, y = data.x_train, data.y_train
    sync(device)
    start = time.perf_counter()
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    losses = []
    with torch.cuda.stream(side):
        for _ in range(3):  # warm-up steps, counted as epochs
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(net(x), y)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach().reshape(1))
        graph = torch.cuda.CUDAGraph()
        optimizer.zero_grad(set_to_none=True)
        with torch.cuda.graph(graph, stream=side):
            captured = []
            for _ in range(STEPS_PER_GRAPH):
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(net(x), y)
                loss.backward()
                optimizer.step()
                captured.append(loss.detach())
            replay_losses = torch.stack(captured)
        done = 3
        while done + STEPS_PER_GRAPH <= spec.epochs:
            graph.replay()
            losses.append(replay_losses.clone())
            done += STEPS_PER_GRAPH
        for _ in range(spec.epochs - done):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(net(x), y)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach().reshape(1))
    torch.cuda.current_stream(device).wait_stream(side)
    final = torch.cat(losses).tolist()[-1]
    return time.perf_counter() - start, final


def service_seconds(spec: dict, compile_mode: str) -> tuple[float, float, str] | None:
    """The job's training seconds through a service whose worker has FITSERVE_COMPILE=`compile_mode`, its final
    loss, and its `execution`."""
    try:
        import fastapi  # noqa: F401
    except ImportError:
        return None
    from bench.common import Service

    with Service(workers=1, FITSERVE_COMPILE=compile_mode) as service:
        service.train({**spec, "epochs": 3})  # warm-up: imports and CUDA context in the worker
        _, trained, job = service.train(spec)
    return trained, job["metrics"]["loss"], job["execution"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs-scale", type=float, default=1.0)
    parser.add_argument("--no-service", dest="service", action="store_false")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    if not cuda:
        torch.set_num_threads(1)  # the CPU rows only check that the script runs; one thread keeps them steady
    device = torch.device("cuda" if cuda else "cpu")
    spec = load_example(EXAMPLES[1], args.epochs_scale)
    header(f"Example 2 on {torch.cuda.get_device_name() if cuda else 'the CPU (no GPU: graph rows skipped)'}, "
           f"{spec['epochs']} epochs")
    warm = {**spec, "epochs": 60}
    trainer_seconds(warm, device, graphed=cuda)
    rows = []
    for run in ("first", "second"):  # the first compiles cold; the second finds this process's caches
        seconds, loss, compile_seconds = hand_compiled_loop(spec, device)
        kind = "compiled + graphed" if cuda else "compiled"
        rows.append([f"hand-written {kind} step ({run}; compile {compile_seconds:.1f} s)", seconds, loss])
    if cuda:
        hand_graph_seconds(warm, device)
        rows.append(["hand-written CUDA graph (50 steps/graph)", *hand_graph_seconds(spec, device)])
        rows.append(["trainer (CUDA graph)", *trainer_seconds(spec, device, graphed=True)])
    for run in ("first", "second"):
        rows.append([f"trainer, compiled step{' + CUDA graph' if cuda else ''} ({run})",
                     *trainer_seconds(spec, device, graphed=cuda, compiled=True)])
    rows.append(["trainer, eager steps", *trainer_seconds(spec, device, graphed=False)])
    seconds, loss = hand_loop(spec, device)  # includes set-up, a few ms
    rows.append(["hand-written eager loop", seconds, loss])
    if args.service:
        for mode in ("off", "on"):
            served = service_seconds({**spec, "device": "cuda" if cuda else "cpu"}, mode)
            if served is not None:
                trained, loss, execution = served
                rows.append([f"service job, FITSERVE_COMPILE={mode} ({execution})", trained, loss])
    base = rows[0][1]
    print_table(["loop", "seconds", "final loss", "/ hand-written compiled"], [[*r, r[1] / base] for r in rows])


if __name__ == "__main__":
    main()
