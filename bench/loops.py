"""The baselines: a job's training as a user would write it by hand, and with PyTorch Lightning.

Both train the network the service builds for the spec (same layers, same seeded initial weights, same
data), so every run ends at the same loss; they differ only in the loop around it. The hand-written
loop is the best plain eager one: data on the device, `torch.optim` (foreach), `zero_grad` to None,
losses kept as tensors and read once at the end, no per-step host sync.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from service.schemas.spec import JobSpec
from workers.attempt import prepare


def build(spec_dict: dict, device: torch.device):
    """Network and data as the worker builds them; the identity input transform left out, as by hand."""
    spec = JobSpec.model_validate(spec_dict)
    net, data = prepare(spec, torch.device("cpu"))
    if not spec.data.standardize and spec.model.kind != "cnn":
        net = net[1:]  # a user's model has no reshape-and-standardise layer; the CNN keeps the reshape
    return spec, net.to(device), data.to(device)


def loss_module(spec: JobSpec) -> nn.Module:
    if spec.loss in ("mse", "sse"):
        return nn.MSELoss(reduction="sum" if spec.loss == "sse" else "mean")
    if spec.loss == "cross_entropy":
        return nn.CrossEntropyLoss()
    return nn.BCELoss() if spec.model.output_activation == "sigmoid" else nn.BCEWithLogitsLoss()


def optimizer_for(spec: JobSpec, params) -> torch.optim.Optimizer:
    opt = spec.optimizer
    if opt.kind == "sgd":
        return torch.optim.SGD(params, lr=opt.lr, momentum=opt.momentum, weight_decay=opt.weight_decay)
    cls = torch.optim.Adam if opt.kind == "adam" else torch.optim.AdamW
    return cls(params, lr=opt.lr, weight_decay=opt.weight_decay)


def hand_loop(spec_dict: dict, device: torch.device = torch.device("cpu")) -> tuple[float, float]:
    """Seconds for set-up plus training, and the final loss."""
    start = time.perf_counter()
    spec, net, data = build(spec_dict, device)
    loss_fn, optimizer = loss_module(spec), optimizer_for(spec, net.parameters())
    x, y, n = data.x_train, data.y_train, len(data.x_train)
    bs = spec.batch_size or n
    gen = torch.Generator(device=device).manual_seed(spec.seed)
    classify = spec.task == "classification"  # the examples classify with cross-entropy: argmax
    losses, correct, val_losses = [], [], []
    for _ in range(spec.epochs):
        batches = [None] if bs >= n else torch.randperm(n, device=device, generator=gen).split(bs)
        epoch_loss = epoch_correct = 0
        for idx in batches:
            xb, yb = (x, y) if idx is None else (x[idx], y[idx])
            out = net(xb)
            loss = loss_fn(out, yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            epoch_loss = epoch_loss + loss.detach() * (1 if spec.loss == "sse" else len(xb) / n)
            if classify:
                epoch_correct = epoch_correct + (out.argmax(dim=1) == yb).sum()
        losses.append(epoch_loss)
        if classify:
            correct.append(epoch_correct)
        if data.x_val is not None:
            with torch.no_grad():
                val_losses.append(loss_fn(net(data.x_val), data.y_val))
    # the curve read back once, as the service reads its points
    curve = [torch.stack(column).tolist() for column in (losses, correct, val_losses) if column]
    return time.perf_counter() - start, curve[0][-1]


def lightning_loop(spec_dict: dict) -> tuple[float, float]:
    """Seconds for set-up plus `Trainer.fit` on the CPU, and the final loss."""
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    start = time.perf_counter()
    spec, net, data = build(spec_dict, torch.device("cpu"))
    loss_fn = loss_module(spec)

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = net

        def training_step(self, batch, _):
            xb, yb = batch
            loss = loss_fn(self.net(xb), yb)
            self.log("loss", loss, on_step=False, on_epoch=True)
            return loss

        def validation_step(self, batch, _):
            xb, yb = batch
            self.log("val_loss", loss_fn(self.net(xb), yb))

        def configure_optimizers(self):
            return optimizer_for(spec, self.parameters())

    if spec.batch_size is None:
        # Lightning at its best: the whole set as one ready batch, not n rows collated every epoch
        train = DataLoader([(data.x_train, data.y_train)], batch_size=None)
    else:
        train = DataLoader(TensorDataset(data.x_train, data.y_train), batch_size=spec.batch_size, shuffle=True)
    val = None if data.x_val is None else DataLoader([(data.x_val, data.y_val)], batch_size=None)
    trainer = L.Trainer(
        max_epochs=spec.epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    module = Module()
    trainer.fit(module, train, val)
    return time.perf_counter() - start, float(trainer.callback_metrics["loss"])


def trainer_loop(spec_dict: dict) -> tuple[float, float]:
    """Seconds for the worker's set-up plus its run (workers/run.py) in this process (no database, no HTTP), final
    loss."""
    from workers.engines.eager import Trainer
    from workers.run import train_here

    start = time.perf_counter()
    spec = JobSpec.model_validate(spec_dict)
    net, data = prepare(spec, torch.device("cpu"))
    ledger = train_here(Trainer(spec, net, data, torch.device("cpu")))
    return time.perf_counter() - start, ledger.points["0"][-1].loss


def hand_compiled_loop(spec_dict: dict, device: torch.device, steps_per_graph: int = 50) -> tuple[float, float, float]:
    """The limit the issue measures against: a functional full-batch SGD step (`torch.func.grad` of the loss, then
    `p - lr * g`) compiled with torch.compile(fullgraph=True); on CUDA ("max-autotune-no-cudagraphs") captured
    `steps_per_graph` steps per CUDA graph. Seconds for set-up plus training (compile included), the final loss,
    and the seconds of the first call (the compile)."""
    from torch.func import functional_call, grad

    start = time.perf_counter()
    spec, net, data = build(spec_dict, device)
    loss_fn, lr, x, y = loss_module(spec), spec.optimizer.lr, data.x_train, data.y_train
    params = {name: p.detach() for name, p in net.named_parameters()}

    def loss_of(p):
        loss = loss_fn(functional_call(net, p, (x,)), y)
        return loss, loss

    def step():
        grads, loss = grad(loss_of, has_aux=True)(params)
        for name, p in params.items():
            p.sub_(lr * grads[name])
        return loss

    mode = "max-autotune-no-cudagraphs" if device.type == "cuda" else None
    compiled = torch.compile(step, fullgraph=True, mode=mode)
    losses = [compiled().reshape(1)]
    sync(device)
    compile_seconds = time.perf_counter() - start
    done = 1
    if device.type == "cuda":
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            losses += [compiled().reshape(1) for _ in range(2)]  # warm-up on the capture stream
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=side):
                captured = torch.stack([compiled() for _ in range(steps_per_graph)])
            done = 3
            while done + steps_per_graph <= spec.epochs:
                graph.replay()
                losses.append(captured.clone())
                done += steps_per_graph
        torch.cuda.current_stream(device).wait_stream(side)
    losses += [compiled().reshape(1) for _ in range(spec.epochs - done)]
    final = torch.cat(losses)[-1].item()
    return time.perf_counter() - start, final, compile_seconds


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
